"""
One markdown table across several comparison reports (the results.json that
run_best_advanced_1k.py writes): the same cells at other widths, datasets or iteration counts. A
row per cell, a column per report, labelled by the settings in which the reports differ; each
figure and Holm-corrected p is the one its own report decided on.

    python scripts/compare_reports.py results/tuned_w64 results/best_advanced_1k-tuned
    python scripts/compare_reports.py results/tuned_i150 results/best_advanced_1k-tuned --cells=mlp_centered/adaptive
    python scripts/compare_reports.py results/tuned_w64 results/best_advanced_1k-tuned results/tuned_w256 \
        --cells=embeddings_centered/momentum,full_attention_centered/momentum --plot=results/width_curve.png

--plot draws each cell's improvement and interval against the numeric setting in which the
reports differ (--x names it when they differ in several).
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import CommandLine, ConfigError, comma_list
from experiments.cli import check_image_path, guarded
from experiments.compare import across_reports, setting_curve


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("folders", nargs="+", help="report folders, each with a results.json")
    parser.add_argument("--cells", type=comma_list(str), default=None,
                        help="comma-separated variant/mode cells to show (default: every cell); the baseline is always shown")
    parser.add_argument("--plot", default=None, help="also draw the cells against a numeric setting into this PNG file")
    parser.add_argument("--x", default=None,
                        help="with --plot: the setting on the x axis, e.g. n_embd (default: the only one that differs)")
    args = parser.parse_args(argv)

    def body():
        if args.x is not None and args.plot is None:
            raise ConfigError("--x goes with --plot")
        if args.plot is not None:
            check_image_path(args.plot, "--plot")
        print("\n".join(across_reports(args.folders, args.cells)))
        if args.plot:
            from experiments.plots import setting_curve as draw
            key, curve = setting_curve(args.folders, args.x, args.cells)
            draw(curve, key, args.plot)
            print(f"written to {args.plot}")
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
