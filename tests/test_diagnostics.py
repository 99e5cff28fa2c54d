"""Anisotropy diagnostics (diagnostics.py): known values of the metrics, agreement with the model's
own attention, invariance under the KV cache and folding, the eval records, the plot command."""

import json
import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import diagnostics
from conftest import BASE, centered_model, warm_up
from diagnostics import (SiteRecorder, first_position_attention, isoscore, isoscore_from_variances,
                         mean_pairwise_cosine, principal_variances, site_diagnostics, top_variance_share)
from model import GPT, KVCache, GPTConfig
from model_advanced_centering import PLACEMENTS, AdvancedGPT, AdvancedGPTConfig, fold_centering
from train import train
from train_advanced_centered import CenteredTrainConfig

METRICS = ("isoscore", "var_top1", "var_top5", "cosine", "max_abs", "median_abs", "max_median_ratio")


def random_rotation(n, seed=0):
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q


def axis_cloud(scales, n, seed=0):
    """Points +-sqrt(s_i) e_i for each scale, rotated at random and shifted: zero-mean before the
    shift, so the covariance is exactly diag(scales, 0, ...) * 2 / (N - 1) in the rotated basis."""
    points = torch.zeros(2 * len(scales), n, dtype=torch.float64)
    for i, s in enumerate(scales):
        points[2 * i, i], points[2 * i + 1, i] = math.sqrt(s), -math.sqrt(s)
    return points @ random_rotation(n, seed).T + 5.0


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_isoscore_of_points_using_k_of_n_directions_evenly_is_k_minus_1_over_n_minus_1(k):
    """The paper's defining cases: k = n is isotropic (1), k = 1 is a line (0)."""
    n = 12
    assert isoscore(axis_cloud([1.0] * k, n)).item() == pytest.approx((k - 1) / (n - 1), abs=1e-6)
    variances = torch.tensor([3.0] * k + [0.0] * (n - k), dtype=torch.float64)
    assert isoscore_from_variances(variances).item() == pytest.approx((k - 1) / (n - 1), abs=1e-12)


def test_isoscore_of_gaussian_clouds():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(20000, 16, generator=g)
    assert isoscore(isotropic).item() > 0.98
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 16, generator=g) + 3.0
    assert abs(isoscore(line).item()) < 1e-4
    # an anisotropic cloud: against the closed form the algorithm reduces to,
    # IsoScore = (tr(C)^2 / |C|_F^2 - 1) / (n - 1), from the covariance itself (no PCA)
    cloud = torch.randn(3000, 16, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3.0, 16, dtype=torch.float64)
    cloud = cloud @ random_rotation(16).T
    cov = torch.cov(cloud.T)
    expected = ((cov.trace() ** 2 / cov.square().sum()) - 1) / 15
    assert 0.05 < expected < 0.95
    assert isoscore(cloud).item() == pytest.approx(expected.item(), rel=1e-5)


def test_isoscore_is_invariant_to_shift_rotation_and_scale():
    g = torch.Generator().manual_seed(1)
    cloud = torch.randn(400, 10, generator=g) * torch.linspace(0.2, 2.0, 10)
    reference = isoscore(cloud).item()
    moved = 7.0 * (cloud @ random_rotation(10, seed=3).T.float()) - 40.0
    assert isoscore(moved).item() == pytest.approx(reference, rel=1e-4)


def test_fewer_points_than_dimensions_uses_the_gram_matrix():
    g = torch.Generator().manual_seed(2)
    points = torch.randn(6, 40, generator=g, dtype=torch.float64)
    expected = torch.linalg.eigvalsh(torch.cov(points.T)).flip(0).clamp(min=0)
    got = principal_variances(points)
    assert got.shape == (40,) and torch.allclose(got, expected, atol=1e-5)


def test_top_variance_share_on_a_constructed_cloud():
    scales = [10.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 0.5]
    variances = principal_variances(axis_cloud(scales, 12, seed=4))
    assert top_variance_share(variances, 1).item() == pytest.approx(10.0 / sum(scales), rel=1e-5)
    assert top_variance_share(variances, 5).item() == pytest.approx(24.0 / sum(scales), rel=1e-5)


def test_mean_pairwise_cosine_against_every_pair():
    points = torch.randn(3, 5, 8) + 0.5
    u = F.normalize(points.reshape(15, 8), dim=-1)
    cosines = u @ u.T
    expected = (cosines.sum() - cosines.diagonal().sum()) / (15 * 14)
    assert mean_pairwise_cosine(points).item() == pytest.approx(expected.item(), abs=1e-6)


def record_model_attention(monkeypatch):
    """Patch scaled_dot_product_attention so that each call also computes, with the same q, k, mask
    and causal flag the model passes, the weight on key 0 (attention applied to v = e_0)."""
    real = F.scaled_dot_product_attention
    seen = []

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        first = torch.zeros(*k.shape[:-1], 1, dtype=v.dtype)
        first[..., 0, :] = 1.0
        weight_on_first = real(q, k, first, attn_mask=attn_mask, is_causal=is_causal, **kwargs)  # (B, H, T, 1)
        seen.append(weight_on_first[:, :, 1:, 0].mean(dim=(0, 2)))  # per head
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


def qk_centered_model():
    return warm_up(centered_model("momentum", center_qk=True))


@pytest.mark.parametrize("make", [lambda: GPT(GPTConfig(**BASE)), qk_centered_model])
def test_first_position_attention_is_the_models_own(monkeypatch, make):
    torch.manual_seed(1)
    model = make().eval()
    idx = torch.randint(0, 40, (3, 16))
    seen = record_model_attention(monkeypatch)
    diag = model.eval_diagnostics(idx)
    assert len(seen) == model.config.n_layer
    for layer, per_head in enumerate(seen):
        assert diag[f"diag/attention/{layer}/first_mass"] == pytest.approx(per_head.mean().item(), abs=1e-6)
        assert diag[f"diag/attention/{layer}/first_mass_max_head"] == pytest.approx(per_head.max().item(), abs=1e-6)
    assert not torch.allclose(seen[0], seen[0].mean())  # the heads differ: the max is not the mean


def test_first_position_attention_of_a_sink():
    """A key 0 that every query matches much better than the others takes all the weight."""
    q = torch.ones(1, 5, 4)
    k = torch.zeros(1, 5, 4)
    k[:, 0] = 20.0
    assert first_position_attention(q, k, n_head=2).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    uniform = sum(1 / (t + 1) for t in range(1, 5)) / 4  # 1 / (t + 1) at query t
    assert first_position_attention(q, torch.zeros(1, 5, 4), n_head=2).tolist() == pytest.approx([uniform] * 2, abs=1e-6)


def all_placements_model(mode="momentum"):
    return warm_up(centered_model(mode, **{flag: True for flag in PLACEMENTS}))


def assert_same(a, b, keys):
    assert keys, "nothing compared"
    for key in keys:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


def test_diagnostics_are_unchanged_by_the_kv_cache():
    model = all_placements_model()
    assert model.supports_kv_cache()
    idx = torch.randint(0, 40, (3, 16))
    plain = model.eval_diagnostics(idx)
    cache = KVCache(model.config.n_layer, model.config.block_size)
    with torch.no_grad(), SiteRecorder(model) as recorder:
        model(idx[:, :7], kv_cache=cache)  # a prefill, then one token at a time
        for t in range(7, 16):
            model(idx[:, t:t + 1], kv_cache=cache)
    cached = site_diagnostics(recorder, model.config.n_head)
    assert set(cached) == {k for k in plain if k.startswith("diag/")}
    assert_same(plain, cached, list(cached))


def test_folded_model_has_the_centered_models_diagnostics_where_they_are_the_same_vectors():
    """Folding moves each center into a bias. The folded model's sites then carry the centered
    vectors at embeddings, q, k, v and residual (the bias is subtracted before them) but the
    uncentered ones at attn_out and mlp (their center is folded into the next layer's bias). The
    mean-shift invariant metrics agree on both sides, and so does the attention."""
    model = all_placements_model()
    folded = fold_centering(model).eval()
    idx = torch.randint(0, 40, (3, 16))
    centered, plain = model.eval_diagnostics(idx), folded.eval_diagnostics(idx)
    compared = []
    for key in plain:
        site_layer_metric = diagnostics.parse_diag_key(key)
        if site_layer_metric is None or key.endswith("_after"):
            continue  # the folded model's sites are identities: _after is _before
        site, layer, metric = site_layer_metric
        if site == "attention":
            compared.append((key, key))
            continue
        name = metric[:-len("_before")]
        sides = ["before", "after"] if name in diagnostics.MEAN_SHIFT_INVARIANT else \
            ["after"] if site in ("embeddings", "q", "k", "v", "residual") else ["before"]
        compared += [(key, diagnostics.diag_key(site, layer, f"{name}_{side}")) for side in sides]
    assert len(compared) > 100
    for folded_key, centered_key in compared:
        assert plain[folded_key] == pytest.approx(centered[centered_key], rel=1e-3, abs=1e-5), centered_key
    # centering did move the mean-dependent ones: the comparison above is not vacuous
    assert centered["diag/embeddings/0/cosine_before"] != pytest.approx(centered["diag/embeddings/0/cosine_after"], abs=1e-3)


def test_per_placement_summaries_are_the_center_norm_and_the_cosine_before_centering():
    model = all_placements_model()
    diag = model.eval_diagnostics(torch.randint(0, 40, (3, 16)))
    for site in ("embeddings", "v", "mlp"):
        layers = [(layer or 0, m) for name, layer, m in model.centerings() if name == site]
        norms = [m.fixed_center().norm().item() for _, m in layers]
        assert diag[f"center_norm/{site}"] == pytest.approx(sum(norms) / len(norms), rel=1e-4)
        cosines = [diag[f"diag/{site}/{layer}/cosine_before"] for layer, _ in layers]
        assert diag[f"cosine/{site}"] == pytest.approx(sum(cosines) / len(cosines), rel=1e-6)


class ScaledSites(GPT):
    """A GPT whose MLP sites scale each coordinate differently: not a shift, so the covariance changes."""

    def make_site(self, name, dim, layer):
        if name != "mlp":
            return nn.Identity()
        scale = torch.linspace(0.1, 3.0, dim)

        class Scale(nn.Module):
            def forward(self, x):
                return x * scale

        return Scale()


def test_a_site_that_is_not_a_shift_gets_its_own_spectrum():
    torch.manual_seed(0)
    model = ScaledSites(GPTConfig(**BASE)).eval()
    idx = torch.randint(0, 40, (3, 16))
    diag = model.eval_diagnostics(idx)
    recorder = diagnostics.probe(model, idx)
    _, after, changed = recorder.representations()[("mlp", 1)]
    assert changed
    assert diag["diag/mlp/1/isoscore_after"] == pytest.approx(isoscore(after).item(), rel=1e-4)
    assert diag["diag/mlp/1/isoscore_after"] != pytest.approx(diag["diag/mlp/1/isoscore_before"], rel=1e-2)
    assert diag["diag/q/1/isoscore_after"] == diag["diag/q/1/isoscore_before"]


def test_probe_uses_whole_sequences_up_to_the_token_cap_and_restores_training_mode():
    model = GPT(GPTConfig(**BASE)).train()
    recorder = diagnostics.probe(model, torch.randint(0, 40, (5, 16)), max_tokens=40)
    assert model.training
    before, _, _ = recorder.representations()[("embeddings", 0)]
    assert before.shape == (2, 16, 32)


def expected_diag_keys(n_layer):
    keys = {f"diag/attention/{layer}/{m}" for layer in range(n_layer) for m in ("first_mass", "first_mass_max_head")}
    places = [("embeddings", 0)] + [(s, layer) for layer in range(n_layer)
                                     for s in ("q", "k", "v", "attn_out", "mlp", "residual")]
    for site, layer in places:
        keys |= {f"diag/{site}/{layer}/{m}_{side}" for m in METRICS for side in ("before", "after")}
    return keys


def eval_records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["type"] == "eval"]


@pytest.fixture(scope="module")
def tiny_runs(char_data, tmp_path_factory):
    """Two centered runs (seeds 1 and 2, one group) and a baseline run, 8 iterations each."""
    from conftest import TINY_MODEL
    root = tmp_path_factory.mktemp("diag_runs")
    runs = []
    for name, seed, flags in (("embeddings-s1", 1, {"center_embeddings": True}),
                              ("embeddings-s2", 2, {"center_embeddings": True}), ("baseline-s1", 1, {})):
        cfg = CenteredTrainConfig(**TINY_MODEL, **flags, centering_mode="momentum", seed=seed, data_dir=char_data,
                                  out_dir=str(root / name), max_iters=8, eval_interval=4)
        train(cfg, AdvancedGPT, AdvancedGPTConfig, log=lambda *a: None)
        runs.append(cfg.out_dir)
    return runs


@pytest.mark.xdist_group("tiny_runs")  # one worker trains the module's runs once
def test_eval_records_hold_every_diagnostic(tiny_runs, tiny_config):
    from conftest import TINY_MODEL
    train(tiny_config, log=lambda *a: None)  # the plain GPT of train.py logs them too
    for out_dir in (tiny_runs[0], tiny_config.out_dir):
        records = eval_records(out_dir)
        assert len(records) >= 2
        for record in records:
            assert expected_diag_keys(TINY_MODEL["n_layer"]) <= set(record)
            assert all(math.isfinite(v) for k, v in record.items() if k.startswith("diag/"))
    centered = eval_records(tiny_runs[0])[-1]
    assert centered["diag/embeddings/0/cosine_after"] < centered["diag/embeddings/0/cosine_before"]
    assert "center_norm/embeddings" in centered and "cosine/embeddings" in centered


@pytest.mark.xdist_group("tiny_runs")  # one worker trains the module's runs once
def test_plot_command_draws_each_metric(tiny_runs, tmp_path, capsys):
    import plot_diagnostics
    out = tmp_path / "plots"
    drawn = ["cosine", "first_mass"]  # a metric with before/after curves, the attention one
    assert plot_diagnostics.main([*tiny_runs, f"--out_dir={out}", f"--metrics={','.join(drawn)}"]) == 0
    assert sorted(os.listdir(out)) == sorted(f"diag_{m}.png" for m in drawn)
    assert all(os.path.getsize(out / f"diag_{m}.png") > 10_000 for m in drawn)
    capsys.readouterr()
    with pytest.raises(SystemExit) as error:  # a folder without runs: a one-line error
        plot_diagnostics.main([str(tmp_path / "nothing"), f"--out_dir={out}"])
    err = capsys.readouterr().err
    assert error.value.code == 1 and err.startswith("error:") and err.count("\n") == 1


@pytest.mark.xdist_group("tiny_runs")  # one worker trains the module's runs once
def test_every_logged_metric_has_a_plot(tiny_runs, tmp_path):
    """Without --metrics every metric in the records is drawn (checked without drawing them)."""
    from experiments.plots import diagnostic_curves, metric_names
    names = metric_names([diagnostic_curves(eval_records(tiny_runs[0]))])
    assert sorted(names) == sorted(METRICS + ("first_mass", "first_mass_max_head"))


def test_cost_benchmark_reports_the_share_of_the_run(char_data, capsys):
    from conftest import TINY_MODEL
    import benchmark_diagnostics
    args = [f"--{k}={v}" for k, v in TINY_MODEL.items()]
    assert benchmark_diagnostics.main([*args, f"--data_dir={char_data}", "--center_v=True", "--max_iters=4",
                                       "--eval_interval=2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("run: 4 iterations") and "3 evaluations logged diagnostics" in line and line.endswith("without them")


def test_principal_variances_fall_back_to_float64_when_float32_fails(monkeypatch):
    """A degenerate representation (residual centering in momentum mode) once made float32 eigvalsh
    fail to converge and killed the training; float64 is tried then, with the same answer."""
    import torch
    from diagnostics import principal_variances
    points = torch.randn(40, 8)
    expected = principal_variances(points)
    real = torch.linalg.eigvalsh

    def float32_fails(matrix):
        if matrix.dtype == torch.float32:
            raise torch.linalg.LinAlgError("failed to converge")
        return real(matrix)

    monkeypatch.setattr(torch.linalg, "eigvalsh", float32_fails)
    assert torch.allclose(principal_variances(points), expected, rtol=1e-5, atol=1e-7)
