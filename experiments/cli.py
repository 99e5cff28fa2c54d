"""
What the experiment scripts' command lines share: the sweep options (add_sweep_arguments), guarded
(errors and interrupts as one line and an exit status) and print_plan. The style itself is
configurator.CommandLine: argparse, every option written --key=value
and given a help string (--help lists them), a yes/no option as --key=True or --key=False (the
configurator's boolean words) or --key alone for True; training keys a script does not define
itself go through to the trainer as --key=value overrides (and config files such as
config/gpu.py as overlays after the variant's config), checked by the configurator. A mistake
is one line `error: ...` on stderr and exit status 2 (configurator.fail), never a usage dump or
a traceback; other problems the user can fix exit with their UserError's status.
"""

import os
import signal
import sys

from configurator import ConfigError, UserError, at_least, boolean, comma_list, fail
from experiments.local import check_gpu_ids
from files import check_folder_can_be_made, write_probe
from experiments.plan import CONFIG_DIR
from experiments.records import read_results
from experiments.sweep import Sweep, check_sweep_folder, make_executor, other_settings
from training import REPO_ROOT

DEFAULT_OUT_ROOT = os.path.join(REPO_ROOT, "out", "experiments")


def add_sweep_arguments(parser):
    """The options of every script that runs a sweep: where, and with which executor."""
    parser.add_argument("--out_root", default=DEFAULT_OUT_ROOT,
                        help="folder of the sweep folders (a relative path is taken from the current directory)")
    parser.add_argument("--config_dir", default=CONFIG_DIR, help="folder of the variant config files")
    parser.add_argument("--dry_run", type=boolean, default=False, metavar="True|False",
                        help="True (or --dry_run alone): list the runs and their status, and exit")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local",
                        help="local: this machine; slurm: one Slurm job per run (needs submitit)")
    parser.add_argument("--nproc", type=at_least(1), default=1, help="processes per run (torchrun; one GPU each, gloo on CPU)")
    local = parser.add_argument_group("local executor")
    local.add_argument("--jobs", type=at_least(1), default=1,
                       help="runs at once; each gets cores/jobs CPU threads, or GPUs of its own")
    local.add_argument("--gpus", type=comma_list(str, empty_ok=True, unique=True), default=None,
                       help="GPU ids to share out (default: every visible GPU; --gpus= for none: runs then share them)")
    local.add_argument("--cpus", type=at_least(1), default=None, help="cores to share out (default: all this process may use)")
    slurm = parser.add_argument_group("slurm executor")
    slurm.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    slurm.add_argument("--time_min", type=at_least(1), default=60,
                       help="time limit of a job in minutes; a run that needs more is requeued and resumes")
    slurm.add_argument("--gpus_per_run", type=at_least(0), default=0, help="GPUs of each Slurm job")
    slurm.add_argument("--cpus_per_run", type=at_least(1), default=2, help="CPU cores of each Slurm job")
    slurm.add_argument("--wait", type=boolean, default=False, metavar="True|False",
                       help="True (or --wait alone): wait until every job has ended "
                            "(default: submit, then re-run the command to collect)")


IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def check_image_path(path, flag):
    """A figure's file, checked before the work that draws it: a ConfigError naming the flag for
    another format, a folder, or a folder that is missing or not writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if not path.lower().endswith(IMAGE_SUFFIXES):
        raise ConfigError(f"{flag}={path}: give a .png, .pdf or .svg file")
    if os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a folder: give a file name in it")
    try:
        write_probe(folder)
    except OSError:  # missing, or read-only
        raise ConfigError(f"{flag}={path}: {folder} is not a writable folder") from None


def sweep_options(args, trains=True):
    """run_sweep's keyword arguments from the options of add_sweep_arguments. trains: False where
    nothing will train (a report read back on a machine that need not have the runs' GPUs)."""
    if trains and args.gpus and args.executor == "local":  # Slurm gives each job its GPUs (--gpus_per_run)
        check_gpu_ids(args.gpus)
    slurm = {"partition": args.partition, "time_min": args.time_min, "gpus_per_run": args.gpus_per_run,
             "cpus_per_run": args.cpus_per_run}
    if trains:  # what the executor refuses (GPUs too few, no sbatch), refused here: a dry run too
        make_executor(args.executor, jobs=args.jobs, nproc=args.nproc, gpus=args.gpus, cpus=args.cpus, slurm=slurm)
    return {"executor": args.executor, "jobs": args.jobs, "nproc": args.nproc, "gpus": args.gpus,
            "cpus": args.cpus, "config_dir": args.config_dir, "slurm": slurm,
            "wait": args.wait or args.executor == "local"}


def print_plan(runs, sweep_dir, configs):
    """The dry run: each run and its status in the folder ("to do", "ok", ...), or "other settings"
    for a run the folder holds trained otherwise (the sweep would refuse it). configs: the
    resolved training configs of the runs (experiments.plan.check_plan)."""
    check_sweep_folder(sweep_dir)
    check_folder_can_be_made(os.path.dirname(sweep_dir), "--out_root")  # as the sweep would make it
    results = read_results(sweep_dir)
    sweep = Sweep(sweep_dir, "dry run", configs=tuple(configs.items()))
    conflicts = 0
    for run in runs:
        differ = other_settings(sweep, run, results)
        conflicts += differ is not None
        status = f"other settings ({differ})" if differ else results.get(run.run_id, {}).get("status", "to do")
        print(f"{run.run_id:55s} {status}")
    print(f"{len(runs)} runs in {sweep_dir}")
    if conflicts:
        print(f"{conflicts} of them the folder holds trained with other settings: the sweep would refuse "
              f"to start; give --name=NEW for a sweep folder of its own")


def report(records, runs, sweep_dir):
    """Print how the sweep ended; returns the exit status: 0 when every run finished ok (or is
    still queued or running: a Slurm job, or a trainer an earlier sweep left running), 1 when
    some did not, naming them."""
    waiting = [r.run_id for r in runs if r.run_id not in records]
    not_ok = [r for r in records.values() if r["status"] != "ok"]
    still = f", {len(waiting)} queued or running" if waiting else ""
    print(f"done: {len(records) - len(not_ok)} ok, {len(not_ok)} not ok{still}; "
          f"results in {os.path.join(sweep_dir, 'results.jsonl')}")
    if waiting:
        print(f"{len(waiting)} runs are queued or running (Slurm jobs, or trainers of an earlier sweep): run the "
              f"same command again (on Slurm, or with --wait) to collect their results")
    return name_not_ok(not_ok, len(runs), sweep_dir)


def name_not_ok(not_ok, total, sweep_dir):
    """The exit status of a sweep command whose runs have the records given as not_ok (of total
    runs): 0 when there are none, else 1, after one line on stderr naming them."""
    if not not_ok:
        return 0
    names = ", ".join(f"{r['run_id']} ({r['status']}, exit {r['returncode']})" for r in not_ok)
    print(f"error: {len(not_ok)} of {total} runs did not finish ok: {names}; "
          f"see their train.log in {sweep_dir}", file=sys.stderr)
    return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`), handled as Ctrl-C is."""


def interrupt(signum, frame):
    raise Terminated


def guarded(body):
    """Run body() -> exit status, turning a UserError into one line and its status, and Ctrl-C
    or `kill PID` (SIGTERM: how schedulers and scripts stop a job, and the only way to stop one
    started in the background, where Ctrl-C's SIGINT is ignored) into status 130 or 143 (the
    shell's 128 + signal number): a sweep interrupts its trainings first, so the same command
    continues later."""
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return body()
    except UserError as e:
        fail(str(e), e.status)
    except KeyboardInterrupt as e:
        print("\ninterrupted: finished runs are recorded; run the same command again to continue",
              file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
