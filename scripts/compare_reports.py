"""
One markdown table across several comparison reports (the results.json that
run_best_advanced_1k.py writes): the same cells at other widths, datasets or iteration counts. A
row per cell, a column per report, labelled by the settings in which the reports differ; each
figure and Holm-corrected p is the one its own report decided on.

    python scripts/compare_reports.py results/tuned_w64 results/best_advanced_1k-tuned
    python scripts/compare_reports.py results/tuned_i150 results/best_advanced_1k-tuned --cells=mlp_centered/adaptive
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import CommandLine, comma_list
from experiments.cli import guarded
from experiments.compare import across_reports


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("folders", nargs="+", help="report folders, each with a results.json")
    parser.add_argument("--cells", type=comma_list(str), default=None,
                        help="comma-separated variant/mode cells to show (default: every cell); the baseline is always shown")
    args = parser.parse_args(argv)

    def body():
        print("\n".join(across_reports(args.folders, args.cells)))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
