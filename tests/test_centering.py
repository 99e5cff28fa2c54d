import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import sample as sample_module
import train_advanced_centered
from conftest import BASE, ENV, REPO_ROOT, SCRIPTS, centered_model, run_main, warm_up
from model import GPT, GPTConfig
from model_advanced_centering import (CENTERING_MODES, PLACEMENTS, AdvancedGPT, AdvancedGPTConfig,
                                      VectorCentering)
from train import train
from training.checkpoint import load_checkpoint
from train_advanced_centered import CenteredTrainConfig

PER_TOKEN_MODES = ("learnable_center", "momentum", "adaptive")  # causal in evaluation




def test_all_flags_off_is_the_baseline_bit_for_bit():
    torch.manual_seed(0)
    base = GPT(GPTConfig(**BASE))
    torch.manual_seed(0)
    adv = AdvancedGPT(AdvancedGPTConfig(**BASE))
    sd_a, sd_b = base.state_dict(), adv.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    idx = torch.randint(0, 40, (3, 16))
    la, loss_a = base(idx, idx)
    lb, loss_b = adv(idx, idx)
    assert torch.equal(la, lb) and torch.equal(loss_a, loss_b)


@pytest.mark.parametrize("mode", CENTERING_MODES)
def test_vector_centering_modes(mode):
    torch.manual_seed(0)
    vc = VectorCentering(8, mode, momentum=0.5)
    x = torch.randn(4, 5, 8) + 3.0
    if mode == "learnable_center":
        with torch.no_grad():
            vc.center.copy_(torch.full((8,), 2.0))
        assert torch.allclose(vc(x), x - 2.0)
        return
    if mode == "simple":
        for training in (True, False):
            vc.train(training)
            assert torch.allclose(vc(x).mean(dim=(0, 1)), torch.zeros(8), atol=1e-5)
        return
    vc.train()
    y = vc(x)
    if mode == "adaptive":  # the batch's own mean
        assert torch.allclose(y.mean(dim=(0, 1)), torch.zeros(8), atol=1e-5)
    else:  # momentum: nothing seen yet, so nothing subtracted; never its own batch
        assert torch.equal(y, x)
    vc.apply_step_statistics(vc.step_sum, vc.step_count)
    # one update with momentum 0.5, bias-corrected by 1 - 0.5: exactly the batch mean
    assert torch.allclose(vc.running_center(), x.mean(dim=(0, 1)), atol=1e-6)
    vc.eval()
    x2 = torch.randn(2, 3, 8)
    assert torch.allclose(vc(x2), x2 - x.mean(dim=(0, 1)), atol=1e-6)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("mode", PER_TOKEN_MODES)
def test_evaluation_is_causal(placement, mode):
    model = warm_up(centered_model(mode, **{placement: True}))
    a = torch.randint(0, 40, (2, 16))
    b = a.clone()
    b[:, 9:] = (b[:, 9:] + 7) % 40  # change every token after position 8
    with torch.no_grad():
        la, lb = model(a, all_logits=True)[0], model(b, all_logits=True)[0]
    assert torch.allclose(la[:, :9], lb[:, :9], atol=1e-6)
    assert not torch.allclose(la[:, 9:], lb[:, 9:])


@pytest.mark.parametrize("placement", ["center_embeddings", "center_v", "center_mlp", "center_residual"])
@pytest.mark.parametrize("mode,training", [("simple", False), ("simple", True), ("adaptive", True)])
def test_batch_statistics_leak_the_future(placement, mode, training):
    """The documented leak: with batch statistics, the logits at early positions change when only
    later tokens change. If this test ever fails, the warning printed by the trainer is wrong."""
    model = warm_up(centered_model(mode, **{placement: True})).train(training)
    a = torch.randint(0, 40, (2, 16))
    b = a.clone()
    b[:, 9:] = (b[:, 9:] + 7) % 40
    with torch.no_grad():
        la, lb = model(a, all_logits=True)[0], model(b, all_logits=True)[0]
    assert (la[:, :9] - lb[:, :9]).abs().max() > 1e-4


@pytest.mark.parametrize("mode", PER_TOKEN_MODES + ("simple",))
def test_centering_keys_alone_changes_nothing(mode):
    centered = warm_up(centered_model(mode, center_qk=True))
    for block in centered.transformer.h:
        block.attn.q_site = nn.Identity()  # keep only the key centering
    torch.manual_seed(1)
    plain = GPT(GPTConfig(**BASE))
    plain.load_state_dict(centered.state_dict(), strict=False)
    plain.eval()
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        centers = [b.attn.k_site.center_for(torch.randn(2, 16, 32)) for b in centered.transformer.h]
        assert all(c.norm() > 1e-3 for c in centers)  # a real shift is applied ...
        assert torch.allclose(centered(idx, all_logits=True)[0], plain(idx, all_logits=True)[0], atol=1e-5)


def test_learnable_center_starts_centered_and_is_not_decayed():
    model = centered_model("learnable_center", center_embeddings=True)
    idx = torch.randint(0, 40, (4, 16))
    model.init_from_batch(idx)
    site = model.transformer.embeddings_site
    emb = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(16))
    assert torch.allclose(site.center, emb.mean(dim=(0, 1)), atol=1e-6)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    assert any(p is site.center for p in opt.param_groups[1]["params"])  # the no-decay group


def test_invalid_mode_and_placement_are_one_line_errors(capsys):
    for args, message in [(["--centering_mode=fancy"], "error: unknown centering_mode 'fancy'; valid modes: "
                                                       "simple, adaptive, learnable_center, momentum"),
                          (["--center_keys=True"], "valid placements: center_embeddings, center_qk")]:
        status, _, err = run_main(train_advanced_centered.main, args, capsys)
        assert status == 2 and len(err.strip().splitlines()) == 1
        assert message in err


def centered_config(tiny_config, **overrides):
    return CenteredTrainConfig(**{**dataclasses.asdict(tiny_config), **overrides})


def train_centered(cfg):
    return train(cfg, AdvancedGPT, AdvancedGPTConfig, log=lambda *a: None)


def test_resume_is_exact_and_checkpoint_samples(tiny_config, tmp_path, capsys):
    flags = dict(center_embeddings=True, center_v=True, center_mlp=True, centering_mode="adaptive",
                 max_iters=16, lr_decay_iters=16, eval_interval=8)
    straight = centered_config(tiny_config, **flags, out_dir=str(tmp_path / "a"))
    train_centered(straight)
    split = dataclasses.replace(straight, max_iters=8, out_dir=str(tmp_path / "b"))
    train_centered(split)
    train_centered(dataclasses.replace(split, max_iters=16, init_from="resume"))
    a = load_checkpoint(os.path.join(straight.out_dir, "ckpt.pt"))["model"]
    b = load_checkpoint(os.path.join(split.out_dir, "ckpt.pt"))["model"]
    assert any("running_mean" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(straight.out_dir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if r["type"] == "eval"]
    assert {"center_norm/embeddings", "cosine/embeddings", "center_norm/mlp", "cosine/v"} <= set(evals[-1])
    status, _, err = run_main(sample_module.main, [f"--out_dir={straight.out_dir}", "--num_samples=1",
                                                   "--max_new_tokens=20", "--device=cpu"], capsys)
    assert status == 0, err


@pytest.mark.slow  # three interpreters start (torchrun and its two workers)
def test_running_means_are_the_same_with_two_gloo_processes(tiny_config, tmp_path):
    outs = {}
    for n in (1, 2):
        cfg = centered_config(tiny_config, center_embeddings=True, center_qk=True, center_v=True,
                              centering_mode="momentum", gradient_accumulation_steps=2, max_iters=6,
                              eval_interval=3, out_dir=str(tmp_path / f"p{n}"))
        if n == 1:
            train_centered(cfg)  # the single process: this one, one thread (conftest)
        else:
            args = [f"--{k}={v}" for k, v in dataclasses.asdict(cfg).items()]
            r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                                "train_advanced_centered.py"] + args, cwd=REPO_ROOT, capture_output=True,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
        outs[n] = load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))["model"]
    running = [k for k in outs[1] if k.endswith("running_mean")]
    assert running and all(outs[1][k].abs().sum() > 0 for k in running)
    for k in outs[1]:
        assert torch.allclose(outs[1][k], outs[2][k], atol=1e-5), k


@pytest.mark.slow  # a C++ compilation of three graphs (train forward and backward, eval forward)
def test_compiled_training_loop_matches_eager(tiny_config, tmp_path):
    """train.py's --compile=True with every centering placement (batch statistics, running means):
    the one test that runs inductor's code generation, so that the suite compiles C++ once."""
    # One step: the running means then hold the statistics of the same initial weights, which
    # compiled and eager code compute alike up to float32 rounding on any CPU. After a second step
    # they would not: AdamW's first update is +-lr for every parameter, whatever the size of its
    # gradient, and centering makes some gradients exactly zero in exact arithmetic (the residual
    # site's mean is 0 at initialisation), so their rounding noise becomes a full-size update.
    flags = dict(**{flag: True for flag in PLACEMENTS}, centering_mode="adaptive", max_iters=1, eval_interval=1)
    compiled = train_centered(centered_config(tiny_config, **flags, compile=True, out_dir=str(tmp_path / "c")))
    eager = train_centered(centered_config(tiny_config, **flags, out_dir=str(tmp_path / "e")))
    # the validation loss comes after that first update, so it carries the +-lr noise: a few 1e-5
    assert compiled["final_val_loss"] == pytest.approx(eager["final_val_loss"], rel=1e-3)
    a, b = (load_checkpoint(os.path.join(tmp_path, d, "ckpt.pt"))["model"] for d in "ce")
    running = [k for k in a if k.endswith("running_mean")]
    assert running and all(a[k.replace("running_mean", "num_updates")] == 1 for k in running)
    # means of activations of order 0.01-1 (the sites' means are 4e-4 and up, except the residual
    # site's, which is 0 up to rounding): 1e-6 is many float32 roundings of them, and a site whose
    # statistics the compiled graph dropped or took elsewhere is off by the mean itself
    for k in running:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    nonzero = [k for k in running if "residual_site" not in k]
    assert all(b[k].abs().max() > 1e-4 for k in nonzero)  # the comparison is not of zeros


@pytest.mark.slow  # dynamo tracing and AOT autograd of two graphs per mode
@pytest.mark.parametrize("mode", CENTERING_MODES)
def test_compiled_training_in_every_mode(tiny_config, mode):
    """torch.compile with every placement on; switching train/eval reuses the two compiled graphs.
    The backend is aot_eager: every mode's graph capture, autograd and buffer updates are compiled
    as inductor would receive them, without generating C++ for each (that runs once, above)."""
    import torch._dynamo
    torch._dynamo.reset()
    # one layer holds every site: a second would only double the tracing time
    cfg = AdvancedGPTConfig(**{**BASE, "n_layer": 1}, **{flag: True for flag in PLACEMENTS}, centering_mode=mode)
    torch.manual_seed(0)
    eager = AdvancedGPT(cfg)
    model = AdvancedGPT(cfg)
    model.load_state_dict(eager.state_dict())
    compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, 40, (4, 16))
    for step in range(3):
        compiled.train()
        _, loss = compiled(idx, idx)
        _, loss_eager = eager(idx, idx)
        assert torch.allclose(loss, loss_eager, atol=1e-4)
        loss.backward()
        opt.step()
        opt.zero_grad()
        model.after_optimizer_step()
        eager.load_state_dict(model.state_dict())
        compiled.eval()
        with torch.no_grad():
            compiled(idx)
        if step == 0:
            torch._dynamo.config.error_on_recompile = True  # both graphs exist now
    torch._dynamo.config.error_on_recompile = False
    assert torch.isfinite(loss)
    if mode in ("adaptive", "momentum"):  # the compiled forward did collect batch statistics
        assert all(m.num_updates.item() == 3 and m.running_mean.abs().sum() > 0
                   for _, _, m in model.centerings())


@pytest.mark.slow
def test_smoke_check_passes(char_data):
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "test_advanced_centering_simple.py"),
                        f"--data_dir={char_data}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 33 and "all passed" in r.stdout
