"""
Loss curves from one or many runs: training loss (smoothed) and validation loss against the
iteration. Runs that differ only by seed are drawn as their mean with a band of one standard
deviation.

    python scripts/plot_training_improved.py out/experiments/prior/        # -> out/experiments/prior/training_curves.png
    python scripts/plot_training_improved.py out/baseline out/embeddings_centered --out=two.png

An argument is a run folder (with metrics.jsonl) or a folder of runs (a sweep). Without --out the
plot is written into the folder given (with several, into the folder that holds them all).
"""

import os
import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import ConfigError
from configurator import CommandLine
from experiments.cli import check_image_path, guarded
from experiments.plots import find_runs, plot_curves


def default_out(paths):
    folders = [os.path.abspath(p) for p in paths]
    return os.path.join(folders[0] if len(folders) == 1 else os.path.commonpath(folders), "training_curves.png")


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("paths", nargs="+", help="run folders or sweep folders")
    parser.add_argument("--out", default=None, help="the image to write, .png, .pdf or .svg (default: training_curves.png in the folder given)")
    parser.add_argument("--smoothing", type=float, default=0.9, help="EMA factor of the training loss, in [0, 1)")
    parser.add_argument("--title", default="Training curves", help="the plot's title")
    args = parser.parse_args(argv)

    def body():
        if not 0 <= args.smoothing < 1:
            raise ConfigError(f"--smoothing must be in [0, 1), got {args.smoothing}")
        if args.out is not None:
            check_image_path(args.out, "--out")
        print(plot_curves(find_runs(args.paths), args.out or default_out(args.paths), args.smoothing, args.title))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
