"""
Comparison plots from a sweep's results.jsonl: a bar chart of the improvement of each variant over
the baseline (paired by seed, 95% confidence interval as error bars, coloured by the decision of
the paired t-test after Holm correction over the comparisons shown), and a variant-by-mode
heatmap of the mean improvement.

    python scripts/create_comparison_plots.py out/experiments/prior/results.jsonl [--iters=1000] [--out_dir=DIR]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.plots import improvement_bars, mode_heatmap  # noqa: E402
from experiments.stats import compare_records  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a sweep's results.jsonl")
    parser.add_argument("--iters", type=int, default=None, help="iteration count to compare (default: the largest)")
    parser.add_argument("--out_dir", default=None, help="default: the sweep's folder")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.results):
        parser.exit(1, f"error: no such file: {args.results}\n")
    with open(args.results, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        parser.exit(1, f"error: {args.results} holds no runs\n")
    iters = args.iters or max(r["iters"] for r in records)
    groups = compare_records(records, iters)
    if not any(g["comparison"] for g in groups.values()):
        parser.exit(1, f"error: no variant at {iters} iterations has runs paired with a baseline run\n")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    print(improvement_bars(groups, os.path.join(out_dir, f"improvement_i{iters}.png"),
                           title=f"Improvement over the baseline at {iters} iterations"))
    print(mode_heatmap(groups, os.path.join(out_dir, f"mode_heatmap_i{iters}.png"),
                       title=f"Mean improvement over the baseline (%)\nat {iters} iterations, paired by seed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
