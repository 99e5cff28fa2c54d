"""Never lose or mislabel a run: run folders, stale temporary files, resume conflicts, dataset
identity, and a kill in the middle of the first checkpoint write."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    run_files = lambda: {name: Path(first.out_dir, name).read_bytes() for name in train_module.RUN_FILES}
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
    run_files = lambda: {name: Path(first.out_dir, name).read_bytes() for name in train_module.RUN_FILES}
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


def test_resume_after_a_torn_metrics_line(tiny_config, capsys):
    """A full disk in the middle of a metrics write leaves half a line: the resume warns once,
    drops it and continues; a broken line before the last stops it in one line, exit 1."""
    first = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    assert run_main(train_module.main, cli_args(first), capsys)[0] == 0
    metrics = os.path.join(first.out_dir, "metrics.jsonl")
    torn = b'{"type": "train", "iter": 5, "lo'
    with open(metrics, "ab") as f:
        f.write(torn)
    resume = cli_args(dataclasses.replace(first, max_iters=6)) + ["--init_from=resume"]
    code, _, err = run_main(train_module.main, resume, capsys)
    assert code == 0 and err == f"warning: {metrics}: dropped a torn last line ({len(torn)} bytes, a write cut short)\n"
    assert iters_of(first.out_dir, "train") == [1, 2, 3, 4, 5, 6]  # every line whole again

    with open(metrics, encoding="utf-8") as f:
        lines = f.readlines()
    with open(metrics, "w", encoding="utf-8") as f:
        f.writelines(lines[:2] + ['{"type": "train", "it\n'] + lines[2:])
    code, _, err = run_main(train_module.main, resume[:-1] + ["--max_iters=8", "--init_from=resume"], capsys)
    assert code == 1 and err == f"error: {metrics}:3 is not a JSON record (a corrupt line before the last: repair or remove it)\n"


def test_a_run_folder_has_one_trainer_at_a_time(tiny_config, capsys):
    """A trainer holds its folder's lock for the run's whole life; a second one on the folder (a
    sweep run again while the first one's trainers still run) is refused in one line, exit 1,
    before it deletes, truncates or appends anything. The lock goes with the process."""
    from files import lock_holder
    lock = os.path.join(tiny_config.out_dir, train_module.RUN_LOCK)
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
        before = {name: Path(cfg.out_dir, name).read_bytes() for name in train_module.RUN_FILES}
        for extra in (["--init_from=resume", "--max_iters=6"], ["--overwrite=True"]):
            code, out, err = run_main(train_module.main, cli_args(cfg) + extra, capsys)
            assert code == 1 and err.count("\n") == 1 and "step" not in out and "deleting" not in out
            assert err.startswith(f"error: another trainer is running in {cfg.out_dir} (pid {holder.pid} on ")
        assert {name: Path(cfg.out_dir, name).read_bytes() for name in train_module.RUN_FILES} == before
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
    write_char_dataset(data_dir, sample_text(20_000)[::-1], force=True)
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {cfg.out_dir}/ckpt.pt was trained on another dataset than {data_dir} holds")
    assert load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))["iter_num"] == 2



def swap_two_chars(meta):
    chars = meta["chars"]
    chars[0], chars[1] = chars[1], chars[0]


def cut_train_bin(data_dir):
    path = os.path.join(data_dir, "train.bin")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) * 2 // 3)  # whole uint16 tokens: a token file cut short


@pytest.mark.parametrize("tamper", ["cut train.bin", "swapped chars", "edited vocab_size"])
def test_dataset_changed_under_its_meta_is_refused_at_every_start(tiny_config, tmp_path, tamper, capsys):
    """meta.json's fingerprint is not taken on trust: recomputed from the files at every start
    and resume, a mismatch is one line naming the folder (exit 2), before anything is written."""
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    meta_path = os.path.join(data_dir, "meta.json")
    pristine = {name: Path(data_dir, name).read_bytes() for name in os.listdir(data_dir)}
    if tamper == "cut train.bin":
        cut_train_bin(data_dir)
    else:
        meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
        swap_two_chars(meta) if tamper == "swapped chars" else meta.update(vocab_size=meta["vocab_size"] + 1)
        Path(meta_path).write_text(json.dumps(meta), encoding="utf-8")
    before = {name: Path(cfg.out_dir, name).read_bytes() for name in train_module.RUN_FILES}
    for extra in (["--init_from=resume", "--max_iters=4"], ["--overwrite=True"], ["--eval_only=True"]):
        code, out, err = run_main(train_module.main, cli_args(cfg) + extra, capsys)
        assert code == 2 and err.count("\n") == 1, (extra, err)
        assert err.startswith(f"error: {data_dir} does not match its meta.json") and "prepare script" in err
        assert "step 0" not in out
    assert {name: Path(cfg.out_dir, name).read_bytes() for name in train_module.RUN_FILES} == before
    for name, content in pristine.items():  # restored as it was prepared: the run resumes
        Path(data_dir, name).write_bytes(content)
    assert run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)[0] == 0


def test_dataset_without_fingerprint_still_trains_and_resumes(tiny_config, tmp_path, capsys):
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    meta_path = Path(data_dir, "meta.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["fingerprint"]  # as prepared before fingerprints existed
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    assert run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)[0] == 0
    # its checkpoint's vocabulary is still checked against the data's on resume
    swap_two_chars(meta)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=6"], capsys)
    assert code == 2 and err.count("\n") == 1 and "trained on another dataset" in err and "chars differ" in err


def test_sample_refuses_a_checkpoint_whose_vocabulary_is_not_its_datasets(tiny_config, tmp_path, capsys):
    """A checkpoint that a resume before fingerprints were checked labelled with an edited
    vocabulary (same fingerprint, other chars) would decode the wrong characters."""
    import sample
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    ckpt = load_checkpoint(path)
    swap_two_chars(ckpt["dataset_meta"])
    train_module.save_checkpoint(ckpt, path)
    capsys.readouterr()
    code, out, err = run_main(sample.main, [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1",
                                            "--max_new_tokens=5"], capsys)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith(f"error: {path} carries another vocabulary than {data_dir}") and "chars differ" in err

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


# ----------------------------------------------------------------------------------------------
# every key validated where it is typed: one line, exit 2

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


@pytest.mark.parametrize("bad", ["--device=gpu", "--out_dir=", "--temperature=0", "--window=half"])
def test_sample_bad_value_is_one_line_and_exit_2(bad, capsys):
    import sample
    code, _, err = run_main(sample.main, [bad], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_sample_notes_a_dataset_that_changed_under_the_checkpoint(tiny_config, tmp_path, capsys):
    import sample
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    capsys.readouterr()
    args = [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=5", "--start=ROMEO:"]
    code, _, err = run_main(sample.main, args, capsys)
    assert code == 0 and err == ""
    write_char_dataset(data_dir, sample_text(20_000)[::-1], force=True)
    capsys.readouterr()
    code, out, err = run_main(sample.main, args, capsys)
    assert code == 0 and out.startswith("ROMEO:")  # decoded with the checkpoint's own vocabulary
    assert err.startswith(f"note: {data_dir} now holds another dataset than") and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# every script that trains has its own folder

@pytest.mark.slow  # starts training subprocesses
def test_benchmark_after_training_leaves_the_run_alone(tiny_config, tmp_path):
    config = tmp_path / "tiny.py"
    settings = {**dataclasses.asdict(tiny_config), "out_dir": str(tmp_path / "run"), "max_iters": 4, "eval_interval": 2}
    config.write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), str(config)], cwd=tmp_path,
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("metrics.jsonl", "best.pt")}
    for _ in range(2):  # the benchmark's own folder is replaced each time
        r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "benchmark.py"), str(config)],
                           cwd=tmp_path, capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert iters_of(str(tmp_path / "out" / "benchmark")) == [0, 2, 4]


@pytest.mark.slow  # starts training subprocesses
def test_detailed_log_holds_one_runs_records(tiny_config):
    script = os.path.join(REPO_ROOT, "scripts", "train_with_logging.py")
    args = cli_args(dataclasses.replace(tiny_config, max_iters=4, eval_interval=2))
    detailed = lambda: [r["iter"] for r in map(json.loads, open(os.path.join(tiny_config.out_dir, "detailed.jsonl")))]
    for extra, iters in ((["--max_iters=4"], [0, 1, 2, 3]), (["--max_iters=2", "--overwrite=True"], [0, 1]),
                         (["--max_iters=3", "--init_from=resume"], [0, 1, 2])):
        r = subprocess.run([sys.executable, script, *args, *extra], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
        assert detailed() == iters  # a replaced run's records go with it; a resumed run's stay once


def test_default_folders_differ():
    from train_advanced_centered import CenteredTrainConfig
    assert train_module.TrainConfig().out_dir != CenteredTrainConfig().out_dir
    assert "out" != train_module.TrainConfig().out_dir


# ----------------------------------------------------------------------------------------------
# torchrun: the README's command as written, and one report

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


def test_step_sharing_errors_name_the_flag_to_add(tiny_config):
    from train_advanced_centered import CenteredTrainConfig
    with pytest.raises(train_module.ConfigError) as e:
        train_module.check_step_sharing(1, 3, 2)
    assert str(e.value) == ("2 processes cannot share steps of gradient_accumulation_steps=1 x batch_size=3: "
                            "add --gradient_accumulation_steps=2 or --batch_size=2 (a multiple of 2)")
    train_module.check_step_sharing(1, 4, 2)  # rows split evenly
    adaptive = CenteredTrainConfig(center_embeddings=True, centering_mode="adaptive", batch_size=4)
    assert CenteredTrainConfig(center_embeddings=True, centering_mode="momentum").batch_statistics_reason() is None
    with pytest.raises(train_module.ConfigError, match=r"^4 processes cannot share steps of gradient_accumulation_steps=6: "
                       r"add --gradient_accumulation_steps=8 \(centering_mode 'adaptive' centers with the mean"):
        train_module.check_step_sharing(6, 4, 4, adaptive.batch_statistics_reason())


# ----------------------------------------------------------------------------------------------
# prepare scripts: a file of yours gets its own folder; a prepared dataset is never replaced silently

def copy_prepare_scripts(root):
    """The char prepare script and its helpers in a scratch repository, so that default folders
    (data/<dataset>...) land there, not in this checkout."""
    os.makedirs(root / "data" / "shakespeare_char")
    for name in ("files.py", "configurator.py"):  # text_sources writes meta.pkl through files.py
        shutil.copy(os.path.join(REPO_ROOT, name), root)
    shutil.copy(os.path.join(REPO_ROOT, "data", "text_sources.py"), root / "data")
    shutil.copy(os.path.join(REPO_ROOT, "data", "shakespeare_char", "prepare.py"), root / "data" / "shakespeare_char")
    return root / "data" / "shakespeare_char" / "prepare.py"


def test_prepare_input_file_gets_its_own_folder_and_never_replaces_another(tmp_path):
    script = copy_prepare_scripts(tmp_path / "repo")
    mine, other = tmp_path / "my text.txt", tmp_path / "other.txt"
    mine.write_text(sample_text(20_000), encoding="utf-8")
    other.write_text(sample_text(20_000)[::-1], encoding="utf-8")
    prepare = lambda *args: subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True)

    r = prepare("--input", mine)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "repo" / "data" / "shakespeare_char_my_text"
    assert (folder / "meta.json").exists() and "--dataset=shakespeare_char_my_text" in r.stdout
    assert os.listdir(tmp_path / "repo" / "data" / "shakespeare_char") == ["prepare.py"]  # the default data untouched

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert prepare("--input", mine, "--out_dir", folder).returncode == 0  # the same content again: fine
    r = prepare("--input", other, "--out_dir", folder)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing replaced, no temporary files
    assert prepare("--input", other, "--out_dir", folder, "--force").returncode == 0
    assert (folder / "meta.json").read_bytes() != before["meta.json"]


def test_openwebtext_small_file_is_refused_in_one_line(tmp_path):
    paragraphs = [f"Document {i}: it is {'very ' * (i % 5)}good.\nSecond line {i}." for i in range(40)]
    source = tmp_path / "docs.txt"
    source.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    env = {**ENV, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "data/openwebtext/prepare.py", "--text_file", str(source), "--out_dir",
                        str(tmp_path / "out"), "--num_proc", "1"], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "val split would hold" in last and "--val_fraction" in last
    assert not (tmp_path / "out" / "train.bin").exists()


@pytest.mark.parametrize("script,bad", [("data/shakespeare_char/prepare.py", "--bogus"),
                                        ("data/shakespeare/prepare.py", "--input"),
                                        ("data/openwebtext/prepare.py", "--seed=x")])
def test_prepare_bad_flag_is_one_line_and_exit_2(script, bad):
    r = subprocess.run([sys.executable, script, bad], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "usage:" not in r.stderr
