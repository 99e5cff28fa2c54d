"""
Sweep throughput of the local executor: the same runs done one at a time with every core (--jobs 1),
then two at a time with half the cores each (--jobs 2), in runs per hour, and the ratio:

    python scripts/benchmark_sweep.py [--iters=150] [--rounds=2] [--cores=2] [--key=value ...]

Options are written --key=value (see --help); any other --key=value is a training key given to
every run (e.g. --data_dir=...). By default the runs are the 5-variant table of
run_best_advanced_1k.py (baseline, embeddings, QK + value, full attention and value centered,
adaptive mode, seed 1) at 150 iterations. The two ways take turns (A B B A ...), every round in
fresh folders under --out_root, so that a drift of a shared machine falls on both alike. Only
figures measured on an otherwise idle machine are worth reporting.
"""

import os
import shutil
import statistics
import sys
import time

import _repo_root  # noqa: F401  (the repository's modules become importable)

from configurator import CommandLine, comma_list
from experiments.cli import guarded
from experiments.plan import check_plan, plan_runs
from experiments.sweep import run_sweep

TABLE_VARIANTS = ["baseline", "embeddings_centered", "qk_value_centered", "full_attention_centered", "value_centered"]


def measure(args, overrides):
    os.environ.pop("OMP_NUM_THREADS", None)  # the sweep would cap every run's threads at it
    runs = plan_runs(args.variants, args.modes, [1], [args.iters])
    check_plan(runs, args.variants, args.modes, overrides)
    ways = {1: [], 2: []}  # jobs -> wall seconds of each round
    order = [jobs for r in range(args.rounds) for jobs in ((1, 2) if r % 2 == 0 else (2, 1))]
    for i, jobs in enumerate(order):
        out_root = os.path.join(os.path.abspath(args.out_root), f"round{i}-jobs{jobs}")
        shutil.rmtree(out_root, ignore_errors=True)
        t0 = time.perf_counter()
        records = run_sweep("bench", runs, out_root, jobs=jobs, cpus=args.cores, gpus=[], overrides=overrides,
                            log=lambda *a: None)
        wall = time.perf_counter() - t0
        not_ok = [r["run_id"] for r in records.values() if r["status"] != "ok"]
        if not_ok:
            print(f"error: runs did not finish ok: {', '.join(not_ok)} (see {out_root})", file=sys.stderr)
            return 1
        ways[jobs].append(wall)
        print(f"round {i // 2 + 1}: --jobs {jobs} ({args.cores // jobs} threads per run): {len(runs)} runs in "
              f"{wall:.1f} s, {len(runs) / wall * 3600:.0f} runs/hour", flush=True)
    per_hour = {jobs: len(runs) / statistics.median(walls) * 3600 for jobs, walls in ways.items()}
    print(f"\n| way | threads per run | runs/hour (median of {args.rounds}) |\n|---|---|---|")
    for jobs in (1, 2):
        print(f"| --jobs {jobs} | {args.cores // jobs} | {per_hour[jobs]:.0f} |")
    print(f"\n--jobs 2 / --jobs 1: {per_hour[2] / per_hour[1]:.2f}x ({len(runs)} runs of {args.iters} iterations)")
    return 0


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--iters", type=int, default=150, help="iterations per run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each way (they take turns)")
    parser.add_argument("--cores", type=int, default=2, help="cores shared out: --jobs 1 gets all, --jobs 2 half each")
    parser.add_argument("--variants", type=comma_list(str, unique=True), default=TABLE_VARIANTS, help="comma-separated variants")
    parser.add_argument("--modes", type=comma_list(str, unique=True), default=["adaptive"],
                        help="comma-separated centering modes of the centered variants")
    parser.add_argument("--out_root", default=os.path.join("out", "benchmark_sweep"),
                        help="where the runs go (each round in a fresh folder)")
    args, overrides = parser.parse_with_overrides(argv)
    if args.rounds < 1 or args.cores < 2:
        parser.error("--rounds must be at least 1 and --cores at least 2")
    return guarded(lambda: measure(args, overrides))


if __name__ == "__main__":
    sys.exit(main())
