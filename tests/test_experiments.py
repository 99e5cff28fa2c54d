import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, flip_bytes_in_tensor

SCRIPTS = os.path.join(REPO_ROOT, "scripts")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
        "--eval_interval=10", "--eval_windows=8", "--warmup_iters=2", "--device=cpu", "--log_interval=5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sweep(args, **kwargs):
    return [sys.executable, os.path.join(SCRIPTS, "advanced_centering_experiments.py"), *args]


def results(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_sweep_resumes_after_interrupt_without_redoing_runs(char_data, tmp_path):
    args = ["--name=s", f"--out_root={tmp_path}", "--variants=baseline,embeddings_centered",
            "--modes=momentum", "--seeds=1,2", "--iters=60", f"--data_dir={char_data}", *TINY]
    dry = subprocess.run(sweep(args + ["--dry_run"]), capture_output=True, text=True, env=ENV)
    assert dry.returncode == 0 and "4 runs in" in dry.stdout and dry.stdout.count("to do") == 4

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
    for cmd in (["create_comparison_plots.py", str(tmp_path / "s" / "results.jsonl")],
                ["plot_training_improved.py", str(tmp_path / "s"), f"--out={tmp_path / 'curves.png'}"]):
        r = subprocess.run([sys.executable, os.path.join(SCRIPTS, cmd[0]), *cmd[1:]], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
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


def test_stopping_a_run_that_still_ignores_sigint_takes_sigterm_not_the_kill_grace(tmp_path):
    """A run a background sweep started inherits SIGINT ignored until the trainer restores it; one
    stopped in that window (or one that never listens) gets SIGTERM after a short grace, not
    SIGKILL after the long one; one that hears SIGINT ends by it."""
    from types import SimpleNamespace

    from experiments import local

    def start(code):
        log_file = open(tmp_path / f"log{len(started)}.txt", "w")
        process = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n" + code + "\n"
                                    "print('ready', flush=True)\ntime.sleep(120)"],
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(SimpleNamespace(process=process, log_file=log_file))
        while "ready" not in (tmp_path / f"log{len(started) - 1}.txt").read_text():
            time.sleep(0.02)

    started = []
    start("signal.signal(signal.SIGINT, signal.SIG_IGN)")  # deaf to SIGINT
    start("signal.signal(signal.SIGINT, lambda *a: sys.exit(7))")  # hears it
    t0 = time.time()
    local.stop(started)
    assert time.time() - t0 < local.SIGINT_GRACE_S + 5 < local.STOP_GRACE_S
    assert started[0].process.returncode == -signal.SIGTERM and started[1].process.returncode == 7


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


@pytest.mark.slow
def test_run_best_reproduction_writes_table_and_plots(char_data, tmp_path):
    report = tmp_path / "report"
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "run_best_advanced_1k.py"), "--seeds=2", "--iters=20",
                        f"--out_root={tmp_path}", f"--report_dir={report}", f"--data_dir={char_data}", *TINY],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    table = (report / "results.md").read_text()
    for method in ("Baseline", "Embeddings centered", "QK + Value", "Full attention", "Value only"):
        assert f"| {method} |" in table
    assert "(n=2)" in table and "Noise floor" in table and "+2.26%" in table and "p (Holm)" in table
    data = json.loads((report / "results.json").read_text())
    assert len(data["runs"]) == 10 and len(data["comparisons"]) == 5 and data["metric"] == "test_loss"
    assert (report / "improvement.png").stat().st_size > 10_000
    assert (report / "val_curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_smoke_check_passes(char_data):
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "test_advanced_centering_simple.py"),
                        f"--data_dir={char_data}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 33 and "all passed" in r.stdout


def test_detailed_logging(tiny_config):
    args = [f"--data_dir={tiny_config.data_dir}", f"--out_dir={tiny_config.out_dir}", *TINY,
            "--max_iters=6", "--center_embeddings=True", "--center_v=True", "--centering_mode=momentum"]
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_with_logging.py"), *args],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    lines = results(os.path.join(tiny_config.out_dir, "detailed.jsonl"))
    assert [x["iter"] for x in lines] == list(range(6))
    first = lines[-1]
    assert first["grad_norm"] > 0 and {"embeddings", "block0"} <= set(first["grad_norm_by_layer"])
    by_layer = first["grad_norm_by_layer"]
    assert abs(sum(v * v for v in by_layer.values()) ** 0.5 - first["grad_norm"]) < 1e-6 * first["grad_norm"] + 1e-9
    assert set(first["center_norm"]) == {"embeddings", "v"} and first["center_norm"]["v"] > 0


# ---------------------------------------------------------------------------------------------
# The experiments library: planning, records, the local executor

def test_grid_plan_ids_and_typos(tmp_path):
    from configurator import ConfigError
    from experiments.plan import BASELINE_MODE, check_plan, parse_grid, plan_runs, variant_names

    assert variant_names()[0] == "baseline" and "embeddings_centered" in variant_names()
    assert "experiment_base" not in variant_names() and "gpu" not in variant_names()
    grid = parse_grid(["n_layer=2,4", "learning_rate=3e-4,1e-3"])
    runs = plan_runs(["baseline", "qk_centered"], ["adaptive", "momentum"], [1, 2], [50], grid)
    assert len(runs) == (1 + 2) * 4 * 2 and len({r.run_id for r in runs}) == len(runs)
    assert runs[0].run_id == f"baseline-{BASELINE_MODE}-s1-i50-learning_rate=3e-4-n_layer=2"
    assert runs[0].group == f"baseline-{BASELINE_MODE}-i50-learning_rate=3e-4-n_layer=2"
    assert runs[-1].run_id == "qk_centered-momentum-s2-i50-learning_rate=1e-3-n_layer=4"
    assert runs[-1].train_args(["--batch_size=4"])[1:] == [
        "--batch_size=4", "--seed=2", "--max_iters=50", "--lr_decay_iters=50", "--centering_mode=momentum",
        "--learning_rate=1e-3", "--n_layer=4"]
    configs = check_plan(runs, ["baseline", "qk_centered"], ["adaptive", "momentum"], ["--batch_size=4"])
    assert configs[runs[-1].run_id]["learning_rate"] == 1e-3 and configs[runs[-1].run_id]["n_layer"] == 4

    def rejected(grid=None, overrides=(), variants=("baseline",), modes=("adaptive",)):
        with pytest.raises(ConfigError) as e:
            check_plan(plan_runs(variants, modes, [1], [10], parse_grid(grid)), variants, modes, overrides)
        return str(e.value)

    assert "did you mean 'learning_rate'" in rejected(["learnin_rate=1e-3"])
    assert "--n_layer expects an integer, got 'two'" in rejected(["n_layer=2,two"])
    assert "did you mean 'batch_size'" in rejected(overrides=["--bach_size=4"])
    assert "use --seeds" in rejected(["seed=1,2"])
    assert "both a --grid axis and a --key=value override" in rejected(["n_layer=2"], ["--n_layer=3"])
    assert "no config for variant 'nope'" in rejected(variants=["nope"])
    assert "unknown mode 'adaptiv'" in rejected(modes=["adaptiv"])
    assert "must be divisible" in rejected(["n_head=3"])  # validated with the variant's config
    with pytest.raises(ConfigError):
        parse_grid(["learning_rate"])
    overlay = tmp_path / "wide.py"  # a config file among the overrides: an overlay on every variant
    overlay.write_text("n_embd = 64\nn_head = 8\n")
    configs = check_plan(runs[:1], ["baseline"], [], [str(overlay), "--n_head=2"])
    assert (configs[runs[0].run_id]["n_embd"], configs[runs[0].run_id]["n_head"]) == (64, 2)


def test_records_read_the_test_split_and_survive_concurrent_appends(tmp_path):
    import multiprocessing

    from experiments.plan import Run
    from experiments.records import read_jsonl, summarize

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [{"type": "eval", "iter": 0, "val_loss": 3.0}, {"type": "train", "iter": 5, "step_ms": 2.0},
             {"type": "eval", "iter": 10, "val_loss": 2.5}, {"type": "test", "iter": 10, "test_loss": 2.6,
                                                             "test_bpb": 3.7, "test_tokens": 100}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = summarize(Run("baseline", "none", 1, 10), str(run_dir), 0, 1.0, "local", {}, {})
    assert (record["test_loss"], record["test_bpb"], record["final_val_loss"], record["best_val_loss"]) == (2.6, 3.7, 2.5, 2.5)
    assert summarize(Run("baseline", "none", 1, 10), str(tmp_path), 3, 1.0, "local", {}, {})["test_loss"] is None
    assert summarize(Run("baseline", "none", 1, 10), str(run_dir), 3, 1.0, "local", {}, {})["status"] == "diverged"

    # records far larger than an atomic pipe write, from 4 processes at once
    path = str(tmp_path / "results.jsonl")
    workers = [multiprocessing.Process(target=_append_many, args=(path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
        assert p.exitcode == 0
    got = read_jsonl(path)
    assert sorted((r["worker"], r["i"]) for r in got) == [(w, i) for w in range(4) for i in range(50)]
    assert all(r["pad"] == "x" * 20_000 for r in got)


def _append_many(path, worker):
    from experiments.records import append_record
    for i in range(50):
        append_record(path, {"worker": worker, "i": i, "pad": "x" * 20_000})


def test_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path, capsys):
    """A full disk in the middle of an append leaves half a line: readers report it once and drop
    it, and the next append cuts it off instead of landing on it, so the sweep folder stays
    readable and no record is lost. A broken line before the last is an error."""
    from configurator import UserError
    from experiments.records import RESULTS_FILE, append_record, read_results

    path = tmp_path / RESULTS_FILE
    record = lambda run_id: {"run_id": run_id, "status": "ok"}  # noqa: E731
    append_record(str(path), record("a"))
    with open(path, "ab") as f:
        f.write(b'{"run_id": "b", "sta')  # the write a full disk cut short
    assert list(read_results(str(tmp_path))) == list(read_results(str(tmp_path))) == ["a"]
    err = capsys.readouterr().err  # one warning, however often the file is read
    assert err == f"warning: {path}: dropped a torn last line (20 bytes, a write cut short)\n"
    append_record(str(path), record("b"))
    assert path.read_text() == "".join(json.dumps(record(k)) + "\n" for k in "ab")
    with open(path, "ab") as f:  # a whole record but for its newline is kept, and ended first
        f.write(json.dumps(record("c")).encode())
    append_record(str(path), record("d"))
    assert list(read_results(str(tmp_path))) == ["a", "b", "c", "d"] and capsys.readouterr().err == ""

    path.write_text(json.dumps(record("a")) + "\n" + '{"run_id": "b", "sta\n' + json.dumps(record("c")) + "\n")
    with pytest.raises(UserError, match=f"^{path}:2 is not a JSON record"):
        read_results(str(tmp_path))


def test_append_that_fails_midway_leaves_whole_lines(tmp_path, monkeypatch):
    import files
    from configurator import UserError
    from experiments.records import append_record, read_jsonl

    path = str(tmp_path / "results.jsonl")
    append_record(path, {"run_id": "a"})
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, data[:len(data) // 2]))  # disk full
    with pytest.raises(UserError, match="cannot append to .*results.jsonl: short write"):
        append_record(path, {"run_id": "b", "pad": "x" * 100})
    monkeypatch.undo()
    assert open(path).read() == json.dumps({"run_id": "a"}) + "\n"  # its half taken back
    append_record(path, {"run_id": "c"})
    assert [r["run_id"] for r in read_jsonl(path)] == ["a", "c"]


@pytest.mark.slow
def test_jobs_2_gives_the_records_of_jobs_1(char_data, tmp_path):
    """Two runs at once, each with half the cores, end as one at a time, to float rounding: CPU
    kernels sum in a thread-count-dependent order, so 1 and 2 threads differ by rounding (about
    1e-7 relative here; checked to 1e-5); the relative --out_root is the same folder for
    checkpoints and records."""
    args = ["--name=j", "--out_root=rel", "--variants=baseline,embeddings_centered", "--modes=momentum",
            "--seeds=1", "--iters=30", "--cpus=2", f"--data_dir={char_data}", *TINY]
    by_jobs = {}
    env = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}  # which would cap the threads
    for jobs in (1, 2):
        cwd = tmp_path / f"jobs{jobs}"
        cwd.mkdir()
        r = subprocess.run(sweep([*args, f"--jobs={jobs}"]), capture_output=True, text=True, env=env, cwd=cwd,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        by_jobs[jobs] = {x["run_id"]: x for x in results(cwd / "rel" / "j" / "results.jsonl")}
        for run_id, record in by_jobs[jobs].items():
            assert (cwd / "rel" / "j" / run_id / "ckpt.pt").exists()
            assert record["config"]["out_dir"] == str(cwd / "rel" / "j" / run_id)
            assert record["executor"] == "local" and record["provenance"]["torch"] and "cpu" in record["provenance"]
            assert record["test_loss"] > 0 and record["test_bpb"] > 0  # from the run's test record
            assert record["provenance"]["device"] == ("cpu (2 threads)" if jobs == 1 else "cpu (1 thread)")
            header = (cwd / "rel" / "j" / run_id / "train.log").read_text().splitlines()[0]
            assert header.startswith(f"$ OMP_NUM_THREADS={2 // jobs} ") and header.endswith(" --overwrite=True")
    assert len(by_jobs[1]) == 2 and set(by_jobs[1]) == set(by_jobs[2])
    for run_id, one in by_jobs[1].items():
        two = by_jobs[2][run_id]
        assert one["status"] == two["status"] == "ok"
        for key in ("final_val_loss", "best_val_loss", "test_loss"):
            assert one[key] == pytest.approx(two[key], rel=1e-5, abs=0), key


STAND_IN_TRAINER = """
import json, os, sys, time
import torch
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--out_dir=")][0]
rank = os.environ.get("RANK", "0")
start = time.time()
time.sleep(1.0)
with open(os.path.join(out, f"env-{rank}.json"), "w") as f:
    json.dump({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": os.environ.get("OMP_NUM_THREADS"),
               "torch_threads": torch.get_num_threads(), "start": start, "end": time.time()}, f)
"""


@pytest.mark.slow  # starts training subprocesses
def test_each_running_job_gets_its_own_gpus(char_data, tmp_path, monkeypatch):
    """What the local executor gives each child, seen by the child: its GPUs and threads. A stand-in
    trainer reports its environment (no GPU here); the GPU count is given with gpus=."""
    from configurator import ConfigError
    from experiments.local import LocalExecutor
    from experiments.plan import plan_runs
    from experiments.sweep import run_sweep

    trainer = tmp_path / "trainer.py"
    trainer.write_text(STAND_IN_TRAINER)
    runs = plan_runs(["baseline"], [], [1, 2, 3, 4], [10])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # which would cap the threads
    records = run_sweep("g", runs, str(tmp_path), overrides=[f"--data_dir={char_data}"], jobs=2, nproc=2,
                        gpus=["0", "1", "2", "3"], cpus=8, trainer=str(trainer), log=lambda *a: None)
    assert all(r["status"] == "ok" for r in records.values()) and len(records) == 4
    seen = []
    for run in runs:
        envs = [json.loads((tmp_path / "g" / run.run_id / f"env-{rank}.json").read_text()) for rank in (0, 1)]
        assert envs[0]["gpus"] == envs[1]["gpus"] in ("0,1", "2,3")  # both processes of a run: its 2 GPUs
        assert envs[0]["threads"] == "2" and envs[0]["torch_threads"] == 2  # 8 cores / (2 jobs x 2 processes)
        seen.append(envs[0])
    for a in seen:  # runs that overlapped in time never shared a GPU
        for b in seen:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["gpus"] != b["gpus"]
    assert {e["gpus"] for e in seen} == {"0,1", "2,3"}
    assert LocalExecutor(jobs=3, gpus=[]).slots() == [None, None, None]
    with pytest.raises(ConfigError, match="need 4 GPUs; 2 available"):
        LocalExecutor(jobs=2, nproc=2, gpus=["0", "1"])


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


@pytest.mark.slow
def test_sweep_throughput_benchmark_runs(char_data, tmp_path):
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "benchmark_sweep.py"), "--variants=baseline",
                        "--iters=4", "--rounds=1", f"--out_root={tmp_path}", f"--data_dir={char_data}", *TINY],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| --jobs 1 | 2 |" in r.stdout and "| --jobs 2 | 1 |" in r.stdout
    assert "--jobs 2 / --jobs 1: " in r.stdout and "(1 runs of 4 iterations)" in r.stdout


def test_eval_noise(tiny_config):
    from train import train
    train(tiny_config, log=lambda *a: None)
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}",
                        "--windows=20", "--trials=5"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    exact = float(r.stdout.split("non-overlapping windows: ")[1].split()[0])
    assert 0 < exact < 10 and "estimates from 20 random windows (5 trials)" in r.stdout
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}x"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: no checkpoint at ") and r.stderr.count("\n") == 1


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


def test_yes_no_options_and_counts_are_checked_when_parsed(char_data, tmp_path, capsys):
    """--dry_run and --wait alone or =True/False (the configurator's words); --jobs/--nproc below 1
    are refused while parsing, so a dry run catches them too."""
    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k
    from experiments.cli import CommandLine, add_sweep_arguments, sweep_options

    base = ["--name=x", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1", "--iters=10", f"--data_dir={char_data}"]
    for dry in (["--dry_run"], ["--dry_run=True"], ["--dry_run=1", "--dropout=0.1"], ["--dry_run", "--dropout=0.1"]):
        assert sweep_script.main(base + dry) == 0
        assert capsys.readouterr().out.endswith(f"1 runs in {tmp_path / 'x'}\n")
    assert not (tmp_path / "x").exists()  # nothing ran
    assert run_best_advanced_1k.main([f"--out_root={tmp_path}", "--variants=baseline", "--tune", "--rates=1e-3",
                                      "--selection_seeds=1", "--seeds=2", "--iters=10", f"--data_dir={char_data}",
                                      "--dry_run"]) == 0
    assert "1 runs in" in (out := capsys.readouterr().out) and "then 2 test seeds" in out  # --tune alone: True
    for bad, message in (("--jobs=0", "argument --jobs: must be at least 1, got 0"),
                         ("--jobs=-2", "argument --jobs: must be at least 1, got -2"),
                         ("--nproc=0", "argument --nproc: must be at least 1, got 0"),
                         ("--dry_run=maybe", "argument --dry_run: expected a boolean"),
                         ("--wait=yes", "argument --wait: expected a boolean")):
        with pytest.raises(SystemExit) as exit:
            sweep_script.main(base + ["--dry_run", bad])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err

    parser = CommandLine("x")
    add_sweep_arguments(parser)
    for argv, dry, wait in (([], False, False), (["--wait"], False, True), (["--wait=False", "--dry_run=false"], False, False),
                            (["--wait=true", "--dry_run", "config/gpu.py"], True, True)):
        args, rest = parser.parse_with_overrides(["--executor=slurm", *argv])
        assert (args.dry_run, sweep_options(args)["wait"]) == (dry, wait)
        assert rest == [a for a in argv if a.endswith(".py")]  # an overlay after a bare flag stays an overlay


def test_dry_run_shows_runs_held_with_other_settings(char_data, tmp_path, capsys):
    """A run the folder holds (finished: its record; started: its run.json) trained otherwise is
    listed as "other settings", not as its old status, by both experiment scripts' dry runs."""
    import advanced_centering_experiments as sweep_script
    import run_best_advanced_1k
    from experiments.plan import check_plan, plan_runs
    from experiments.records import RESULTS_FILE, append_record

    runs = plan_runs(["baseline"], [], [1, 2, 3], [10])
    configs = check_plan(runs, ["baseline"], [], ["--n_embd=32", f"--data_dir={char_data}"])
    folder = tmp_path / "x"
    for run in runs:
        configs[run.run_id]["out_dir"] = str(folder / run.run_id)
    (folder / runs[0].run_id).mkdir(parents=True)
    (folder / runs[0].run_id / "run.json").write_text(json.dumps({"config": {**configs[runs[0].run_id], "n_embd": 16}}))
    append_record(str(folder / RESULTS_FILE), {"run_id": runs[1].run_id, "status": "ok",
                                               "config": {**configs[runs[1].run_id], "device": "cuda"}})
    append_record(str(folder / RESULTS_FILE), {"run_id": runs[2].run_id, "status": "ok",
                                               "config": {**configs[runs[2].run_id], "n_embd": 16}})
    assert sweep_script.main(["--name=x", f"--out_root={tmp_path}", "--variants=baseline", "--seeds=1,2,3",
                              "--iters=10", "--n_embd=32", f"--data_dir={char_data}", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(None, 1) == [runs[0].run_id, "other settings (n_embd=16, now 32)"]
    assert lines[1].split() == [runs[1].run_id, "ok"]  # another device is the same run
    assert lines[2].split(None, 1) == [runs[2].run_id, "other settings (n_embd=16, now 32)"]
    assert lines[-1].startswith("2 of them the folder holds trained with other settings")

    assert run_best_advanced_1k.main([f"--out_root={tmp_path}", "--name=x", "--variants=baseline", "--seeds=3",
                                      "--iters=10", "--n_embd=32", f"--data_dir={char_data}", "--dry_run",
                                      f"--dataset={configs[runs[0].run_id]['dataset']}"]) == 0
    out = capsys.readouterr().out
    assert out.count("other settings (n_embd=16, now 32)") == 2 and f"{runs[1].run_id}" in out
