"""A sweep (experiments/sweep.py): interrupted, killed or failed runs, reruns, the runs it refuses, and an
--out_root it cannot use."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ENV, REPO_ROOT, TINY, flip_bytes_in_tensor, one_line, results, run_main, sweep


@pytest.mark.slow
def test_sweep_resumes_after_interrupt_without_redoing_runs(char_data, tmp_path, capsys):
    import advanced_centering_experiments
    import create_comparison_plots
    import plot_training_improved
    from conftest import run_main
    args = ["--name=s", f"--out_root={tmp_path}", "--variants=baseline,embeddings_centered",
            "--modes=momentum", "--seeds=1,2", "--iters=60", f"--data_dir={char_data}", *TINY]
    status, out, err = run_main(advanced_centering_experiments.main, args + ["--dry_run"], capsys)
    assert status == 0 and "4 runs in" in out and out.count("to do") == 4, err

    proc = subprocess.Popen(sweep(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    second_ckpt = tmp_path / "s" / "baseline-none-s2-i60" / "ckpt.pt"
    deadline = time.time() + 120
    while not second_ckpt.exists() and time.time() < deadline:  # run 1 done, run 2 under way
        time.sleep(0.05)
    assert second_ckpt.exists()
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again" in err
    before = results(tmp_path / "s" / "results.jsonl")
    assert [r["run_id"] for r in before] == ["baseline-none-s1-i60"]

    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 already done, 3 to do" in r.stdout
    after = results(tmp_path / "s" / "results.jsonl")
    assert after[0] == before[0]  # the finished run was not done again
    assert sorted(x["run_id"] for x in after) == sorted(
        f"{v}-s{s}-i60" for v in ("baseline-none", "embeddings_centered-momentum") for s in (1, 2))
    assert all(x["status"] == "ok" and x["final_val_loss"] > 0 for x in after)
    with open(tmp_path / "s" / "baseline-none-s2-i60" / "train.log") as f:
        assert "resuming from" in f.read()  # the interrupted run continued from its checkpoint

    # plots from this small sweep
    for main, argv in ((create_comparison_plots.main, [str(tmp_path / "s" / "results.jsonl")]),
                       (plot_training_improved.main, [str(tmp_path / "s"), f"--out={tmp_path / 'curves.png'}"])):
        status, out, err = run_main(main, argv, capsys)
        assert status == 0, err
    for png in (tmp_path / "s" / "improvement_i60.png", tmp_path / "s" / "mode_heatmap_i60.png", tmp_path / "curves.png"):
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_background_sweep_stops_on_sigterm_and_stops_its_runs(char_data, tmp_path):
    # started as `cmd &` would start it: SIGINT ignored, so only `kill PID` (SIGTERM) can stop it
    args = ["--name=bg", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1",
            "--iters=100000", f"--data_dir={char_data}", *TINY]
    proc = subprocess.Popen(sweep(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    ckpt = tmp_path / "bg" / "baseline-none-s1-i100000" / "ckpt.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists()
    trainer_log = (tmp_path / "bg" / "baseline-none-s1-i100000" / "train.log").read_text()
    assert "KeyboardInterrupt" not in trainer_log
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "run the same command again" in err
    assert time.time() - started < 20  # the run heard the sweep's SIGINT (not killed after the grace period)
    assert not (tmp_path / "bg" / "results.jsonl").exists()  # an interrupted run leaves no record
    log = (tmp_path / "bg" / "baseline-none-s1-i100000" / "train.log").read_text()
    assert "KeyboardInterrupt" in log[len(trainer_log):]  # it was interrupted, not killed


@pytest.mark.slow
def test_a_corrupt_checkpoint_fails_its_run_and_is_never_recorded_as_diverged(char_data, tmp_path):
    """Bytes flipped inside a tensor of an interrupted run's ckpt.pt would have it resume on NaN
    weights and stop "diverged" (exit 3), a final record that tuning reads as "rate not eligible":
    the checksum makes it a failed run (exit 2), which the next command tries again."""
    args = ["--name=c", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1", "--iters=100000",
            f"--data_dir={char_data}", *TINY]
    run_dir = tmp_path / "c" / "baseline-none-s1-i100000"
    proc = subprocess.Popen(sweep(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while not (run_dir / "ckpt.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    flip_bytes_in_tensor(str(run_dir / "ckpt.pt"))
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 1 and "baseline-none-s1-i100000 (failed, exit 2)" in r.stderr
    [record] = results(tmp_path / "c" / "results.jsonl")
    assert record["status"] == "failed" and record["returncode"] == 2
    assert f"error: checkpoint {run_dir / 'ckpt.pt'} is corrupt" in (run_dir / "train.log").read_text()


def process_runs(pid):
    """Whether process pid is alive (a zombie nobody has reaped yet is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def eval_iters(run_dir):
    return [r["iter"] for r in results(run_dir / "metrics.jsonl") if r["type"] == "eval"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="trainers die with their sweep through Linux's prctl")
def test_sweep_killed_with_sigkill_and_rerun_at_once_has_one_trainer_per_run(char_data, tmp_path):
    """SIGKILL gives a sweep no chance to stop its trainers (each runs in its own session): they die
    with it, so the same command run again at once resumes every run with one trainer, and each
    run ends with one record and one eval record per evaluation (not two trainers' interleaved)."""
    # long enough that trainers left running would still run beside the rerun's (else they finish first)
    args = ["--name=k", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1,2", "--iters=2000", "--jobs=2",
            f"--data_dir={char_data}", *TINY, "--eval_interval=100", "--log_interval=100"]
    run_dirs = [tmp_path / "k" / f"baseline-none-s{s}-i2000" for s in (1, 2)]
    proc = subprocess.Popen(sweep(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 120
    while not all((d / "ckpt.pt").exists() for d in run_dirs) and time.time() < deadline:
        time.sleep(0.05)
    trainers = [int((d / "train.lock").read_text().split()[0]) for d in run_dirs]
    assert all(process_runs(pid) for pid in trainers)
    proc.kill()
    proc.wait()
    rerun = subprocess.Popen(sweep(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 10
    while any(process_runs(pid) for pid in trainers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(process_runs(pid) for pid in trainers)  # they died with the sweep, not at their runs' end
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "0 already done, 2 to do" in out and "not started" not in out
    records = results(tmp_path / "k" / "results.jsonl")
    assert sorted(x["run_id"] for x in records) == [d.name for d in run_dirs]
    assert all(x["status"] == "ok" for x in records)
    for d in run_dirs:
        assert eval_iters(d) == list(range(0, 2001, 100))
        assert "resuming from" in (d / "train.log").read_text()


@pytest.mark.slow
def test_a_run_whose_trainer_still_runs_is_not_started_again(char_data, tmp_path):
    """Where trainers cannot be made to die with their sweep, one an earlier sweep left running
    holds its run folder's lock: the sweep says so in one line and starts the other runs."""
    run_dir = tmp_path / "s" / "baseline-none-s1-i20"
    run_dir.mkdir(parents=True)
    lock = str(run_dir / "train.lock")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from files import FileLock\n"
                               f"with FileLock({lock!r}):\n    print('held', flush=True); time.sleep(60)"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=ENV)
    args = ["--name=s", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1,2", "--iters=20",
            f"--data_dir={char_data}", *TINY]
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        said = [line for line in r.stdout.splitlines() if "not started" in line]
        assert said == [f"1 runs not started: their trainers are still running (baseline-none-s1-i20: pid "
                        f"{holder.pid} on {os.uname().nodename}); run the same command again once they have "
                        f"ended, to collect them"]
        assert "1 queued or running" in r.stdout
        assert [x["run_id"] for x in results(tmp_path / "s" / "results.jsonl")] == ["baseline-none-s2-i20"]
        assert os.listdir(run_dir) == ["train.lock"]  # nothing started there
    finally:
        holder.kill()
        holder.wait()
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and "1 already done, 1 to do" in r.stdout, r.stderr
    assert eval_iters(run_dir) == [0, 10, 20]


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_sweep_goes_on(char_data, tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name in ("experiment_base.py", "baseline.py", "value_centered.py"):
        shutil.copy(os.path.join(REPO_ROOT, "config", name), config_dir)
    # a valid config that fails when the run starts: a model too large for this machine's memory
    # (the sweep checks device, dtype and data before it starts; sizes are the trainer's check)
    (config_dir / "half.py").write_text('include("experiment_base.py")\ncenter_v = True\nvocab_multiple = 10 ** 12\n')
    args = ["--name=f", f"--out_root={tmp_path}", "--variants=baseline,half,value_centered", "--modes=adaptive",
            "--seeds=1", "--iters=20", f"--config_dir={config_dir}", f"--data_dir={char_data}", *TINY]
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 runs did not finish ok: half-adaptive-s1-i20")
    by_id = {x["run_id"]: x for x in results(tmp_path / "f" / "results.jsonl")}
    assert by_id["half-adaptive-s1-i20"]["status"] == "failed"
    assert by_id["half-adaptive-s1-i20"]["returncode"] == 2
    assert by_id["baseline-none-s1-i20"]["status"] == by_id["value_centered-adaptive-s1-i20"]["status"] == "ok"
    assert "GiB to train" in (tmp_path / "f" / "half-adaptive-s1-i20" / "train.log").read_text()

    # the same sweep with other settings: its finished runs (records) and started ones (run.json)
    # are not reused or resumed under the same ids, and nothing is touched
    before = (tmp_path / "f" / "results.jsonl").read_text()
    wider = [a.replace("--n_embd=16", "--n_embd=32") for a in args]
    for _ in range(2):
        r = subprocess.run(sweep(wider), capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "baseline-none-s1-i20 trained with other settings (n_embd=16, now 32)" in r.stderr
        if (tmp_path / "f" / "results.jsonl").exists():
            assert (tmp_path / "f" / "results.jsonl").read_text() == before
            os.rename(tmp_path / "f" / "results.jsonl", tmp_path / "results.jsonl.kept")  # now only run.json says

    # a config the configurator rejects fails the whole sweep in one line, before any run starts
    (config_dir / "broken.py").write_text('include("experiment_base.py")\ncenter_v = True\nbias = "yes"\n')
    r = subprocess.run(sweep([*args[:2], "--name=g", "--variants=baseline,broken", *args[3:]]),
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'bias' must be bool" in r.stderr
    assert not (tmp_path / "g").exists()


@pytest.mark.slow  # starts training subprocesses
def test_a_second_sweep_on_the_same_folder_is_refused(char_data, tmp_path):
    (tmp_path / "s").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from experiments.sweep import SweepLock\n"
                               f"with SweepLock({str(tmp_path / 's')!r}):\n    print('held', flush=True); time.sleep(60)"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["--name=s", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1", "--iters=10",
                f"--data_dir={char_data}", *TINY]
        r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert f"another sweep is running in {tmp_path / 's'} (pid {holder.pid} on " in r.stderr
        assert not (tmp_path / "s" / "results.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock file of the dead sweep still names it; it is taken over
    assert (tmp_path / "s" / "sweep.lock").read_text().startswith(f"{holder.pid} ")
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [x["status"] for x in results(tmp_path / "s" / "results.jsonl")] == ["ok"]


def test_a_local_sweep_never_runs_what_is_still_queued_on_slurm(char_data, tmp_path, monkeypatch):
    """After --executor=slurm without --wait, a local sweep on the folder refuses the runs whose
    jobs may still be queued or running (the state query is faked: no cluster here), refuses too
    when Slurm cannot be asked, and runs them once their jobs are known to have ended."""
    import experiments.slurm as slurm
    from configurator import UserError
    from experiments.plan import plan_runs
    from experiments.records import read_results
    from experiments.sweep import run_sweep

    trainer = tmp_path / "trainer.py"
    trainer.write_text("")  # a stand-in that exits 0 at once
    runs = plan_runs(["baseline"], [], [1, 2], [10])
    sweep_dir = tmp_path / "q"
    sweep_dir.mkdir()
    (sweep_dir / slurm.STATE_FILE).write_text(json.dumps({runs[0].run_id: "41_0", runs[1].run_id: "41_1"}))
    go = lambda: run_sweep("q", runs, str(tmp_path), overrides=[f"--data_dir={char_data}"], trainer=str(trainer), gpus=[],
                           log=lambda *a: None)

    monkeypatch.setattr(slurm, "job_states", lambda: {"41_0": "COMPLETED", "41_1": "PENDING"})
    with pytest.raises(UserError, match=r"1 runs of .* are queued or running as Slurm jobs \(baseline-none-s2-i10;"):
        go()

    def unreachable():
        raise UserError("cannot ask Slurm for the jobs' states: no squeue")
    monkeypatch.setattr(slurm, "job_states", unreachable)
    with pytest.raises(UserError, match="Slurm cannot be asked whether they are still queued or running "
                                        r"\(cannot ask Slurm for the jobs' states: no squeue\)") as refused:
        go()
    assert "\n" not in str(refused.value)
    assert not (sweep_dir / "results.jsonl").exists() and not (sweep_dir / runs[0].run_id).exists()

    monkeypatch.setattr(slurm, "job_states", lambda: {"41_0": "COMPLETED", "41_1": "CANCELLED"})
    assert {r["status"] for r in go().values()} == {"ok"}  # both jobs ended: the runs are done here
    assert set(read_results(str(sweep_dir))) == {r.run_id for r in runs}

    # a job whose record is in results.jsonl is known to have ended: Slurm is not asked about it
    monkeypatch.setattr(slurm, "job_states", unreachable)
    assert slurm.slurm_runs_under_way(str(sweep_dir), runs, {
        runs[0].run_id: {"provenance": {"slurm_job_id": "41_0"}},
        runs[1].run_id: {"provenance": {"slurm_job_id": "41_1"}}}) == []


def sweep_argv(out_root, char_data, dry=False):
    return [f"--out_root={out_root}", "--name=x", "--variants=baseline", "--seeds=1", "--iters=2", "--n_embd=32",
            "--n_layer=1", "--n_head=2", "--block_size=16", f"--data_dir={char_data}"] + (["--dry_run"] if dry else [])


@pytest.mark.parametrize("dry", [True, False])
def test_a_sweep_out_root_that_is_a_file_is_one_line(char_data, tmp_path, capsys, dry):
    import advanced_centering_experiments as sweep_script
    out_root = tmp_path / "a_file"
    out_root.write_text("mine")
    status, _, err = run_main(sweep_script.main, sweep_argv(out_root, char_data, dry), capsys)
    assert status == 2 and one_line(err) and "is a file, not a folder" in err, err
    assert out_root.read_text() == "mine"


def test_a_sweep_out_root_that_cannot_be_written_is_one_line(char_data, read_only_folder, capsys):
    import advanced_centering_experiments as sweep_script
    status, _, err = run_main(sweep_script.main, sweep_argv(read_only_folder / "sweeps", char_data), capsys)
    assert status == 2 and one_line(err) and "cannot write there (Read-only file system)" in err, err
