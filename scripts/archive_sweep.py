"""
Copy a sweep's finished runs, without checkpoints, into another sweep folder: to commit a
sweep's results (results/), or to bring committed results into out/ on a fresh clone, where the
same sweep command then skips them and does only the rest.

    python scripts/archive_sweep.py out/experiments/best_advanced_1k-tuned results/best_advanced_1k-tuned
    python scripts/archive_sweep.py results/best_advanced_1k-tuned out/experiments/best_advanced_1k-tuned
    python scripts/archive_sweep.py results/best_advanced_1k-tuned out/experiments/decisive_1k --only='baseline-*-s100?-*'

Each run keeps its results record, run.json, train.log and metrics.jsonl (gzipped). Runs the
destination already holds are left as they are; one it holds with another record is refused.
--only copies just the runs whose id matches one of its patterns (shell-style, comma-separated):
for example another sweep's selection runs, to reuse its rate choice without its test runs.
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from experiments.archive import archive_sweep
from configurator import CommandLine, comma_list
from experiments.cli import guarded


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("source", help="sweep folder with results.jsonl")
    parser.add_argument("destination", help="sweep folder to copy the finished runs into (made if missing)")
    parser.add_argument("--only", type=comma_list(str), default=None,
                        help="comma-separated shell-style patterns of run ids to copy (default: every finished run)")
    args = parser.parse_args(argv)

    def body():
        archive_sweep(args.source, args.destination, only=args.only)
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
