"""
A sweep over centering variants, modes, seeds and iteration counts. Each run is a subprocess of
train_advanced_centered.py (or of torchrun with --nproc N), with its own folder:

    out/experiments/<sweep>/<run-id>/   ckpt.pt, best.pt, metrics.jsonl, train.log, run.json
    out/experiments/<sweep>/results.jsonl   one line per finished run

    python scripts/advanced_centering_experiments.py --name=prior --variants=baseline,embeddings_centered \\
        --modes=adaptive,momentum --seeds=1,2,3 --iters=150,1000 [--nproc=2] [--dry-run] [--key=value ...]

Re-running the same command skips finished runs (status ok or diverged) and resumes interrupted
ones from their checkpoints; failed runs are tried again. A run that crashes or diverges is
recorded with its status and the sweep goes on. Ctrl-C stops the current run and the sweep;
run the command again to continue. --key=value arguments go to every run.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from model_advanced_centering import CENTERING_MODES as MODES  # noqa: E402

ALL_VARIANTS = ["baseline", "embeddings_centered", "qk_centered", "value_centered", "qk_value_centered",
                "full_attention_centered", "residual_centered", "mlp_centered", "aggressive_centered"]
FINAL_STATUSES = ("ok", "diverged")  # not run again; "failed" is
EXIT_STATUS = {0: "ok", 3: "diverged"}  # train.py's exit codes; anything else is "failed"


@dataclass(frozen=True)
class Run:
    variant: str
    mode: str  # "none" for the baseline, which centers nothing
    seed: int
    iters: int

    @property
    def run_id(self):
        return f"{self.variant}-{self.mode}-s{self.seed}-i{self.iters}"

    @property
    def group(self):
        """The run id without the seed: runs that differ only by seed."""
        return f"{self.variant}-{self.mode}-i{self.iters}"


def plan_runs(variants, modes, seeds, iters):
    runs = []
    for n in iters:
        for variant in variants:
            for mode in (["none"] if variant == "baseline" else modes):
                runs.extend(Run(variant, mode, seed, n) for seed in seeds)
    return runs


def read_results(path):
    """run id -> the last record written for it."""
    records = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    records[record["run_id"]] = record
    return records


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def command_for(run, run_dir, config_dir, nproc, overrides, resume):
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    args = [os.path.join(REPO_ROOT, "train_advanced_centered.py"),
            os.path.join(config_dir, f"{run.variant}.py"),
            f"--out_dir={run_dir}", f"--seed={run.seed}", f"--max_iters={run.iters}",
            f"--lr_decay_iters={run.iters}", *overrides]
    if run.mode != "none":
        args.append(f"--centering_mode={run.mode}")
    if resume:
        args.append("--init_from=resume")
    return launcher + args


def summarize(run, run_dir, status, returncode, wall_s):
    metrics = read_metrics(run_dir)
    evals = [m for m in metrics if m["type"] == "eval"]
    steps = [m["step_ms"] for m in metrics if m["type"] == "train"]
    return {
        "run_id": run.run_id, "variant": run.variant, "mode": run.mode, "seed": run.seed,
        "iters": run.iters, "status": status, "returncode": returncode,
        "final_val_loss": evals[-1]["val_loss"] if evals and status == "ok" else None,
        "best_val_loss": min(e["val_loss"] for e in evals) if evals else None,
        "last_iter": evals[-1]["iter"] if evals else 0,
        "step_ms": statistics.median(steps) if steps else None, "wall_s": round(wall_s, 1),
    }


def execute(run, sweep_dir, config_dir, nproc, overrides):
    """Run one training subprocess to its end; returns its results record. Raises
    KeyboardInterrupt (after stopping the child) on Ctrl-C."""
    run_dir = os.path.join(sweep_dir, run.run_id)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "run.json"), "w", encoding="utf-8") as f:
        json.dump({**run.__dict__, "run_id": run.run_id, "group": run.group}, f)
    resume = os.path.exists(os.path.join(run_dir, "ckpt.pt"))
    cmd = command_for(run, run_dir, config_dir, nproc, overrides, resume)
    t0 = time.time()
    with open(os.path.join(run_dir, "train.log"), "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        # its own process group: Ctrl-C reaches the sweep, which then stops the run itself
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                 start_new_session=True)
        try:
            returncode = child.wait()
        except KeyboardInterrupt:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
            raise
    status = EXIT_STATUS.get(returncode, "failed")
    return summarize(run, run_dir, status, returncode, time.time() - t0)


def run_sweep(name, runs, out_root, config_dir, nproc=1, overrides=(), log=print):
    """Do every run of the list that has no final record yet; returns all records, by run id."""
    sweep_dir = os.path.join(out_root, name)
    os.makedirs(sweep_dir, exist_ok=True)
    results_path = os.path.join(sweep_dir, "results.jsonl")
    done = read_results(results_path)
    todo = [r for r in runs if done.get(r.run_id, {}).get("status") not in FINAL_STATUSES]
    log(f"sweep {name}: {len(runs)} runs, {len(runs) - len(todo)} already done, {len(todo)} to do")
    with tqdm(total=len(todo), unit="run", dynamic_ncols=True) as bar:
        for run in todo:
            bar.set_description(run.run_id)
            record = execute(run, sweep_dir, config_dir, nproc, overrides)
            with open(results_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            done[run.run_id] = record
            if record["status"] != "ok":
                tqdm.write(f"{run.run_id}: {record['status']} (exit {record['returncode']}); "
                           f"see {os.path.join(sweep_dir, run.run_id, 'train.log')}")
            bar.update(1)
    return {r.run_id: done[r.run_id] for r in runs}


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def add_common_arguments(parser):
    parser.add_argument("--nproc", type=int, default=1, help="processes per run (torchrun; gloo on CPU)")
    parser.add_argument("--out_root", default=os.path.join(REPO_ROOT, "out", "experiments"))
    parser.add_argument("--config_dir", default=os.path.join(REPO_ROOT, "config"))
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")


def check_names(parser, variants, modes, config_dir):
    for v in variants:
        if not os.path.isfile(os.path.join(config_dir, f"{v}.py")):
            parser.error(f"no config for variant '{v}' in {config_dir}")
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode '{m}'; valid modes: {', '.join(MODES)}")


def print_plan(runs, sweep_dir, results):
    for r in runs:
        status = results.get(r.run_id, {}).get("status", "to do")
        print(f"{r.run_id:55s} {status}")
    print(f"{len(runs)} runs in {sweep_dir}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--name", required=True, help="sweep name: its folder under out_root")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS))
    parser.add_argument("--modes", default="adaptive", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--iters", type=int_list, default=[1000], help="comma-separated iteration counts")
    parser.add_argument("--seeds", type=int_list, default=[1, 2, 3], help="comma-separated seeds")
    add_common_arguments(parser)
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not (o.startswith("--") and "=" in o)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (training keys go as --key=value)")
    variants, modes = args.variants.split(","), args.modes.split(",")
    check_names(parser, variants, modes, args.config_dir)
    runs = plan_runs(variants, modes, args.seeds, args.iters)
    sweep_dir = os.path.join(args.out_root, args.name)
    if args.dry_run:
        print_plan(runs, sweep_dir, read_results(os.path.join(sweep_dir, "results.jsonl")))
        return 0
    try:
        results = run_sweep(args.name, runs, args.out_root, args.config_dir, args.nproc, overrides)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are recorded in {sweep_dir}/results.jsonl; "
              f"run the same command again to continue", file=sys.stderr)
        return 130
    failed = [r for r in results.values() if r["status"] != "ok"]
    print(f"done: {len(results) - len(failed)} ok, {len(failed)} not ok; results in {sweep_dir}/results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
