"""A run's folder (training/run_folder.py): one run and one trainer per folder, overwrite, resume, eval_only,
a failed start."""
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train as train_module
import train_advanced_centered
from conftest import ENV, REPO_ROOT, TINY_MODEL, cli_args, damage_meta_not_json, iters_of, one_line, run_main
from train import train
from training import run_folder
from training.checkpoint import load_checkpoint
from training.metrics import read_metrics


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


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
    second = dataclasses.replace(first, learning_rate=2e-3, max_iters=6)
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
    assert load_checkpoint(os.path.join(out_dir, "ckpt.pt"))["config"]["learning_rate"] == 2e-3
    assert not os.path.exists(stale)
    for name in ("run.json", "train.log"):
        with open(os.path.join(out_dir, name)) as f:
            assert f.read() == "mine"


@pytest.mark.parametrize("bad,message", [
    (["--dtype=float16"], "dtype float16 needs CUDA"),  # runtime setup
    (["--data_dir=no/such/data"], "no prepared dataset in no/such/data"),  # dataset loading
])
def test_overwrite_that_cannot_start_deletes_nothing(tiny_config, bad, message, capsys):
    first = dataclasses.replace(tiny_config, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(first), capsys)[0] == 0
    run_files = lambda: {name: Path(first.out_dir, name).read_bytes() for name in run_folder.RUN_FILES}
    before = run_files()
    stale = os.path.join(first.out_dir, f"ckpt.pt.tmp.{dead_pid()}")
    open(stale, "w").close()
    code, out, err = run_main(train_module.main, cli_args(first) + ["--overwrite=True", *bad], capsys)
    assert code != 0 and err.startswith(f"error: {message}") and "overwrite: deleting" not in out
    assert run_files() == before
    assert os.path.exists(stale)  # nothing at all deleted


def test_eval_only_evaluates_the_run_and_deletes_nothing(tiny_config, tmp_path, capsys):
    """--eval_only=True on a finished run evaluates its checkpoint, with or without --overwrite,
    and leaves every file as it was; on a folder with no run it creates nothing."""
    first = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    assert run_main(train_module.main, cli_args(first), capsys)[0] == 0
    run_files = lambda: {name: Path(first.out_dir, name).read_bytes() for name in run_folder.RUN_FILES}
    before, last = run_files(), [r for r in read_metrics(first.out_dir) if r["type"] == "eval"][-1]
    stale = os.path.join(first.out_dir, f"ckpt.pt.tmp.{dead_pid()}")
    open(stale, "w").close()
    given = [f"--data_dir={first.data_dir}", f"--out_dir={first.out_dir}", "--device=cpu", "--eval_only=True"]
    for extra in ([], ["--overwrite=True"]):  # the model and its settings come from the checkpoint
        code, out, err = run_main(train_module.main, given + extra, capsys)
        assert code == 0 and "deleting" not in out and "(was" not in out, err  # no key changed
        assert f"step {last['iter']}: " in out and f"val loss {last['val_loss']:.4f}" in out
    assert run_files() == before and os.path.exists(stale)

    empty = str(tmp_path / "none")
    code, _, err = run_main(train_module.main, cli_args(dataclasses.replace(first, out_dir=empty)) + ["--eval_only=True"], capsys)
    assert code == 0 and not os.path.exists(empty), err
    os.makedirs(empty)  # a run that stopped before its first checkpoint: nothing to evaluate
    Path(empty, "metrics.jsonl").write_text('{"type": "train", "iter": 1, "loss": 3.0}\n')
    code, _, err = run_main(train_module.main, given[:1] + [f"--out_dir={empty}", "--eval_only=True"], capsys)
    assert code == 1 and err.startswith(f"error: no checkpoint at {empty}/ckpt.pt to evaluate"), err


def test_a_run_folder_has_one_trainer_at_a_time(tiny_config, capsys):
    """A trainer holds its folder's lock for the run's whole life; a second one on the folder (a
    sweep run again while the first one's trainers still run) is refused in one line, exit 1,
    before it deletes, truncates or appends anything. The lock goes with the process."""
    from files import lock_holder
    lock = os.path.join(tiny_config.out_dir, run_folder.RUN_LOCK)
    seen = []
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    train(cfg, log=lambda *a: None, on_step=lambda *a: seen.append(lock_holder(lock)))
    assert seen and all(h.startswith(f"{os.getpid()} on ") for h in seen)  # held while it trains
    assert lock_holder(lock) is None  # and released at the end
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from files import FileLock\n"
                               f"with FileLock({lock!r}):\n    print('held', flush=True); time.sleep(60)"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {name: Path(cfg.out_dir, name).read_bytes() for name in run_folder.RUN_FILES}
        for extra in (["--init_from=resume", "--max_iters=6"], ["--overwrite=True"]):
            code, out, err = run_main(train_module.main, cli_args(cfg) + extra, capsys)
            assert code == 1 and err.count("\n") == 1 and "step" not in out and "deleting" not in out
            assert err.startswith(f"error: another process (a trainer, a fold or an import) is writing in {cfg.out_dir} "
                              f"(pid {holder.pid} on ")
        assert {name: Path(cfg.out_dir, name).read_bytes() for name in run_folder.RUN_FILES} == before
        code, out, _ = run_main(train_module.main, cli_args(cfg) + ["--eval_only=True"], capsys)
        assert code == 0 and "step 4" in out  # evaluation only reads: it needs no lock
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=6"], capsys)
    assert code == 0, err  # the killed holder's lock went with it
    assert iters_of(cfg.out_dir) == [0, 2, 4, 6]


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
    # another validation set would choose best.pt by comparing losses on two sets; an evaluation alone may take it
    code, out, err = run_main(train_advanced_centered.main, args + ["--init_from=resume", "--eval_windows=4",
                                                                    "--max_iters=6"], capsys)
    assert code == 2 and "eval_windows is 16 in the checkpoint, 4 now" in err and "validation set" in err, err
    code, out, err = run_main(train_advanced_centered.main, args + ["--eval_only=True", "--eval_windows=4"], capsys)
    assert code == 0, err
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


@pytest.mark.slow  # starts training subprocesses
def test_kill_during_first_checkpoint_write_then_restart(tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    straight = dataclasses.replace(cfg, out_dir=str(tmp_path / "straight"))
    train(straight, log=lambda *a: None)

    r = subprocess.run([sys.executable, "-c", KILL_IN_FIRST_SAVE, *cli_args(cfg)], cwd=REPO_ROOT,
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == -9
    left = sorted(os.listdir(cfg.out_dir))
    assert left[0] == "best.pt.tmp." + left[0].rsplit(".", 1)[1] and left[1:] == ["metrics.jsonl", "train.lock"]

    command = [sys.executable, "train.py", *cli_args(cfg)]
    r = subprocess.run(command + ["--init_from=resume"], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "stopped before its first checkpoint" in r.stderr and "--overwrite=True" in r.stderr
    r = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "already holds a run (metrics.jsonl)" in r.stderr
    r = subprocess.run(command + ["--overwrite=True"], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(cfg.out_dir)) == ["best.pt", "ckpt.pt", "metrics.jsonl", "train.lock"]  # the stale file is gone
    assert iters_of(cfg.out_dir) == iters_of(straight.out_dir) == [0, 2, 4]  # no duplicated iteration 0
    a, b = (load_checkpoint(os.path.join(d, "ckpt.pt"))["model"] for d in (cfg.out_dir, straight.out_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_start_keeps_a_folder_the_user_made(tiny_config, tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_config.data_dir, data_dir)
    damage_meta_not_json(data_dir)
    os.makedirs(tiny_config.out_dir)
    status, _, err = run_main(train_module.main, cli_args(dataclasses.replace(tiny_config, data_dir=data_dir)), capsys)
    assert status == 2 and one_line(err), err
    assert os.path.isdir(tiny_config.out_dir)  # the user's (empty) folder stays
