"""The local executor (experiments/local.py): stopping runs, each job's GPUs and threads, --jobs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ENV, SCRIPTS, TINY, results, sweep


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
start = time.time()  # the process's life, torch's import included: two jobs started together overlap
import torch
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--out_dir=")][0]
rank = os.environ.get("RANK", "0")
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
    overlapping = [(a, b) for a in seen for b in seen if a is not b and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping  # two jobs at a time did run at the same time
    assert all(a["gpus"] != b["gpus"] for a, b in overlapping)  # and never shared a GPU
    assert {e["gpus"] for e in seen} == {"0,1", "2,3"}
    assert LocalExecutor(jobs=3, gpus=[]).slots() == [None, None, None]
    with pytest.raises(ConfigError, match="need 4 GPUs; 2 available"):
        LocalExecutor(jobs=2, nproc=2, gpus=["0", "1"])


def test_gpu_ids_from_the_command_line_are_checked(monkeypatch):
    import torch

    from configurator import ConfigError
    from experiments.local import check_gpu_ids
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no GPU on this machine"):
        check_gpu_ids(["0"])
    check_gpu_ids([])  # --gpus= (none) is always fine
    # ids this process does not see (a 2-GPU node, or CUDA_VISIBLE_DEVICES=2,3): refused, not run on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    check_gpu_ids(["0", "1"])
    with pytest.raises(ConfigError, match=r"--gpus=0,1,2,3: no GPU 2,3 here \(this process sees 0,1\)"):
        check_gpu_ids(["0", "1", "2", "3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    check_gpu_ids(["3"])
    with pytest.raises(ConfigError, match="no GPU 0 here"):
        check_gpu_ids(["0"])
    # a run's record names the device it trains on: mps on a Mac (auto, no GPUs of its own)
    from experiments.local import describe_device
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert describe_device("auto", 2, None) == "mps (2 threads)" and describe_device("cpu", 1, None) == "cpu (1 thread)"
    assert describe_device("auto", 1, ["1"]) == "cuda (CUDA_VISIBLE_DEVICES=1)"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert describe_device("auto", 2, []) == "cpu (2 threads)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # Slurm gives each job its own GPUs: a login node without one is no reason to refuse
    import argparse

    from experiments.cli import add_sweep_arguments, sweep_options
    parser = argparse.ArgumentParser()
    add_sweep_arguments(parser)
    assert sweep_options(parser.parse_args(["--executor=slurm", "--gpus=0"]))["executor"] == "slurm"
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        sweep_options(parser.parse_args(["--gpus=0"]))


@pytest.mark.slow
def test_sweep_throughput_benchmark_runs(char_data, tmp_path):
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "benchmark_sweep.py"), "--variants=baseline",
                        "--iters=4", "--rounds=1", f"--out_root={tmp_path}", f"--data_dir={char_data}", *TINY],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| --jobs 1 | 2 |" in r.stdout and "| --jobs 2 | 1 |" in r.stdout
    assert "--jobs 2 / --jobs 1: " in r.stdout and "(1 runs of 4 iterations)" in r.stdout


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no Linux autogroups on this machine")
@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) != 0, reason="the tests run niced: os.nice adds to it")
def test_a_niced_sweep_keeps_its_runs_niced_in_their_own_sessions(char_data, tmp_path):
    """Each run trains in a session (so an autogroup) of its own; Linux shares the CPU fairly
    between autogroups whatever the processes' nice values, so the run's autogroup gets the
    sweep's nice value: `nice -n 19` then leaves the user's shell its cores."""
    trainer = tmp_path / "trainer.py"
    trainer.write_text("import os, sys\nout = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--out_dir=')][0]\n"
                       "open(os.path.join(out, 'autogroup.txt'), 'w').write(open('/proc/self/autogroup').read())\n"
                       "open(os.path.join(out, 'sid.txt'), 'w').write(str(os.getsid(0)))\n")
    code = ("import sys\nfrom experiments.plan import plan_runs\nfrom experiments.sweep import run_sweep\n"
            f"records = run_sweep('n', plan_runs(['baseline'], [], [1], [10]), {str(tmp_path)!r}, "
            f"overrides=['--data_dir={char_data}'], jobs=1, gpus=[], trainer={str(trainer)!r}, log=lambda *a: None)\n"
            "sys.exit(0 if all(r['status'] == 'ok' for r in records.values()) else 1)\n")
    for nice in (0, 7):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(SCRIPTS),
                           env=ENV, preexec_fn=lambda: os.nice(nice), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        run_dir = tmp_path / "n" / "baseline-none-s1-i10"
        assert int((run_dir / "sid.txt").read_text()) != os.getsid(0)  # a session of its own
        seen = (run_dir / "autogroup.txt").read_text()
        assert seen.strip().endswith(f"nice {nice}"), seen
        (tmp_path / "n" / "results.jsonl").unlink()  # the next round runs it again
        for f in run_dir.iterdir():
            f.unlink()
