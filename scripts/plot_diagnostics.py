"""
The anisotropy diagnostics (diagnostics.py) of one or many runs over training: one PNG per metric,
sites by layers, each variant as its mean over seeds with a ±1 std band.

    python scripts/plot_diagnostics.py out/experiments/modes --out_dir=plots/diagnostics
    python scripts/plot_diagnostics.py out/baseline out/embeddings_centered --metrics=isoscore,first_mass

An argument is a run folder (with metrics.jsonl) or a folder of runs (a sweep); runs that differ
only by seed form one variant.
"""

import argparse
import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from diagnostics import plot_diagnostics  # noqa: E402
from configurator import UserError  # noqa: E402
from experiments.plots import find_runs, group_name  # noqa: E402


def read_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run folders or sweep folders")
    parser.add_argument("--out_dir", default="diagnostics_plots", help="folder for the PNGs")
    parser.add_argument("--metrics", default="", help="comma-separated metric names (default: all)")
    args = parser.parse_args(argv)
    groups = {}
    try:
        run_dirs = find_runs(args.paths)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    for run_dir in run_dirs:
        groups.setdefault(group_name(run_dir), []).append(read_records(run_dir))
    paths = plot_diagnostics(groups, args.out_dir, [m for m in args.metrics.split(",") if m])
    if not paths:
        raise SystemExit(f"error: no diagnostics (diag/ keys) in the eval records of {', '.join(args.paths)}")
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
