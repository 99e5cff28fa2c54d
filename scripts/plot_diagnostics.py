"""
The anisotropy diagnostics (diagnostics.py) of one or many runs over training: one PNG per metric,
sites by layers, each variant as its mean over seeds with a ±1 std band.

    python scripts/plot_diagnostics.py out/experiments/modes            # -> out/experiments/modes/diagnostics/
    python scripts/plot_diagnostics.py out/baseline out/embeddings_centered --metrics=isoscore,first_mass --out_dir=diag

An argument is a run folder (with metrics.jsonl) or a folder of runs (a sweep); runs that differ
only by seed form one variant. Without --out_dir the images go to diagnostics/ in the folder given
(with several, in the folder that holds them all).
"""

import os
import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import UserError
from configurator import CommandLine
from experiments.cli import guarded
from experiments.plots import find_runs, group_name, plot_diagnostics
from files import ensure_writable_folder
from training.metrics import read_metrics


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("paths", nargs="+", help="run folders or sweep folders")
    parser.add_argument("--out_dir", default=None, help="folder for the PNGs (default: diagnostics/ beside the input)")
    parser.add_argument("--metrics", default="", help="comma-separated metric names (default: all)")
    args = parser.parse_args(argv)

    def body():
        groups = {}
        for run_dir in find_runs(args.paths):
            groups.setdefault(group_name(run_dir), []).append(read_metrics(run_dir))
        folders = [os.path.abspath(p) for p in args.paths]
        out_dir = args.out_dir or os.path.join(
            folders[0] if len(folders) == 1 else os.path.commonpath(folders), "diagnostics")
        ensure_writable_folder(out_dir, "--out_dir")
        paths = plot_diagnostics(groups, out_dir, [m for m in args.metrics.split(",") if m])
        if not paths:
            raise UserError(f"no diagnostics (diag/ keys) in the eval records of {', '.join(args.paths)}")
        print("\n".join(paths))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
