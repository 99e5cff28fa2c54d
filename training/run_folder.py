"""A run's folder (out_dir): which files make a run, its one trainer at a time, replacing a run only
when asked, and the configuration a resumed run continues with. Nothing a user made is silently
replaced or mislabelled."""

import contextlib
import dataclasses
import os
import re

import torch.distributed as dist

from configurator import ConfigError, given_keys
from files import FileLock, LockHeld, ensure_writable_folder
from training import TrainingError
from training.checkpoint import load_resumable_checkpoint
from training.metrics import METRICS_FILE

RUN_FILES = ("ckpt.pt", "best.pt", METRICS_FILE)  # a folder with any of these holds a run
RUN_LOCK = "train.lock"  # held (files.FileLock) by the one process writing a run folder: its trainer, a fold or an import
TEMPORARY_FILE = re.compile(r"\.tmp\.(\d+)$")  # files.write_atomically's, ending in the writer's PID


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def stale_temporary_files(out_dir):
    """Temporary files whose writer no longer runs (it died in the middle of a write)."""
    if not os.path.isdir(out_dir):
        return []
    stale = []
    for name in sorted(os.listdir(out_dir)):
        match = TEMPORARY_FILE.search(name)
        if match and not process_alive(int(match.group(1))):
            stale.append(os.path.join(out_dir, name))
    return stale


def run_files_in(folder):
    """The RUN_FILES that folder holds: any at all means it holds a run, which every command that
    writes a checkpoint or a model there must not replace unasked."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(folder, name))]


def refuse_a_held_folder(folder, overwrite, instead, replace="replace that run with --overwrite=True", model_files=()):
    """The one rule of every command that writes a run or a model into a folder (train, fold,
    import, export): a folder that holds a run (RUN_FILES), or one of model_files (an earlier
    export's), is refused with ConfigError unless overwrite. instead and replace say what to do
    rather ("import into another --out_dir"). Returns the run files held, which the command replaces."""
    held = run_files_in(folder)
    models = [name for name in model_files if os.path.exists(os.path.join(folder, name))]
    if (held or models) and not overwrite:
        what = f"a run ({', '.join(held)})" if held else f"a model ({', '.join(models)})"
        raise ConfigError(f"{folder} already holds {what}: {instead}, or {replace}")
    return held


def check_out_dir(cfg):
    """Refuse a fresh run into a folder that holds a run, unless cfg.overwrite; make sure the folder
    exists and is writable. Returns the run files the fresh run replaces: clear_out_dir deletes
    them once every other check has passed, so a run that cannot start deletes nothing."""
    if cfg.eval_only:
        return []  # evaluation writes nothing: the folder is only read, if it exists at all
    held = [] if cfg.init_from != "scratch" else refuse_a_held_folder(  # a resume continues the run there
        cfg.out_dir, cfg.overwrite, "continue it with --init_from=resume, choose another --out_dir",
        replace="replace it with --overwrite=True")
    ensure_writable_folder(cfg.out_dir, "--out_dir")
    return held


def clear_out_dir(out_dir, replaced, rt, say):
    """Delete the replaced run's files (and nothing else) and stale temporary files: rank 0 does,
    just before the run writes its first record; under DDP the other ranks wait until it has."""
    if rt.master:
        doomed = stale_temporary_files(out_dir)
        if replaced:
            doomed += [os.path.join(out_dir, name) for name in replaced]
            say(f"overwrite: deleting the previous run's {', '.join(replaced)} in {out_dir}")
        for path in doomed:
            os.remove(path)
    if rt.ddp:
        dist.barrier()


def take_run_lock(owner, out_dir):
    """Hold the folder's RUN_LOCK while writing there: a second writer is refused before it changes anything."""
    try:
        owner.acquire()
    except LockHeld as e:
        raise TrainingError(f"another process (a trainer, a fold or an import) is writing in {out_dir} "
                            f"(pid {e.holder}): wait for it to end, "
                            f"or stop it first (two writers would mix one run's files)") from None


@contextlib.contextmanager
def writing_model_into(out_dir, overwrite, elsewhere):
    """For a command that writes a model into a run folder (fold, import): refuse a folder that holds
    a run unless overwrite, and hold its RUN_LOCK while writing, so that no trainer runs there
    meanwhile. elsewhere says what to do instead ("import into another --out_dir"). Yields the run
    files the new model replaces; a folder made here and left empty by a failure is removed."""
    held = refuse_a_held_folder(out_dir, overwrite, elsewhere)
    made = not os.path.isdir(out_dir)
    ensure_writable_folder(out_dir, "--out_dir")
    owner = FileLock(os.path.join(out_dir, RUN_LOCK))
    try:
        take_run_lock(owner, out_dir)
        yield held
    except BaseException:
        owner.release()
        if made:
            remove_if_unused(out_dir)
        raise
    owner.release()


def remove_if_unused(folder):
    """Delete a folder this start made when it holds nothing but the trainer's lock file."""
    try:
        names = os.listdir(folder)
        if set(names) <= {RUN_LOCK}:
            for name in names:
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
    except OSError:
        pass  # gone already, or someone else's files appeared: leave it


SESSION_KEYS = {"out_dir", "init_from", "overwrite", "eval_only", "device", "dtype", "compile",
                "peak_flops", "wandb_log", "wandb_project", "wandb_run_name"}
# Keys that define the model, the centering or the data stream besides the model's own arguments.
FIXED_ON_RESUME = {"seed", "vocab_multiple"}
FIXED_WHEN_TRAINING_ON = {"eval_windows"}  # best.pt is chosen on one validation set (an evaluation alone may take others)


def resume_config(cfg, ckpt, model_config_cls, path):
    """The configuration a resumed run trains with: the checkpoint's, with the keys the user gave
    applied. A given key that defines the model or centering (the model's arguments), the data
    stream (seed, vocab_multiple) or, where training goes on, the validation set (eval_windows)
    must equal the saved value: else one ConfigError names them all.
    Returns (config, {key: (saved, new)} for the applied changes)."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    saved = {k: v for k, v in ckpt.get("config", {}).items() if k in fields}
    saved.update({k: v for k, v in ckpt["model_args"].items() if k in fields})
    given = given_keys(cfg)
    given = fields if given is None else set(given) | SESSION_KEYS
    fixed = FIXED_ON_RESUME | {f.name for f in dataclasses.fields(model_config_cls)} | (
        set() if cfg.eval_only else FIXED_WHEN_TRAINING_ON)
    differs = sorted(k for k in given & set(saved) if saved[k] != getattr(cfg, k))
    conflicts = [f"{k} is {saved[k]!r} in the checkpoint, {getattr(cfg, k)!r} now" for k in differs if k in fixed]
    if conflicts:
        raise ConfigError(f"cannot resume {path} as a different model, data stream or validation set: {'; '.join(conflicts)} "
                          f"(drop these overrides, or start a new run in another --out_dir)")
    resumed = dataclasses.replace(cfg, **{k: v for k, v in saved.items() if k not in given})
    if hasattr(resumed, "validate"):
        resumed.validate()
    changes = {k: (saved[k], getattr(cfg, k)) for k in differs if k not in ("init_from", "overwrite", "eval_only")}
    return resumed, changes


def open_run(cfg, model_config_cls, model_cls):
    """What a start continues, before anything is built: (cfg, ckpt, changes). A fresh run: (cfg,
    None, {}). A resumed run, or evaluation of the run in out_dir: its ckpt.pt, and the config it
    continues with (resume_config) marked init_from='resume', so the model starts from ckpt."""
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    if cfg.overwrite and cfg.init_from == "resume" and not cfg.eval_only:
        raise ConfigError("--overwrite=True would delete the run that --init_from=resume continues: give one of them")
    # evaluation only reads: in a folder that holds a run it evaluates the run's checkpoint
    evaluates_run = cfg.eval_only and (cfg.init_from == "resume" or bool(run_files_in(cfg.out_dir)))
    if evaluates_run and not os.path.exists(ckpt_path):
        raise TrainingError(f"no checkpoint at {ckpt_path} to evaluate (the run stopped before its first one)")
    if not (cfg.init_from == "resume" or evaluates_run):
        return cfg, None, {}
    ckpt = load_resumable_checkpoint(ckpt_path, model_cls)
    cfg, changes = resume_config(cfg, ckpt, model_config_cls, ckpt_path)
    return dataclasses.replace(cfg, init_from="resume"), ckpt, changes
