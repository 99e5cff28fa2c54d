"""
Comparison plots from a sweep's results.jsonl: a bar chart of the improvement of each variant over
the baseline (paired by seed, 95% confidence interval as error bars, coloured by the decision of
the paired t-test after Holm correction over the comparisons shown), and a variant-by-mode
heatmap of the mean improvement. Modes that train on batch statistics are labelled non-causal.

    python scripts/create_comparison_plots.py out/experiments/prior/results.jsonl [--iters=1000] [--out_dir=DIR]

A sweep with a --grid (several learning rates, say) is compared one grid point at a time:
--where=learning_rate=3e-3 (a tuned sweep's own report is run_best_advanced_1k.py --report_only).
"""

import os
import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import UserError
from configurator import CommandLine
from experiments.cli import guarded
from experiments.plots import improvement_bars, mode_heatmap
from experiments.records import read_records
from experiments.report import METRIC_NAMES
from experiments.stats import compare_records
from files import ensure_writable_folder

RECORD_KEYS = ("run_id", "status", "iters", "variant", "mode", "seed")  # what the comparison reads of a record


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("results", help="a sweep's results.jsonl")
    parser.add_argument("--iters", type=int, default=None, help="iteration count to compare (default: the largest)")
    parser.add_argument("--metric", default=None, choices=["test_loss", "final_val_loss", "best_val_loss"],
                        help="the loss compared (default: test_loss, the held-out split, when every run has one, "
                             "else final_val_loss)")
    parser.add_argument("--out_dir", default=None, help="where the images go (default: the sweep's folder)")
    parser.add_argument("--where", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                        help="only the runs at this grid point (as the runs' --grid values are written)")
    args = parser.parse_args(argv)

    def body():
        if not os.path.isfile(args.results):
            raise UserError(f"no such file: {args.results}")
        records = read_records(args.results, RECORD_KEYS)
        if not records:
            raise UserError(f"{args.results} holds no runs")
        if args.where:
            wanted = dict(item.partition("=")[::2] for item in args.where.split(","))
            records = [r for r in records if all(str((r.get("params") or {}).get(k)) == v for k, v in wanted.items())]
            if not records:
                raise UserError(f"no run of {args.results} is at --where={args.where}")
        iters = args.iters or max(r["iters"] for r in records)
        ok = [r for r in records if r["status"] == "ok" and r["iters"] == iters]
        metric = args.metric or ("test_loss" if all(r.get("test_loss") is not None for r in ok) else "final_val_loss")
        if metric != "test_loss":
            print(f"note: comparing {metric}, a validation loss; report claims on test_loss")
        try:
            groups = compare_records(records, iters, metric=metric)
        except ValueError as e:
            raise UserError(f"{e}: compare one at a time with --where=KEY=VALUE") from None
        if not any(g["comparison"] for g in groups.values()):
            raise UserError(f"no variant at {iters} iterations has runs paired with a baseline run ({metric})")
        out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
        ensure_writable_folder(out_dir, "--out_dir")
        print(improvement_bars(groups, os.path.join(out_dir, f"improvement_i{iters}.png"),
                               metric=METRIC_NAMES.get(metric, metric),
                               title=f"Improvement over the baseline at {iters} iterations"))
        print(mode_heatmap(groups, os.path.join(out_dir, f"mode_heatmap_i{iters}.png"),
                           title=f"Mean improvement over the baseline (%), {METRIC_NAMES.get(metric, metric)}\nat {iters} iterations, "
                                 f"paired by seed"))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
