"""
The files a sweep reads and writes, in one place (a run's metrics.jsonl is read through training.metrics):

    <sweep>/results.jsonl          one record per finished run attempt (the last one counts)
    <sweep>/<run id>/metrics.jsonl what train.py logged (train, eval and test records)

A results record: run_id, group, variant, mode, seed, iters, params, status ("ok", "diverged" or
"failed"), returncode, final_val_loss, best_val_loss, test_loss, test_bpb, last_iter, step_ms,
wall_s, executor, provenance (git_commit, git_dirty, torch, device, hostname, python) and config
(the full resolved training config). Records are appended under an exclusive file lock, so runs
that finish at the same time, in any number of processes or Slurm jobs, never lose or
interleave a line; a torn last line (files.py) is dropped, never merged with the next record.
"""

import os
import platform
import socket
import statistics
import subprocess

from configurator import UserError
from files import append_jsonl, read_jsonl
from machine import cpu_model
from training import REPO_ROOT, TrainingDiverged
from training.metrics import read_metrics

RESULTS_FILE = "results.jsonl"
FINAL_STATUSES = ("ok", "diverged")  # a run with one of these is not run again; "failed" is


def status_of(returncode):
    """The run status for a trainer's exit status (train.py: 0 done, TrainingDiverged.status)."""
    if returncode == 0:
        return "ok"
    return "diverged" if returncode == TrainingDiverged.status else "failed"


def read_records(path, keys=("run_id", "status")):
    """The records of a results.jsonl, each checked for keys: another JSON-lines file (a run's
    metrics.jsonl given in its place) is a UserError naming it, not a KeyError later."""
    records = read_jsonl(path)
    for record in records:
        missing = [k for k in keys if k not in record]
        if missing:
            raise UserError(f"{path} is not a sweep's {RESULTS_FILE}: a record has no {missing[0]} (a run's "
                            f"metrics.jsonl?)")
    return records


def read_results(sweep_dir):
    """run id -> the last record written for it."""
    return {r["run_id"]: r for r in read_records(os.path.join(sweep_dir, RESULTS_FILE))}


def append_record(path, record):
    """Append a results record (files.append_jsonl), on disk before the lock is released."""
    append_jsonl(path, record, sync=True)


def git_state(repo=REPO_ROOT):
    """(commit, dirty) of the code a run uses; (None, None) outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain")
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance(device, slurm_job_id=None):
    """Where and with what a run was made; device is a description such as 'cpu (2 threads)'.
    Runs made by Slurm jobs also name their job."""
    import torch
    commit, dirty = git_state()
    made = {"git_commit": commit, "git_dirty": dirty, "torch": torch.__version__, "device": device,
            "hostname": socket.gethostname(), "python": platform.python_version(), "cpu": cpu_model()}
    if slurm_job_id is not None:
        made["slurm_job_id"] = slurm_job_id
    return made


def summarize(run, run_dir, returncode, wall_s, executor, provenance, config):
    """The results record of a finished run attempt, from its metrics.jsonl."""
    status = status_of(returncode)
    metrics = read_metrics(run_dir)
    if status == "failed" and metrics and metrics[-1].get("type") == "diverged":
        status = "diverged"  # torchrun (--nproc > 1) returns 1 for a worker's exit 3
    evals = [m for m in metrics if m.get("type") == "eval"]
    steps = [m["step_ms"] for m in metrics if m.get("type") == "train" and "step_ms" in m]
    tests = [m for m in metrics if m.get("type") == "test"]
    return {
        **run.describe(), "status": status, "returncode": returncode,
        "final_val_loss": evals[-1]["val_loss"] if evals and status == "ok" else None,
        "best_val_loss": min(e["val_loss"] for e in evals) if evals else None,
        "test_loss": tests[-1].get("test_loss") if tests else None,
        "test_bpb": tests[-1].get("test_bpb") if tests else None,
        "last_iter": evals[-1]["iter"] if evals else 0,
        "step_ms": statistics.median(steps) if steps else None, "wall_s": round(wall_s, 1),
        "executor": executor, "provenance": provenance, "config": config,
    }

