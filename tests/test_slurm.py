"""The Slurm executor on a real single-node cluster (scripts/slurm_start.sh; .ci/run starts one).
Skipped, with the reason, where no cluster answers."""

import json
import os
import shutil
import subprocess
import time

import pytest
import torch

from conftest import ENV, REPO_ROOT, TINY_MODEL, results, sweep

# one cluster: with pytest-xdist, its tests run on one worker, one after another (--dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]
SLURM = ["--executor=slurm", "--cpus_per_run=1", "--time_min=10"]
MODEL = [f"--{k}={v}" for k, v in TINY_MODEL.items()] + ["--eval_interval=20", "--log_interval=20"]


def slurm_missing():
    """Why the Slurm tests cannot run here, or None."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install submitit)"
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (start a single-node cluster with: sudo bash scripts/slurm_start.sh)"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or not any(s.startswith(("idle", "mixed", "alloc")) for s in state.stdout.split()):
        return f"no Slurm node is up ({(state.stderr or state.stdout).strip()[:200]}): run sudo bash scripts/slurm_start.sh"
    return None


@pytest.fixture(scope="module")
def slurm_state():
    return slurm_missing()  # asked once: without a controller, sinfo takes a while to give up


@pytest.fixture
def slurm(slurm_state):
    if slurm_state:
        pytest.skip(slurm_state)


def wait_for(condition, timeout=180, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_slurm_sweep_records_a_failing_run_and_finishes_the_others(slurm, char_data, tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name in ("experiment_base.py", "baseline.py"):
        shutil.copy(os.path.join(REPO_ROOT, "config", name), config_dir)
    (config_dir / "half.py").write_text('include("experiment_base.py")\ncenter_v = True\ndtype = "float16"\n')
    args = ["--name=f", f"--out_root={tmp_path}", "--variants=baseline,half", "--seeds=1", "--iters=40",
            f"--config_dir={config_dir}", f"--data_dir={char_data}", *SLURM, *MODEL]
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "submitted 2 runs as Slurm jobs" in r.stdout
    jobs = json.loads((tmp_path / "f" / "slurm_jobs.json").read_text())
    assert sorted(jobs) == ["baseline-none-s1-i40", "half-adaptive-s1-i40"]

    r = subprocess.run(sweep([*args, "--wait"]), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not finish ok: half-adaptive-s1-i40 (failed, exit 2)" in r.stderr
    by_id = {x["run_id"]: x for x in results(tmp_path / "f" / "results.jsonl")}
    assert by_id["baseline-none-s1-i40"]["status"] == "ok" and by_id["baseline-none-s1-i40"]["last_iter"] == 40
    assert by_id["half-adaptive-s1-i40"]["status"] == "failed" and by_id["half-adaptive-s1-i40"]["returncode"] == 2
    # the failed run is run again by the second call when its first job had already ended by then
    # (a failed run is not final), so each record names the job of its run's latest submission;
    # the baseline's job is never submitted twice
    latest = json.loads((tmp_path / "f" / "slurm_jobs.json").read_text())
    assert latest["baseline-none-s1-i40"] == jobs["baseline-none-s1-i40"]
    for run_id, record in by_id.items():
        assert record["executor"] == "slurm" and record["provenance"]["slurm_job_id"] == latest[run_id]
    assert "float16 needs CUDA" in (tmp_path / "f" / "half-adaptive-s1-i40" / "train.log").read_text()


def test_requeued_and_preempted_slurm_run_ends_bit_identical_to_an_uninterrupted_run(slurm, char_data, tmp_path):
    """Stopped twice: requeued by an operator (scontrol requeue), then signalled as Slurm does before
    a time limit or a preemption (USR2: submitit requeues the job itself). Each time it resumes
    from its checkpoint, and it ends exactly as the same run done locally without a stop."""
    from experiments.plan import plan_runs
    from experiments.sweep import run_sweep

    iters = 400
    overrides = [f"--data_dir={char_data}", *MODEL]
    run = plan_runs(["embeddings_centered"], ["momentum"], [1], [iters])[0]
    local = run_sweep("ref", [run], str(tmp_path / "local"), overrides=overrides, cpus=1, log=lambda *a: None)
    assert local[run.run_id]["status"] == "ok"

    args = ["--name=q", f"--out_root={tmp_path / 'slurm'}", "--variants=embeddings_centered", "--modes=momentum",
            "--seeds=1", f"--iters={iters}", *SLURM, *overrides]
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    sweep_dir = tmp_path / "slurm" / "q"
    job = json.loads((sweep_dir / "slurm_jobs.json").read_text())[run.run_id]
    metrics, log = sweep_dir / run.run_id / "metrics.jsonl", sweep_dir / run.run_id / "train.log"

    def evaluated_past(n):
        return metrics.exists() and any(x["type"] == "eval" and x["iter"] >= n for x in results(metrics))

    def resumed_at():
        return [int(part.split("at iteration")[1].split()[0]) for part in log.read_text().split("resuming from")[1:]]

    def start_again():  # instead of waiting out Slurm's delay before a requeued job starts again
        wait_for(lambda: "PENDING" in subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                                     text=True).stdout, what="the job back in the queue")
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, capture_output=True,
                       timeout=60)

    wait_for(lambda: evaluated_past(40), what="the run's checkpoint at iteration 40")
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=60)
    # requeued, the job waits in the queue: a second sweep command does not submit the run again
    r = subprocess.run(sweep(args), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 runs are already queued or running on Slurm: not submitted again" in r.stdout
    assert "submitted" not in r.stdout.replace("not submitted", "")
    assert json.loads((sweep_dir / "slurm_jobs.json").read_text())[run.run_id] == job
    start_again()

    wait_for(lambda: len(resumed_at()) == 1 and evaluated_past(resumed_at()[0] + 60), what="progress after resuming")
    subprocess.run(["scancel", "--signal=USR2", job], check=True, capture_output=True, timeout=60)
    start_again()

    r = subprocess.run(sweep([*args, "--wait"]), capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    first, second = resumed_at()
    assert 20 <= first < second < iters  # stopped mid-run twice, each time resumed from its last checkpoint
    slurm_record = results(sweep_dir / "results.jsonl")[-1]
    assert [x["status"] for x in results(sweep_dir / "results.jsonl")] == ["ok"]  # the killed attempt left none
    local_record = local[run.run_id]
    for key in ("final_val_loss", "best_val_loss", "last_iter"):
        assert slurm_record[key] == local_record[key]
    evals = [[(x["iter"], x["val_loss"]) for x in results(d / run.run_id / "metrics.jsonl") if x["type"] == "eval"]
             for d in (sweep_dir, tmp_path / "local" / "ref")]
    assert evals[0] == evals[1]
    weights = [torch.load(d / run.run_id / "ckpt.pt", weights_only=True)["model"]
               for d in (sweep_dir, tmp_path / "local" / "ref")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_slurm_executor_without_submitit_is_one_line(monkeypatch):
    import experiments.slurm
    from configurator import UserError
    monkeypatch.setattr(experiments.slurm, "submitit", None)
    with pytest.raises(UserError, match="^the slurm executor needs submitit: pip install submitit$"):
        experiments.slurm.SlurmExecutor({})
