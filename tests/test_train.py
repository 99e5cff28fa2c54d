import dataclasses
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import train as train_module
import train_advanced_centered
from conftest import ENV, REPO_ROOT, cli_args, iters_of, run_main
from model import GPT
from train import evaluate, train
from training.batches import TokenData
from training.checkpoint import load_checkpoint
from training.metrics import read_metrics
from training.runtime import setup_runtime


def weights(out_dir, name="ckpt.pt"):
    return load_checkpoint(os.path.join(out_dir, name))["model"]


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


def test_resume_without_checkpoint_exits_2(tiny_config, capsys):
    status, _, err = run_main(train_module.main, [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}",
                                                  "--init_from=resume", "--device=cpu"], capsys)
    assert status == 2  # a bad value (the folder names no run), not a run that failed
    assert err.strip() == f"error: no checkpoint at {tiny_config.out_dir}/ckpt.pt"


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


@pytest.mark.parametrize("override, message", [
    ("--batch_size=1000000000000", "GiB to train"),
    ("--gradient_accumulation_steps=1000000000000", "GiB to train"),
    ("--n_embd=1000000000", "GiB to train"),
    ("--n_layer=100000000", "GiB to train"),
    ("--eval_windows=1000000000000", "windows the val split has"),
    # too small for the diagnostics at the first evaluation (a traceback there before)
    ("--n_embd=1 --n_head=1", "n_embd must be at least 2, got 1"),
    ("--block_size=1 --batch_size=1", "min(batch_size, eval_windows) x block_size must be at least 2 tokens"),
    ("--block_size=1 --eval_windows=1", "min(batch_size, eval_windows) x block_size must be at least 2 tokens"),
])
def test_sizes_beyond_the_machine_are_one_line_before_anything_is_built(tiny_config, capsys, override, message):
    """Sizes checked against the split and the device's memory before allocation: one line, exit
    2, no checkpoint written (and no hang building 10^8 layers)."""
    argv = [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}", "--device=cpu",
            "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--eval_windows=16",
            "--train_eval_windows=16", "--max_iters=2", *override.split()]
    status, _, err = run_main(train_module.main, argv, capsys)
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not os.path.exists(os.path.join(tiny_config.out_dir, "ckpt.pt"))


def test_the_memory_estimate_never_refuses_the_shapes_users_run():
    """training_bytes is a lower bound: the CPU protocol's model needs a few tens of MB by it, and
    GPT-2 small (124M parameters, context 1024, batch 16, as config/experiment_base.py suggests
    for a GPU) fits a 40 GiB GPU by it."""
    from training.runtime import training_bytes
    assert 10e6 < training_bytes(4, 128, 64, 71, 12) < 100e6
    assert training_bytes(12, 768, 1024, 50304, 16) < 40 * 2 ** 30


class Crash(Exception):
    pass


def test_run_without_always_save_checkpoint_resumes_exactly(tiny_config, tmp_path):
    base = dataclasses.replace(tiny_config, always_save_checkpoint=False, dropout=0.1, max_iters=30,
                               lr_decay_iters=30, eval_interval=10)
    straight = dataclasses.replace(base, out_dir=str(tmp_path / "straight"))
    train(straight, log=lambda *a: None)

    def crash_at_25(cfg, iter_num, *rest):
        if iter_num == 25:
            raise Crash()

    killed = dataclasses.replace(base, out_dir=str(tmp_path / "killed"))
    with pytest.raises(Crash):
        train(killed, log=lambda *a: None, on_step=crash_at_25)
    assert os.path.exists(os.path.join(killed.out_dir, "ckpt.pt"))  # something to resume from
    train(dataclasses.replace(killed, init_from="resume"), log=lambda *a: None)
    a = load_checkpoint(os.path.join(straight.out_dir, "ckpt.pt"))["model"]
    b = load_checkpoint(os.path.join(killed.out_dir, "ckpt.pt"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert iters_of(straight.out_dir) == iters_of(killed.out_dir)
    assert iters_of(straight.out_dir, "train") == iters_of(killed.out_dir, "train")
    best = lambda d: load_checkpoint(os.path.join(d, "best.pt"))["best_val_loss"]
    assert best(straight.out_dir) == best(killed.out_dir)


BAD_INPUTS = ["--learning_rate=-1", "--learning_rate=nan", "--beta1=1.5", "--beta2=1", "--min_lr=-1",
              "--min_lr=0.1", "--weight_decay=-1", "--grad_clip=-1", "--dropout=1", "--warmup_iters=-1",
              "--eval_windows=0", "--centering_momentum=0", "--centering_mode=mean", "--device=gpu",
              "--out_dir=", "--out_dir=/dev/null/x", "--wandb_log=True", "--peak_flops=0", "--seed=-1",
              f"--seed={2**70}"]


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_value_is_one_line_and_exit_2(tiny_config, bad, capsys, monkeypatch):
    real_find_spec = train_module.importlib.util.find_spec
    monkeypatch.setattr(train_module.importlib.util, "find_spec",  # as on a machine without wandb
                        lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    code, out, err = run_main(train_advanced_centered.main, cli_args(tiny_config) + [bad], capsys)
    key = bad[2:].split("=")[0]
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and key in err, err
    assert not os.path.exists(tiny_config.out_dir) and "step 0" not in out


def test_default_folders_differ():
    from train_advanced_centered import CenteredTrainConfig
    assert train_module.TrainConfig().out_dir != CenteredTrainConfig().out_dir
    assert "out" != train_module.TrainConfig().out_dir


@pytest.mark.slow
def test_torchrun_runs_the_readme_command_and_reports_once(tiny_config, tmp_path):
    # the README's command: a config with gradient_accumulation_steps=1, 2 processes
    base = {**dataclasses.asdict(tiny_config), "gradient_accumulation_steps": 1, "max_iters": 4,
            "eval_interval": 2}
    args = lambda out, **kw: [f"--{k}={v}" for k, v in {**base, "out_dir": str(out), **kw}.items()]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = lambda cmd: subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    one = run([sys.executable, "train_advanced_centered.py", *args(tmp_path / "one")])
    two = run(torchrun + ["train_advanced_centered.py", *args(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("done:") == 1 and two.stdout.count("centering: none") == 1
    warnings = [line for line in two.stderr.splitlines() if "warn" in line.lower()]
    assert len(warnings) == len(set(warnings)), warnings  # no warning once per process
    m1, m2 = read_metrics(str(tmp_path / "one")), read_metrics(str(tmp_path / "two"))
    assert [r["type"] for r in m1] == [r["type"] for r in m2]
    for a, b in zip(m1, m2):  # each process took half of every micro-batch: the same training
        for key in ("loss", "val_loss", "test_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a, b)

    # batch statistics: whole micro-steps per process; the warning and the done line appear once
    warn = run(torchrun + ["train_advanced_centered.py", *args(tmp_path / "adaptive", gradient_accumulation_steps=2),
                           "--center_embeddings=True", "--centering_mode=adaptive"])
    assert warn.returncode == 0, warn.stderr[-2000:]
    assert warn.stdout.count("done:") == 1 and warn.stderr.count("warning: centering_mode 'adaptive'") == 1


def test_a_gpu_number_the_machine_lacks_is_one_error(monkeypatch):
    """cuda:3 on a one-GPU machine: a ConfigError (one line, exit 2), not a traceback in model.to."""
    import torch

    from configurator import ConfigError
    from training.runtime import pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == "cuda:0" and pick_device("cuda") == "cuda"
    for device in ("cuda:3", "cuda:x"):
        with pytest.raises(ConfigError, match=f"device '{device}': this machine has cuda:0 to cuda:0"):
            pick_device(device)
