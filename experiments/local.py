"""
The local executor: a sweep's runs as subprocesses of this machine, `jobs` of them at a time.

- CPU: the cores this process may use are shared out, each training process getting
  cores // (jobs * nproc) threads, and no more than OMP_NUM_THREADS when the sweep's environment
  sets it (the child's OMP_NUM_THREADS, which torch takes its thread count from).
- GPUs: each running job gets nproc GPUs of its own through CUDA_VISIBLE_DEVICES, so an 8-GPU node
  runs 8 single-GPU runs at once (jobs=8), or 4 two-GPU torchrun runs (jobs=4, nproc=2).
"""

import os
import signal
import subprocess
import time

from tqdm import tqdm

from configurator import ConfigError

POLL_S = 0.1
# a run still starting (importing torch) after this long has not yet restored its SIGINT handler,
# which a sweep in the background passes on ignored: it then gets SIGTERM, which it cannot ignore
SIGINT_GRACE_S = 3
STOP_GRACE_S = 30  # then SIGKILL (checkpoints are written atomically: the run stays resumable)


def visible_gpus():
    """The GPUs this process may use, named as CUDA_VISIBLE_DEVICES names them for a child."""
    import torch
    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = [x.strip() for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def check_gpu_ids(gpus):
    """--gpus as the user gave it: only on a machine where torch sees a GPU (a run would otherwise
    train on the CPU and be recorded as trained on a GPU)."""
    import torch
    if gpus and not torch.cuda.is_available():
        raise ConfigError(f"--gpus={','.join(gpus)}: torch sees no GPU on this machine (leave --gpus out to train on the CPU)")
    visible = visible_gpus() if gpus else []
    unseen = [g for g in gpus or () if g not in visible]
    if unseen:  # a run given only such ids sees no GPU and trains on the CPU
        raise ConfigError(f"--gpus={','.join(gpus)}: no GPU {','.join(unseen)} here (this process sees "
                          f"{','.join(visible)})")


def available_cpus():
    return len(os.sched_getaffinity(0))


def describe_device(config_device, threads, gpus):
    """What a run trains on, for its record: its device and the threads or GPUs it was given.
    device=auto without GPUs of its own takes Apple's mps where there is one, else the CPU."""
    if gpus and config_device != "cpu":
        return f"cuda (CUDA_VISIBLE_DEVICES={','.join(gpus)})"
    if config_device == "auto":
        import torch
        config_device = "mps" if torch.backends.mps.is_available() else "cpu"
    return f"{config_device} ({threads} thread{'s' if threads != 1 else ''})"


def child_environment(threads, gpus):
    """The environment a run is given: its share of CPU threads (torch takes its thread count
    from OMP_NUM_THREADS) and, on a GPU machine, its own GPUs."""
    env = {"OMP_NUM_THREADS": str(threads)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


class LocalExecutor:
    name = "local"

    def __init__(self, jobs=1, nproc=1, gpus=None, cpus=None):
        """gpus: the GPU ids to hand out (default: every visible GPU; [] for none); cpus: the
        number of cores to share (default: those this process may run on)."""
        self.jobs, self.nproc = jobs, nproc
        self.gpus = [str(g) for g in gpus] if gpus is not None else visible_gpus()
        self.cpus = cpus or available_cpus()
        if self.gpus and jobs * nproc > len(self.gpus):
            raise ConfigError(f"--jobs={jobs} runs of --nproc={nproc} processes need {jobs * nproc} GPUs; "
                              f"{len(self.gpus)} available ({','.join(self.gpus)})")
        self.threads = max(1, self.cpus // (jobs * nproc))
        cap = os.environ.get("OMP_NUM_THREADS", "")
        if cap.isdigit() and int(cap) > 0:
            self.threads = min(self.threads, int(cap))

    def describe(self):
        share = f"GPUs {','.join(self.gpus)}, " if self.gpus else ""
        return f"local: {self.jobs} at a time, {share}{self.threads} CPU threads per process"

    def slots(self):
        """What each of the jobs concurrent runs is given: its GPUs (None without GPUs)."""
        if not self.gpus:
            return [None] * self.jobs
        return [self.gpus[i * self.nproc:(i + 1) * self.nproc] for i in range(self.jobs)]

    def execute(self, sweep, runs, wait=True, log=print):
        """Do the runs to their end; returns the ids still pending (none: a local sweep waits)."""
        pending, running, free, shown = list(runs), [], self.slots(), None
        with tqdm(total=len(pending), unit="run", dynamic_ncols=True) as bar:
            try:
                while pending or running:
                    while pending and free:
                        slot, run = free.pop(0), pending.pop(0)
                        device = describe_device(sweep.config_of(run)["device"], self.threads, slot)
                        running.append((sweep.start(run, child_environment(self.threads, slot), device), slot))
                    description = ", ".join(a.run.run_id for a, _ in running)
                    if description != shown:  # redrawn only when it changes: logs stay short
                        bar.set_description(shown := description)
                    finished = [(a, s) for a, s in running if a.process.poll() is not None]
                    if not finished:
                        time.sleep(POLL_S)
                    for attempt, slot in finished:
                        running.remove((attempt, slot))
                        free.append(slot)
                        record = sweep.finish(attempt, attempt.process.returncode)
                        if record["status"] != "ok":
                            bar.write(f"{record['run_id']}: {record['status']} (exit {record['returncode']}); "
                                      f"see {os.path.join(sweep.run_dir(attempt.run), 'train.log')}")
                        bar.update(1)
            except BaseException:  # Ctrl-C, or an error of the sweep itself: no run is left behind
                stop([a for a, _ in running])
                raise
        return set()


def stop(attempts):
    """Interrupt every running training (each in its own process group, as Ctrl-C would), then wait;
    one still running after SIGINT_GRACE_S gets SIGTERM, after STOP_GRACE_S more SIGKILL. A second
    Ctrl-C or kill meanwhile is ignored: it would leave the trainings running."""
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for attempt in attempts:
            signal_group(attempt.process, signal.SIGINT)
        for sig, grace in ((signal.SIGTERM, SIGINT_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            deadline = time.time() + grace
            for attempt in attempts:
                try:
                    attempt.process.wait(timeout=max(0.0, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    signal_group(attempt.process, sig)
        for attempt in attempts:
            attempt.process.wait()
            attempt.log_file.close()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def signal_group(process, sig):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # it ended meanwhile
        pass
