"""Never lose or mislabel a run: run folders, stale temporary files, resume conflicts, dataset
identity, and a kill in the middle of the first checkpoint write."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

import train as train_module
import train_advanced_centered
from conftest import REPO_ROOT, TINY_MODEL, sample_text, write_char_dataset
from train import load_checkpoint, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli_args(cfg):
    return [f"--{k}={v}" for k, v in dataclasses.asdict(cfg).items()]


def run_main(main, argv, capsys):
    """(exit status, stdout, stderr) of a command line run in this process."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def read_metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def iters_of(out_dir, kind="eval"):
    return [r["iter"] for r in read_metrics(out_dir) if r["type"] == kind]


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------------------------
# run folders

def test_fresh_run_into_a_folder_holding_a_run_is_refused(tiny_config, capsys):
    first = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    assert run_main(train_module.main, cli_args(first), capsys)[0] == 0
    out_dir = first.out_dir
    with open(os.path.join(out_dir, "metrics.jsonl"), "rb") as f:
        metrics_before = f.read()
    best_before = load_checkpoint(os.path.join(out_dir, "best.pt"))["best_val_loss"]
    for name in ("run.json", "train.log"):  # files of other tools: never touched
        with open(os.path.join(out_dir, name), "w") as f:
            f.write("mine")

    # e.g. the README's benchmark after its training command, with another learning rate
    second = dataclasses.replace(first, learning_rate=1e-4, max_iters=6)
    code, _, err = run_main(train_module.main, cli_args(second), capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {out_dir} already holds a run (ckpt.pt, best.pt, metrics.jsonl)")
    assert "--overwrite=True" in err and "--init_from=resume" in err
    with open(os.path.join(out_dir, "metrics.jsonl"), "rb") as f:
        assert f.read() == metrics_before
    assert load_checkpoint(os.path.join(out_dir, "best.pt"))["best_val_loss"] == best_before

    stale = os.path.join(out_dir, f"ckpt.pt.tmp.{dead_pid()}")
    open(stale, "w").close()
    code, out, _ = run_main(train_module.main, cli_args(second) + ["--overwrite=True"], capsys)
    assert code == 0 and "overwrite: deleting" in out
    assert iters_of(out_dir) == [0, 2, 4, 6]  # one run's records, not two runs' appended
    assert load_checkpoint(os.path.join(out_dir, "ckpt.pt"))["config"]["learning_rate"] == 1e-4
    assert not os.path.exists(stale)
    for name in ("run.json", "train.log"):
        with open(os.path.join(out_dir, name)) as f:
            assert f.read() == "mine"


def test_overwrite_with_resume_is_refused(tiny_config, capsys):
    code, _, err = run_main(train_module.main, cli_args(tiny_config) + ["--init_from=resume", "--overwrite=True"], capsys)
    assert code == 2 and err.startswith("error: --overwrite=True would delete the run")


def test_stale_temporary_files_of_dead_processes_are_removed_at_start(tiny_config):
    cfg = dataclasses.replace(tiny_config, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    dead = [os.path.join(cfg.out_dir, f"{name}.tmp.{dead_pid()}") for name in ("ckpt.pt", "metrics.jsonl")]
    alive = os.path.join(cfg.out_dir, f"best.pt.tmp.{os.getppid()}")  # a writer that still runs
    for path in dead + [alive]:
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
    train(dataclasses.replace(cfg, max_iters=4, init_from="resume"), log=lambda *a: None)
    assert not any(os.path.exists(p) for p in dead)
    assert os.path.exists(alive)


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


# ----------------------------------------------------------------------------------------------
# resume: what may change and what may not

def centered_args(tiny_config, **overrides):
    cfg = {**dataclasses.asdict(tiny_config), "max_iters": 4, "eval_interval": 2, **overrides}
    return [f"--{k}={v}" for k, v in cfg.items()] + ["--center_embeddings=True", "--centering_mode=adaptive"]


def test_resume_refuses_another_model_or_centering(tiny_config, capsys):
    args = centered_args(tiny_config)
    assert run_main(train_advanced_centered.main, args, capsys)[0] == 0
    before = load_checkpoint(os.path.join(tiny_config.out_dir, "ckpt.pt"))
    code, out, err = run_main(train_advanced_centered.main, args + [
        "--init_from=resume", "--centering_mode=momentum", "--n_embd=64", "--block_size=32"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot resume {tiny_config.out_dir}/ckpt.pt as a different model")
    for part in ("block_size is 16 in the checkpoint, 32 now", "centering_mode is 'adaptive' in the "
                 "checkpoint, 'momentum' now", "n_embd is 32 in the checkpoint, 64 now"):
        assert part in err
    assert "centering:" not in out  # no banner for a run that does not happen
    after = load_checkpoint(os.path.join(tiny_config.out_dir, "ckpt.pt"))
    assert after["iter_num"] == before["iter_num"] and after["config"] == before["config"]


def test_resume_takes_the_checkpoints_config_and_applies_changeable_keys(tiny_config, capsys):
    assert run_main(train_advanced_centered.main, centered_args(tiny_config), capsys)[0] == 0
    # a resume command without the config: the checkpoint says what trains; max_iters changes
    code, out, err = run_main(train_advanced_centered.main, [
        f"--out_dir={tiny_config.out_dir}", f"--data_dir={tiny_config.data_dir}", "--device=cpu",
        "--init_from=resume", "--max_iters=6"], capsys)
    assert code == 0, err
    assert "centering: embeddings; mode adaptive" in out  # the banner describes the checkpoint's model
    assert "warning: centering_mode 'adaptive'" in err  # and so does the leak warning
    assert "resuming with max_iters=6 (was 4)" in out
    ckpt = load_checkpoint(os.path.join(tiny_config.out_dir, "ckpt.pt"))
    assert ckpt["iter_num"] == 6
    assert ckpt["config"]["max_iters"] == 6 and ckpt["config"]["center_embeddings"] is True
    assert ckpt["config"]["n_embd"] == TINY_MODEL["n_embd"] and ckpt["config"]["log_interval"] == 1
    resume = [r for r in read_metrics(tiny_config.out_dir) if r["type"] == "resume"]
    assert resume == [{"type": "resume", "iter": 4, "changed": {"max_iters": [4, 6]}}]
    assert iters_of(tiny_config.out_dir) == [0, 2, 4, 6]


def test_resume_refuses_another_dataset(tiny_config, tmp_path, capsys):
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    # the same folder prepared again from other text (same characters, other tokens)
    write_char_dataset(data_dir, sample_text(20_000)[::-1])
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {cfg.out_dir}/ckpt.pt was trained on another dataset than {data_dir} holds")
    assert load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))["iter_num"] == 2


# ----------------------------------------------------------------------------------------------
# a kill in the middle of the first checkpoint write

KILL_IN_FIRST_SAVE = """
import os, signal, sys, torch
def killed_while_writing(obj, f):
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = killed_while_writing
import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_kill_during_first_checkpoint_write_then_restart(tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    straight = dataclasses.replace(cfg, out_dir=str(tmp_path / "straight"))
    train(straight, log=lambda *a: None)

    r = subprocess.run([sys.executable, "-c", KILL_IN_FIRST_SAVE, *cli_args(cfg)], cwd=REPO_ROOT,
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == -9
    left = sorted(os.listdir(cfg.out_dir))
    assert left[0] == "best.pt.tmp." + left[0].rsplit(".", 1)[1] and left[1:] == ["metrics.jsonl"]

    command = [sys.executable, "train.py", *cli_args(cfg)]
    r = subprocess.run(command + ["--init_from=resume"], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "stopped before its first checkpoint" in r.stderr and "--overwrite=True" in r.stderr
    r = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "already holds a run (metrics.jsonl)" in r.stderr
    r = subprocess.run(command + ["--overwrite=True"], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(cfg.out_dir)) == ["best.pt", "ckpt.pt", "metrics.jsonl"]  # the stale file is gone
    assert iters_of(cfg.out_dir) == iters_of(straight.out_dir) == [0, 2, 4]  # no duplicated iteration 0
    a, b = (load_checkpoint(os.path.join(d, "ckpt.pt"))["model"] for d in (cfg.out_dir, straight.out_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)
