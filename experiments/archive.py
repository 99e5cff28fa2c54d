"""
A sweep's finished runs without their checkpoints, so that its results can be committed (a
results/ folder) and a fresh clone can report on them, plot them, or continue the sweep.

    archive_sweep("out/experiments/S", "results/S")   # after (or during) the sweep: commit results/S
    archive_sweep("results/S", "out/experiments/S")   # on a fresh clone: the sweep skips these runs

An archived run keeps its results record, run.json, train.log and metrics.jsonl (gzipped:
training.metrics.read_metrics reads either); checkpoints (ckpt.pt, best.pt) stay behind. Only
runs with a final status are copied, so a run still under way is never half-archived, and the
destination's lock is taken, so no sweep is writing there meanwhile. A run's record goes in last:
an archive that was interrupted is simply run again.
"""

import fnmatch
import gzip
import json
import os
import shutil
from types import SimpleNamespace

from configurator import ConfigError, UserError
from experiments.records import FINAL_STATUSES, RESULTS_FILE, append_record, read_results
from experiments.slurm import slurm_runs_under_way
from experiments.sweep import SweepLock, setting_differences
from files import ensure_writable_folder, lock_holder
from training.metrics import METRICS_FILE
from training.run_folder import RUN_LOCK

KEPT_FILES = ("run.json", "train.log")  # besides the metrics; never a checkpoint
CHECKPOINT = "ckpt.pt"  # train.py's resume checkpoint: a run folder with one holds work


def archive_sweep(src, dst, log=print, only=None):
    """Copy the finished runs of sweep folder src that dst does not hold yet into dst (only: the
    runs whose id matches one of these shell-style patterns; a pattern matching none is refused). Returns
    (number copied, number dst already held). A run dst holds with another record, or has
    started but not finished, is refused (UserError) before anything is copied."""
    if not os.path.isfile(os.path.join(src, RESULTS_FILE)):
        raise UserError(f"{src} is not a sweep folder (it has no {RESULTS_FILE})")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UserError("the source and the destination are the same folder")
    finished = {k: r for k, r in read_results(src).items() if r["status"] in FINAL_STATUSES}
    if only is not None:
        unmatched = [p for p in only if not any(fnmatch.fnmatchcase(k, p) for k in finished)]
        if not only or unmatched:
            raise ConfigError(f"--only: no finished run of {src} matches {', '.join(unmatched) or 'an empty list'}")
        finished = {k: r for k, r in finished.items() if any(fnmatch.fnmatchcase(k, p) for p in only)}
    ensure_writable_folder(dst, "destination")
    with SweepLock(dst):
        # a failed record there is no result (a sweep would run it again): the finished one replaces it
        held = {k: r for k, r in read_results(dst).items() if r["status"] in FINAL_STATUSES}
        for run_id, record in finished.items():
            if run_id in held and held[run_id] != record:
                raise UserError(f"{dst} holds {run_id} with another record: archive into a folder of its own")
            if run_id not in held and os.path.exists(os.path.join(dst, run_id, CHECKPOINT)):
                raise UserError(f"{dst} holds {run_id} started but not finished: finish or remove it first")
            trainer = None if run_id in held else lock_holder(os.path.join(dst, run_id, RUN_LOCK))
            if trainer is not None:  # a trainer there before its first checkpoint: its folder is not ours to replace
                raise UserError(f"{dst} holds {run_id} still training (pid {trainer}): let it end, or stop it, first")
        new = [k for k in finished if k not in held]
        mixed = other_settings_than_held(held, {k: finished[k] for k in new})
        if mixed:  # e.g. another width's sweep: every later sweep or report there would stop on it
            raise UserError(f"{dst} holds runs like {mixed[0]} trained with other settings ({mixed[1]}): "
                            f"archive into a folder of its own")
        queued = slurm_runs_under_way(dst, [SimpleNamespace(run_id=k) for k in new], held) if new else []
        if queued:  # its job would append a record after the archived one, which then loses
            raise UserError(f"{dst} has Slurm jobs queued or running for {', '.join(queued[:3])}"
                            f"{', ...' if len(queued) > 3 else ''}: collect them (--executor=slurm --wait) first")
        for run_id in new:
            # a folder without record or checkpoint there: an archive that was interrupted, or a
            # run that died before its first checkpoint (it would start over): replaced
            if os.path.isdir(os.path.join(dst, run_id)):
                shutil.rmtree(os.path.join(dst, run_id))
            copy_run(os.path.join(src, run_id), os.path.join(dst, run_id))
            append_record(os.path.join(dst, RESULTS_FILE), finished[run_id])  # last: the run counts as done
    log(f"{dst}: {len(new)} runs copied, {len(finished) - len(new)} already there")
    return len(new), len(finished) - len(new)


def other_settings_than_held(held, new):
    """(run id, differences) of the first run of new (records) whose config differs from that of a
    held run of its variant, mode, iterations and grid point (another seed) in more than the seed;
    None when each fits. The runs of one sweep folder share every other setting."""
    def group(record):
        return (record.get("variant"), record.get("mode"), record.get("iters"),
                json.dumps(record.get("params"), sort_keys=True))

    peers = {group(r): r["config"] for r in held.values() if isinstance(r.get("config"), dict)}
    for run_id, record in new.items():
        peer = peers.get(group(record))
        differ = peer and isinstance(record.get("config"), dict) and setting_differences(peer, record["config"],
                                                                                         also_free=("seed",))
        if differ:
            return run_id, differ
    return None


def copy_run(src_run, dst_run):
    """A run folder's kept files; a run whose folder is gone (its record alone survived) gets
    none."""
    if not os.path.isdir(src_run):
        return
    os.makedirs(dst_run, exist_ok=True)
    for name in KEPT_FILES:
        if os.path.isfile(os.path.join(src_run, name)):
            shutil.copy2(os.path.join(src_run, name), os.path.join(dst_run, name))
    metrics = os.path.join(src_run, METRICS_FILE)
    if os.path.isfile(metrics):
        with open(metrics, "rb") as f, gzip.open(os.path.join(dst_run, METRICS_FILE + ".gz"), "wb") as out:
            shutil.copyfileobj(f, out)
    elif os.path.isfile(metrics + ".gz"):
        shutil.copy2(metrics + ".gz", os.path.join(dst_run, METRICS_FILE + ".gz"))
