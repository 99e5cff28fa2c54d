"""
Doing the runs of a plan, with one executor or another, into one sweep folder:

    <out_root>/<name>/<run id>/   ckpt.pt, best.pt, metrics.jsonl, train.lock (train.py), train.log, run.json
    <out_root>/<name>/results.jsonl   one record per finished run (experiments.records)
    <out_root>/<name>/sweep.lock      held by the sweep command while it runs

Each run is a subprocess of train_advanced_centered.py (or of torchrun with nproc > 1), started
in the directory the sweep was started from. A run with a checkpoint resumes from it; any other
run starts fresh. Runs with a final record (ok or diverged) are not run again; failed ones are.
A run's trainer dies with the sweep command that started it, even one killed by SIGKILL (Linux);
where that cannot be arranged, a run whose trainer still holds its folder's lock (train.py's
RUN_LOCK) is not started again while it runs.
Executors: "local" (experiments.local: N runs at once on this machine) and "slurm"
(experiments.slurm: one Slurm job per run, through submitit). A sweep with the local executor
refuses to start while runs it would do are still queued or running as Slurm jobs of the folder.
"""

import ctypes
import dataclasses
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from configurator import ConfigError, UserError
from experiments.local import LocalExecutor
from experiments.plan import BASELINE_MODE, CONFIG_DIR, check_plan
from experiments.records import FINAL_STATUSES, RESULTS_FILE, append_record, provenance, read_results, summarize
from experiments.slurm import STATE_FILE, SlurmExecutor, slurm_runs_under_way
from files import FileLock, LockHeld, ensure_writable_folder, lock_holder, write_atomically
from training import REPO_ROOT
from training.run_folder import RUN_LOCK, SESSION_KEYS

TRAINER = os.path.join(REPO_ROOT, "train_advanced_centered.py")
LOCK_FILE = "sweep.lock"


def libc_prctl():
    """Linux's prctl, or None (another system, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = libc_prctl()  # looked up here: the child between fork and exec only calls it
PR_SET_PDEATHSIG = 1


def dies_with_this_process():
    """A preexec_fn that has the child sent SIGTERM when this process ends, however it ends: a sweep
    killed with SIGKILL cannot stop its runs itself, and its trainers would go on (in their own
    session) while a rerun started them again. The signal follows the thread that starts the
    child: the sweep's main thread. It also keeps a niced sweep's runs niced (keep_niceness).
    Where prctl does not exist (not Linux): None, and the run folder's lock still keeps a rerun
    from starting a second trainer beside a live one."""
    if PRCTL is None:
        return None
    parent = os.getpid()

    def arm():
        keep_niceness()
        PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM))  # torchrun, on SIGTERM, stops its workers too
        if os.getppid() != parent:  # the sweep died before that: nothing would signal this child
            os._exit(1)

    return arm


def keep_niceness():
    """In a child just put in a session of its own: give that session's autogroup the process's
    nice value. Linux schedules autogroups (one per session) fairly against each other, so a run of
    `nice -n 19 python scripts/...` would otherwise take a whole core's share from the user's
    shell. Best effort: nothing where there are no autogroups."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0:
        return
    for _ in range(15):  # without CAP_SYS_ADMIN, one autogroup nice change per 0.1 s system-wide (EAGAIN)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
            return
        except OSError as e:
            if e.errno != errno.EAGAIN:
                return
            time.sleep(0.1)


@dataclass(frozen=True)
class Attempt:
    """A training subprocess under way."""
    run: object
    process: subprocess.Popen
    log_file: object
    started: float
    provenance: dict  # taken when it started: the code it runs is the code of that moment


@dataclass(frozen=True)
class Sweep:
    """What every run of a sweep shares; picklable, so a Slurm job can do a run from it."""
    sweep_dir: str
    executor: str
    overrides: tuple = ()
    nproc: int = 1
    config_dir: str = CONFIG_DIR
    cwd: str = "."  # where the sweep was started: relative paths in overrides are resolved there
    configs: tuple = ()  # (run id, resolved training config) pairs
    trainer: str = TRAINER  # a script with train_advanced_centered.py's command line

    def run_dir(self, run):
        return os.path.join(self.sweep_dir, run.run_id)

    def for_run(self, run):
        """The same sweep with the config of this run only: what a Slurm job carries."""
        return dataclasses.replace(self, configs=((run.run_id, dict(self.configs)[run.run_id]),))

    def config_of(self, run):
        """The run's resolved training config (a dict), its folder included."""
        return dict(dict(self.configs)[run.run_id], out_dir=self.run_dir(run))

    def command(self, run):
        """The training command of a run: resumed from its checkpoint when it has one, else fresh."""
        run_dir = self.run_dir(run)
        launcher = [sys.executable]
        if self.nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}"]
        args = [self.trainer, *run.train_args(self.overrides, self.config_dir), f"--out_dir={run_dir}"]
        if os.path.exists(os.path.join(run_dir, "ckpt.pt")):
            args.append("--init_from=resume")
        else:  # the trainer refuses a fresh run into a folder that holds a run unless told to replace it
            args.append("--overwrite=True")  # a run that died before its first checkpoint starts over
        return launcher + args

    def start(self, run, env_changes, device, new_session=True, job_id=None):
        """Start a run's training; its output goes to train.log, after the command that made it.
        device describes what it trains on; job_id is the Slurm job's, in a Slurm job."""
        made = provenance(device, job_id)
        run_dir = self.run_dir(run)
        os.makedirs(run_dir, exist_ok=True)
        started = json.dumps({**run.describe(), "config": self.config_of(run)}, indent=1).encode("utf-8")
        write_atomically(os.path.join(run_dir, "run.json"), lambda f: f.write(started))
        cmd = self.command(run)
        log_file = open(os.path.join(run_dir, "train.log"), "a", encoding="utf-8")
        shown_env = " ".join(f"{k}={v}" for k, v in sorted(env_changes.items()))
        log_file.write(f"$ {shown_env} {shlex.join(cmd)}\n")
        log_file.flush()
        # own process group (locally): Ctrl-C reaches the sweep, which then stops its runs itself
        # with SIGINT (the trainer listens to it even where it was started with SIGINT ignored)
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.cwd,
                                   env={**os.environ, **env_changes}, start_new_session=new_session,
                                   preexec_fn=dies_with_this_process())
        return Attempt(run, process, log_file, time.time(), made)

    def finish(self, attempt, returncode):
        """Record a finished attempt in results.jsonl; returns the record."""
        attempt.log_file.close()
        run = attempt.run
        record = summarize(run, self.run_dir(run), returncode, time.time() - attempt.started, self.executor,
                           attempt.provenance, self.config_of(run))
        append_record(os.path.join(self.sweep_dir, RESULTS_FILE), record)
        return record


class SweepLock(FileLock):
    """sweep.lock, held (files.FileLock) by the one sweep command working on a folder."""

    def __init__(self, sweep_dir):
        super().__init__(os.path.join(sweep_dir, LOCK_FILE))

    def acquire(self):
        try:
            return super().acquire()
        except LockHeld as e:
            raise UserError(f"another sweep is running in {os.path.dirname(self.path)} (pid {e.holder}); "
                            f"wait for it to end, or stop it first") from None


def other_settings(sweep, run, done):
    """How the run the folder already holds under this run's id (finished: its record in done;
    started: its run.json) was trained with other settings than planned now, in a few words
    ("n_embd=16, now 32"), or None. Reusing or resuming such a run would mislabel it; the
    session keys (device, compile, ...) may differ."""
    old = done.get(run.run_id, {}).get("config")
    if old is None:
        started = os.path.join(sweep.run_dir(run), "run.json")
        if os.path.isfile(started):
            try:
                with open(started, encoding="utf-8") as f:
                    old = json.load(f).get("config")
            except (OSError, ValueError, AttributeError) as e:
                raise UserError(f"{started} cannot be read ({e}): remove that run's folder to train it anew") from None
    if not old:
        return None
    return setting_differences(old, sweep.config_of(run))


def setting_differences(old, new, also_free=()):
    """The training settings (not the session keys, nor also_free) in which two resolved configs
    differ, in a few words ("n_embd=16, now 32"), or None."""
    differ = sorted(k for k in set(old) | set(new)
                    if k not in SESSION_KEYS and k not in also_free and old.get(k) != new.get(k))
    if not differ:
        return None
    return (", ".join(f"{k}={old.get(k)!r}, now {new.get(k)!r}" for k in differ[:4])
            + (", ..." if len(differ) > 4 else ""))


def settings_conflict(sweep, runs, done):
    """A one-line description of the first run the folder already holds with other training
    settings than planned now (other_settings), or None."""
    for run in runs:
        differ = other_settings(sweep, run, done)
        if differ:
            return (f"{sweep.sweep_dir} holds {run.run_id} trained with other settings ({differ}): "
                    f"give --name=NEW for a sweep folder of its own")
    return None


def refuse_runs_on_slurm(sweep_dir, todo, done):
    """Raise UserError when a run to do here was submitted to Slurm (--executor=slurm without
    --wait) and its job may still be queued or running: it would be trained twice at once."""
    queued = slurm_runs_under_way(sweep_dir, todo, done)
    if queued:
        raise UserError(f"{len(queued)} runs of {sweep_dir} are queued or running as Slurm jobs "
                        f"({', '.join(queued[:3])}{', ...' if len(queued) > 3 else ''}; see {STATE_FILE}): "
                        f"collect them with --executor=slurm (add --wait to wait for them), or cancel them "
                        f"(scancel) before running them here")


def trainers_alive(sweep, runs):
    """{run id: its trainer ("<pid> on <host>")} for the runs whose folder's lock a trainer still
    holds: one an earlier sweep started and could not stop (killed where its trainers do not die
    with it). Starting such a run again would put two trainers in one folder."""
    alive = {}
    for run in runs:
        holder = lock_holder(os.path.join(sweep.run_dir(run), RUN_LOCK))
        if holder is not None:
            alive[run.run_id] = holder
    return alive


def make_executor(executor, jobs=1, nproc=1, gpus=None, cpus=None, slurm=None):
    if executor == "local":
        return LocalExecutor(jobs=jobs, nproc=nproc, gpus=gpus, cpus=cpus)
    if executor == "slurm":
        return SlurmExecutor(slurm, nproc=nproc)
    raise ConfigError(f"unknown executor '{executor}'; valid executors: local, slurm")


def check_sweep_folder(sweep_dir):
    """Refuse (ConfigError) a sweep folder, or its out_root, that is a file: checked in a dry run
    too, where nothing is made yet."""
    for folder in (os.path.dirname(sweep_dir), sweep_dir):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ConfigError(f"--out_root: {folder} is a file, not a folder: give the folder of the sweep folders")


def run_sweep(name, runs, out_root, *, executor="local", jobs=1, nproc=1, overrides=(), slurm=None,
              wait=True, log=print, config_dir=CONFIG_DIR, gpus=None, cpus=None, trainer=TRAINER, execute=True):
    """Do every run of the list that has no final record yet in <out_root>/<name>; returns the
    records of the given runs that have one, by run id (all of them, unless a Slurm sweep was
    started with wait=False and some are still queued or running). The plan is checked first:
    a ConfigError, before anything runs. Raises UserError when another sweep holds the folder, and
    (any executor but Slurm's) when runs to do are still queued or running as its Slurm jobs.
    gpus, cpus: what the local executor shares out (default: what this machine has).
    execute=False runs nothing: the records the folder holds for the runs, after the same checks
    (a report on a sweep still under way, or on an archived one)."""
    if nproc < 1 or jobs < 1:
        raise ConfigError("--jobs and --nproc must be at least 1")
    out_root = os.path.abspath(out_root)
    sweep_dir = os.path.join(out_root, name)
    check_sweep_folder(sweep_dir)
    variants = sorted({r.variant for r in runs})
    modes = sorted({r.mode for r in runs} - {BASELINE_MODE})
    configs = check_plan(runs, variants, modes, tuple(overrides), config_dir, starts=execute,
                         device=executor != "slurm")
    runner = make_executor(executor, jobs=jobs, nproc=nproc, gpus=gpus, cpus=cpus, slurm=slurm)
    sweep = Sweep(sweep_dir, runner.name, tuple(overrides), nproc, os.path.abspath(config_dir), os.getcwd(),
                  tuple(configs.items()), trainer)
    if not execute:
        done = read_results(sweep_dir)
        conflict = settings_conflict(sweep, runs, done)
        if conflict:
            raise ConfigError(conflict)
        return {r.run_id: done[r.run_id] for r in runs if r.run_id in done}
    ensure_writable_folder(sweep_dir, "--out_root")
    with SweepLock(sweep_dir):
        done = read_results(sweep_dir)
        conflict = settings_conflict(sweep, runs, done)
        if conflict:
            raise ConfigError(conflict)
        todo = [r for r in runs if done.get(r.run_id, {}).get("status") not in FINAL_STATUSES]
        alive = {}
        if runner.name != "slurm":  # the Slurm executor itself never submits a run twice
            refuse_runs_on_slurm(sweep_dir, todo, done)
            alive = trainers_alive(sweep, todo)
        if alive:
            log(f"{len(alive)} runs not started: their trainers are still running ("
                + "; ".join(f"{k}: pid {v}" for k, v in alive.items())
                + "); run the same command again once they have ended, to collect them")
            todo = [r for r in todo if r.run_id not in alive]
        log(f"sweep {name}: {len(runs)} runs, {len(runs) - len(todo) - len(alive)} already done, {len(todo)} to do "
            f"({runner.describe()})")
        pending = runner.execute(sweep, todo, wait=wait, log=log) | set(alive)
        done = read_results(sweep_dir)
    return {r.run_id: done[r.run_id] for r in runs if r.run_id in done and r.run_id not in pending}
