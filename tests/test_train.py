import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import sample as sample_module
import train as train_module
from configurator import ConfigError, UserError
from conftest import REPO_ROOT, flip_bytes_in_tensor, run_main
from model import GPT
from train import (TokenData, TrainingError, evaluate, load_checkpoint,
                   load_model_state, save_checkpoint, setup_runtime, train)


def weights(out_dir, name="ckpt.pt"):
    return load_checkpoint(os.path.join(out_dir, name))["model"]


def read_metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_training_reduces_loss_and_writes_outputs(tiny_config):
    cfg = dataclasses.replace(tiny_config, max_iters=60, eval_interval=30)
    summary = train(cfg, log=lambda *a: None)
    evals = [r for r in read_metrics(cfg.out_dir) if r["type"] == "eval"]
    assert [r["iter"] for r in evals] == [0, 30, 60]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    assert summary["best_val_loss"] == min(r["val_loss"] for r in evals)
    trains = [r for r in read_metrics(cfg.out_dir) if r["type"] == "train"]
    assert len(trains) == 60 and {"loss", "lr", "step_ms", "tokens_per_s"} <= set(trains[0])
    assert os.path.isfile(os.path.join(cfg.out_dir, "best.pt"))
    ckpt = load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))
    assert ckpt["iter_num"] == 60 and ckpt["best_val_loss"] == summary["best_val_loss"]


def test_resume_is_bit_exact(tiny_config, tmp_path):
    # dropout on, so the saved RNG state matters as well as the sampler and optimizer
    straight = dataclasses.replace(tiny_config, dropout=0.1, max_iters=40, lr_decay_iters=40,
                                   out_dir=str(tmp_path / "straight"))
    train(straight, log=lambda *a: None)
    first = dataclasses.replace(straight, max_iters=20, out_dir=str(tmp_path / "split"))
    train(first, log=lambda *a: None)
    train(dataclasses.replace(first, max_iters=40, init_from="resume"), log=lambda *a: None)
    a, b = weights(straight.out_dir), weights(first.out_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda d: [r["loss"] for r in read_metrics(d) if r["type"] == "train"]
    assert losses(straight.out_dir) == losses(first.out_dir)


def test_train_split_estimate_has_its_own_window_count(tiny_config, tmp_path):
    """train_eval_windows sets how many train windows the train-loss figure averages; the
    validation figure, which picks the best checkpoint, does not depend on it."""
    evals = {}
    for n in (4, 16, 16):
        out = str(tmp_path / f"w{n}-{len(evals)}")
        train(dataclasses.replace(tiny_config, max_iters=2, eval_interval=2, train_eval_windows=n, out_dir=out),
              log=lambda *a: None)
        evals[out] = (n, [r for r in read_metrics(out) if r["type"] == "eval"][-1])
    (n4, a), (_, b), (_, c) = evals.values()
    assert a["val_loss"] == b["val_loss"] == c["val_loss"] and a["train_loss"] != b["train_loss"]
    assert b["train_loss"] == c["train_loss"]  # identical runs, identical figures


def test_eval_windows_do_not_depend_on_batch_size(char_data):
    rt = setup_runtime(train_module.TrainConfig(device="cpu"))
    data = TokenData(char_data, 16)
    torch.manual_seed(0)
    model = GPT(train_module.GPTConfig(block_size=16, vocab_size=data.vocab_size, n_layer=1,
                                       n_head=2, n_embd=16))
    a = evaluate(model, data, "val", 30, 4, rt)
    b = evaluate(model, data, "val", 30, 7, rt)
    assert a == pytest.approx(b, rel=1e-6)
    assert a[1] == pytest.approx(a[0] / 0.6931471805599453, rel=1e-6)  # ASCII: one byte per char


class BlowUp(nn.Module):
    """Turns the embeddings into NaN from the 15th training forward pass on."""
    calls = 0

    def forward(self, x):
        if self.training:
            BlowUp.calls += 1
            if BlowUp.calls >= 15:
                return x * float("nan")
        return x


class NaNGPT(GPT):
    def make_site(self, name, dim, layer):
        return BlowUp() if name == "embeddings" else nn.Identity()


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tiny_config, capsys):
    BlowUp.calls = 0
    with pytest.raises(SystemExit) as e:
        train_module.main([f"--{k}={v}" for k, v in dataclasses.asdict(tiny_config).items()],
                          model_cls=NaNGPT)
    assert e.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: loss is nan at iteration 14;")
    ckpt = load_checkpoint(os.path.join(tiny_config.out_dir, "ckpt.pt"))
    assert ckpt["iter_num"] == 10  # the eval at iteration 10 saved it; nothing after the NaN
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint({"x": torch.arange(5)}, path)

    def crash_midway(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(UserError, match="cannot write .*ckpt.pt: disk full .*unchanged"):  # one line, exit 1
        save_checkpoint({"x": torch.zeros(5)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(5))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_bad_checkpoints_give_clear_errors(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at"):  # a path that names none: exit 2
        load_checkpoint(str(tmp_path / "missing.pt"))
    train(dataclasses.replace(tiny_config, max_iters=2), log=lambda *a: None)
    good = os.path.join(tiny_config.out_dir, "ckpt.pt")
    truncated = str(tmp_path / "truncated.pt")
    with open(good, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:1000])
    with pytest.raises(ConfigError, match="unreadable \\(truncated or corrupt\\)"):  # exit 2, as a corrupt one
        load_checkpoint(truncated)
    ckpt = load_checkpoint(good)
    inference_only = os.path.join(str(tmp_path), "folded")
    os.makedirs(inference_only)
    save_checkpoint({k: ckpt[k] for k in ("model", "model_args", "model_class")},
                    os.path.join(inference_only, "ckpt.pt"))
    with pytest.raises(TrainingError, match="cannot be resumed: it lacks the training state"):
        train(dataclasses.replace(tiny_config, out_dir=inference_only, init_from="resume"), log=lambda *a: None)
    other = GPT(train_module.GPTConfig(**{**ckpt["model_args"], "n_embd": 64}))
    with pytest.raises(TrainingError, match="does not match the model"):
        load_model_state(other, ckpt["model"], good)


def test_corrupt_checkpoint_is_one_line_and_exit_2_everywhere(tiny_config, tmp_path, capsys):
    """Bytes flipped inside a tensor: torch.load does not notice, the checksum written with the
    checkpoint does, in resume, evaluation and sampling alike (never a traceback, a NaN loss, or
    exit 3: a sweep would record the run as diverged)."""
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    train(cfg, log=lambda *a: None)
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    legacy = str(tmp_path / "legacy.pt")  # as written before checkpoints had a checksum
    torch.save(load_checkpoint(path), legacy)
    assert "checksum" not in torch.load(legacy, weights_only=True)
    assert load_checkpoint(legacy)["iter_num"] == 4
    flip_bytes_in_tensor(path)
    assert not torch.isfinite(torch.load(path, weights_only=True)["model"]["transformer.h.0.mlp.c_fc.weight"]).all()
    with pytest.raises(ConfigError, match=f"checkpoint {path} is corrupt"):
        load_checkpoint(path)
    for main, extra in ((train_module.main, ["--init_from=resume", "--max_iters=8"]),
                        (train_module.main, ["--eval_only=True"]), (sample_module.main, None)):
        argv = cli_args(cfg) + extra if extra else [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1"]
        status, out, err = run_main(main, argv, capsys)
        assert status == 2 and err.count("\n") == 1 and "corrupt" in err and "step" not in out, (argv, err)
    assert [r["iter"] for r in read_metrics(cfg.out_dir) if r["type"] == "eval"] == [0, 2, 4]  # nothing written


def test_resume_without_checkpoint_exits_2(tiny_config, capsys):
    status, _, err = run_main(train_module.main, [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}",
                                                  "--init_from=resume", "--device=cpu"], capsys)
    assert status == 2  # a bad value (the folder names no run), not a run that failed
    assert err.strip() == f"error: no checkpoint at {tiny_config.out_dir}/ckpt.pt"


def cli_args(cfg):
    return [f"--{k}={v}" for k, v in dataclasses.asdict(cfg).items()]


@pytest.mark.slow  # three interpreters start (torchrun and its two workers)
def test_two_gloo_processes_match_one(tiny_config, tmp_path):
    base = dataclasses.replace(tiny_config, gradient_accumulation_steps=2, max_iters=10,
                               eval_interval=5, log_interval=1)
    one = dataclasses.replace(base, out_dir=str(tmp_path / "one"))
    two = dataclasses.replace(base, out_dir=str(tmp_path / "two"))
    train(one, log=lambda *a: None)  # the single process: this one, one thread (conftest)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py"] + cli_args(two), cwd=REPO_ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 process(es)" in r.stdout
    m1, m2 = read_metrics(one.out_dir), read_metrics(two.out_dir)
    assert [r["iter"] for r in m1] == [r["iter"] for r in m2]
    for a, b in zip(m1, m2):
        for key in ("loss", "val_loss", "train_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a, b)
    w1, w2 = weights(one.out_dir), weights(two.out_dir)
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)


# torch.compile in the training loop: tests/test_centering.py::test_compiled_training_loop_matches_eager
# (the loop with every centering site in place; the plain GPT is the same forward with identity sites)


def test_sample_from_saved_checkpoint(tiny_config, capsys):
    train(dataclasses.replace(tiny_config, max_iters=5), log=lambda *a: None)
    status, out, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", "--start=ROMEO:",
                                                     "--num_samples=2", "--max_new_tokens=30", "--device=cpu"], capsys)
    assert status == 0, err
    samples = out.split("---------------\n")
    assert len(samples) == 3 and all(s.startswith("ROMEO:") and len(s) >= 36 for s in samples[:2])
    status, _, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", "--start=\u263a",
                                                   "--device=cpu"], capsys)
    assert status == 2 and "outside the vocabulary" in err


@pytest.mark.parametrize("override, message", [
    ("--batch_size=1000000000000", "GiB to train"),
    ("--gradient_accumulation_steps=1000000000000", "GiB to train"),
    ("--n_embd=1000000000", "GiB to train"),
    ("--n_layer=100000000", "GiB to train"),
    ("--eval_windows=1000000000000", "windows the val split has"),
])
def test_sizes_beyond_the_machine_are_one_line_before_anything_is_built(tiny_config, capsys, override, message):
    """Sizes checked against the split and the device's memory before allocation: one line, exit
    2, no checkpoint written (and no hang building 10^8 layers)."""
    argv = [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}", "--device=cpu",
            "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--eval_windows=16",
            "--train_eval_windows=16", "--max_iters=2", override]
    status, _, err = run_main(train_module.main, argv, capsys)
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not os.path.exists(os.path.join(tiny_config.out_dir, "ckpt.pt"))


def test_the_memory_estimate_never_refuses_the_shapes_users_run():
    """training_bytes is a lower bound: the CPU protocol's model needs a few tens of MB by it, and
    GPT-2 small (124M parameters, context 1024, batch 16, as config/experiment_base.py suggests
    for a GPU) fits a 40 GiB GPU by it."""
    from train import training_bytes
    assert 10e6 < training_bytes(4, 128, 64, 71, 12) < 100e6
    assert training_bytes(12, 768, 1024, 50304, 16) < 40 * 2 ** 30
