"""
A sweep over centering variants, modes, seeds, iteration counts and any other training key.
Each run is a training subprocess with its own folder; see experiments/sweep.py.

    python scripts/advanced_centering_experiments.py --name=prior --variants=baseline,embeddings_centered \\
        --modes=adaptive,momentum --seeds=1,2,3 --iters=150,1000 [--grid=learning_rate=3e-4,1e-3 ...] \\
        [--jobs=2 | --nproc=2 | --executor=slurm --partition=gpu --gpus_per_run=1] [--key=value ...]

Options are written --key=value (see --help); any other --key=value is a training key given to
every run, and a config file (e.g. config/gpu.py) an overlay after each variant's config.
--grid key=v1,v2 (repeatable) makes any training key an axis of the sweep. Everything typed is
checked before a run starts. Results: <out_root>/<name>/results.jsonl, one record per run.

Re-running the same command skips finished runs (status ok or diverged), resumes interrupted
ones from their checkpoints and tries failed ones again; on Slurm it collects the results of
jobs that ended and never submits a run that is still queued or running. Ctrl-C stops the
local runs and the sweep. Exit status: 0 when every run finished ok, 1 naming those that did
not, 2 for a mistake in the command.
"""

import os
import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import CommandLine, comma_list
from experiments.cli import add_sweep_arguments, guarded, print_plan, report, sweep_options
from experiments.plan import MODES, check_plan, check_sweep_name, parse_grid, plan_runs, variant_names
from experiments.sweep import run_sweep


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--name", required=True, help="sweep name: its folder under out_root")
    parser.add_argument("--variants", type=comma_list(str, unique=True), default=None,
                        help="comma-separated config names in config_dir (default: every variant)")
    parser.add_argument("--modes", type=comma_list(str, unique=True), default=["adaptive"],
                        help=f"comma-separated centering modes, of {', '.join(MODES)}")
    parser.add_argument("--iters", type=comma_list(int, unique=True), default=[1000], help="comma-separated iteration counts")
    parser.add_argument("--seeds", type=comma_list(int, unique=True), default=[1, 2, 3], help="comma-separated seeds")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="another axis: a training key and its comma-separated values (repeatable)")
    add_sweep_arguments(parser)
    args, overrides = parser.parse_with_overrides(argv)

    def body():
        check_sweep_name(args.name)
        variants = args.variants or variant_names(args.config_dir)
        runs = plan_runs(variants, args.modes, args.seeds, args.iters, parse_grid(args.grid))
        sweep_dir = os.path.join(os.path.abspath(args.out_root), args.name)
        options = sweep_options(args)  # checked in a dry run too
        if args.dry_run:
            print_plan(runs, sweep_dir, check_plan(runs, variants, args.modes, overrides, args.config_dir,
                                                   starts=True, device=args.executor != "slurm"))
            return 0
        records = run_sweep(args.name, runs, args.out_root, overrides=overrides, **options)
        return report(records, runs, sweep_dir)

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
