"""
The Slurm executor: each run of a sweep is a Slurm job, through submitit; the runs submitted
together form one job array. A job trains its run as a subprocess (resuming from the run's
checkpoint when there is one) and appends the run's record to results.jsonl itself.

- A job that is preempted, requeued (scontrol requeue) or reaches its time limit (submitit
  requeues it shortly before) starts again and resumes from the last checkpoint: training resumes
  exactly, so the finished run is bit-identical to one that was never interrupted. An attempt
  whose training was killed by a signal leaves no record.
- <sweep>/slurm_jobs.json holds the job id of every run submitted. Running the sweep command again
  asks Slurm (squeue) for the state of those jobs: a run whose job is still queued or running is
  never submitted again; one whose job ended is collected from results.jsonl; a job that ended
  without a record (cancelled, killed) counts as failed, and the next sweep command tries it
  again. With wait, the command stays until every job has ended. A sweep with another executor
  on the same folder refuses to start while a run it would do is still queued or running here
  (slurm_runs_under_way), so no run is ever trained twice at once.
- submitit's files (job scripts, logs of the job's python process) are in <sweep>/slurm/.
"""

import getpass
import json
import os
import shutil
import subprocess
import time

from configurator import ConfigError, UserError
from experiments.records import RESULTS_FILE, append_record, provenance, read_results, summarize
from experiments.local import child_environment, describe_device
from files import write_atomically
from training import REPO_ROOT

try:
    import submitit
except ImportError:  # optional: only this executor needs it
    submitit = None

STATE_FILE = "slurm_jobs.json"
POLL_S = 5.0
# Job states after which a job never runs again; any other state (pending, running, requeued,
# preempted on its way back to the queue, ...) counts as still under way.
ENDED_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "REVOKED"}


class SlurmRun:
    """What a Slurm job calls: train one run to its end and record it. submitit calls checkpoint()
    when the job is about to be stopped (time limit, preemption) and requeues what it returns."""

    def __init__(self, sweep, run, threads):
        self.sweep, self.run, self.threads = sweep, run, threads

    def __call__(self):
        gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g] or None  # Slurm's choice
        device = describe_device(self.sweep.config_of(self.run)["device"], self.threads, gpus)
        attempt = self.sweep.start(self.run, child_environment(self.threads, None), device, new_session=False,
                                   job_id=submitit.JobEnvironment().job_id)
        returncode = attempt.process.wait()
        if returncode < 0:  # killed by a signal: the job is being stopped or requeued; resumed later
            attempt.log_file.close()
            return None
        return self.sweep.finish(attempt, returncode)

    def checkpoint(self, *args, **kwargs):
        # the training checkpoints itself; the requeued job resumes from its last checkpoint
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def job_states():
    """{job id: state} of this user's jobs that Slurm still knows (array tasks as '<array>_<task>')."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"cannot ask Slurm for the jobs' states: {e}") from None
    if out.returncode != 0:
        raise UserError(f"squeue failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def under_way(job_id, states):
    return job_id in states and states[job_id].split()[0] not in ENDED_STATES


def submitted_jobs(sweep_dir):
    """{run id: Slurm job id} of every run the sweep folder's Slurm executor submitted."""
    path = os.path.join(sweep_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def slurm_runs_under_way(sweep_dir, runs, done):
    """The ids of those of the runs whose Slurm job (slurm_jobs.json) may still be queued or
    running: what a sweep with another executor must not train a second time. done: the sweep's
    records; a job whose run has a record of that job has ended, and Slurm is not asked about it.
    Raises UserError when Slurm would have to be asked and cannot be."""
    jobs = submitted_jobs(sweep_dir)
    unknown = {r.run_id: jobs[r.run_id] for r in runs if r.run_id in jobs
               and done.get(r.run_id, {}).get("provenance", {}).get("slurm_job_id") != jobs[r.run_id]}
    if not unknown:
        return []
    try:
        states = job_states()
    except UserError as e:
        raise UserError(f"{os.path.join(sweep_dir, STATE_FILE)} lists Slurm jobs of runs with no record yet "
                        f"({', '.join(sorted(unknown)[:3])}{', ...' if len(unknown) > 3 else ''}) and Slurm cannot "
                        f"be asked whether they are still queued or running ({e}); collect them with "
                        f"--executor=slurm where Slurm is reachable") from None
    return [run_id for run_id, job_id in unknown.items() if under_way(job_id, states)]


class SlurmExecutor:
    name = "slurm"

    def __init__(self, options=None, nproc=1):
        """options: partition (None: the cluster's default), time_min, gpus_per_run, cpus_per_run."""
        if submitit is None:
            raise UserError("the slurm executor needs submitit: pip install submitit")
        if shutil.which("sbatch") is None:
            raise UserError("the slurm executor needs Slurm: sbatch is not on the PATH")
        options = {"partition": None, "time_min": 60, "gpus_per_run": 0, "cpus_per_run": 2, **(options or {})}
        if options["time_min"] < 1 or options["cpus_per_run"] < 1 or options["gpus_per_run"] < 0:
            raise ConfigError("--time_min and --cpus_per_run must be at least 1, --gpus_per_run at least 0")
        if 0 < options["gpus_per_run"] < nproc:
            raise ConfigError(f"--nproc={nproc} processes need as many GPUs: --gpus_per_run={options['gpus_per_run']}")
        self.options, self.nproc = options, nproc
        self.threads = max(1, options["cpus_per_run"] // nproc)

    def describe(self):
        o = self.options
        return (f"slurm: partition {o['partition'] or '(default)'}, {o['time_min']} min, "
                f"{o['cpus_per_run']} CPUs and {o['gpus_per_run']} GPUs per run")

    def execute(self, sweep, runs, wait=True, log=print):
        """Submit the runs whose jobs are not under way; with wait, collect until all have ended.
        Returns the ids of the runs still queued or running."""
        state_path = os.path.join(sweep.sweep_dir, STATE_FILE)
        jobs = submitted_jobs(sweep.sweep_dir)
        states = job_states()
        queued = [r for r in runs if under_way(jobs.get(r.run_id), states)]
        to_submit = [r for r in runs if not under_way(jobs.get(r.run_id), states)]
        if queued:
            log(f"{len(queued)} runs are already queued or running on Slurm: not submitted again")
        if to_submit:
            for run, job in zip(to_submit, self.submit(sweep, to_submit)):
                jobs[run.run_id] = job.job_id
            write_json(state_path, jobs)
            log(f"submitted {len(to_submit)} runs as Slurm jobs {', '.join(jobs[r.run_id] for r in to_submit)}")
        pending = {r.run_id: r for r in runs}
        while pending:
            states = job_states()  # before the records: a job that ended has appended its record already
            results = read_results(sweep.sweep_dir)
            for run_id, run in list(pending.items()):
                job_id = jobs[run_id]
                record = results.get(run_id)
                if record is not None and record["provenance"].get("slurm_job_id") == job_id:
                    del pending[run_id]
                    if record["status"] != "ok":
                        log(f"{run_id}: {record['status']} (exit {record['returncode']}); "
                            f"see {os.path.join(sweep.run_dir(run), 'train.log')}")
                elif not under_way(job_id, states):
                    del pending[run_id]
                    self.record_lost(sweep, run, job_id, states.get(job_id, "gone"))
                    log(f"{run_id}: Slurm job {job_id} ended ({states.get(job_id, 'gone')}) without a record; "
                        f"see {os.path.join(sweep.sweep_dir, 'slurm')}")
            if not wait:
                break
            if pending:
                time.sleep(POLL_S)
        return set(pending)

    def submit(self, sweep, runs):
        executor = submitit.AutoExecutor(folder=os.path.join(sweep.sweep_dir, "slurm", "%j"), cluster="slurm")
        o = self.options
        params = {"name": f"sweep-{os.path.basename(sweep.sweep_dir)}", "timeout_min": o["time_min"],
                  "cpus_per_task": o["cpus_per_run"], "nodes": 1, "tasks_per_node": 1,
                  "slurm_array_parallelism": len(runs), "stderr_to_stdout": True,
                  # the job unpickles SlurmRun: the repository's modules must be importable there
                  "slurm_setup": [f"export PYTHONPATH={REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"]}
        if o["gpus_per_run"]:
            params["gpus_per_node"] = o["gpus_per_run"]
        if o["partition"]:
            params["slurm_partition"] = o["partition"]
        executor.update_parameters(**params)
        try:
            with executor.batch():
                jobs = [executor.submit(SlurmRun(sweep.for_run(run), run, self.threads)) for run in runs]
        except Exception as e:  # sbatch's refusal (a bad partition, a limit) reported in one line
            message = str(e).strip().splitlines()
            raise UserError(f"Slurm refused the jobs: {message[-1] if message else type(e).__name__}") from None
        return jobs

    def record_lost(self, sweep, run, job_id, state):
        """A job that ended without a record: record the run as failed (returncode None)."""
        record = summarize(run, sweep.run_dir(run), None, 0.0, self.name,
                           provenance(f"unknown: Slurm job {state}", slurm_job_id=job_id), sweep.config_of(run))
        append_record(os.path.join(sweep.sweep_dir, RESULTS_FILE), record)


def write_json(path, obj):
    write_atomically(path, lambda f: f.write(json.dumps(obj, indent=1).encode("utf-8")))
