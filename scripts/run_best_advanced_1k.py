"""
Reproduce the prior report's final table (baseline, embeddings centered, QK + value, full
attention, value only, at 1000 iterations) with several seeds, paired comparisons and 95%
confidence intervals:

    python scripts/run_best_advanced_1k.py [--seeds=3] [--dataset=shakespeare_char] [--report_dir=DIR]

Missing runs are done through the sweep machinery (out/experiments/best_advanced_1k[-<dataset>]/),
so an interrupted reproduction continues where it stopped. Writes results.md, results.json,
improvement.png and val_curves.png to --report_dir (default: the sweep folder) and prints the table.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _repo_root  # noqa: E402,F401
from experiments.cli import add_sweep_arguments, print_plan, sweep_options  # noqa: E402
from experiments.plan import plan_runs  # noqa: E402
from experiments.sweep import run_sweep  # noqa: E402
from experiments.plots import improvement_bars, plot_curves  # noqa: E402
from experiments.stats import compare_records  # noqa: E402

# (config, name in the prior report, its claimed improvement in %)
METHODS = [
    ("embeddings_centered", "Embeddings centered", 2.26),
    ("qk_value_centered", "QK + Value", 1.89),
    ("full_attention_centered", "Full attention", 1.89),
    ("value_centered", "Value only", 1.13),
    ("baseline", "Baseline", 0.0),
]


def fmt(x, spec="+.2f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def build_table(groups, mode):
    """Markdown table rows, best mean val loss first, and the rows as data."""
    rows = []
    for variant, name, claim in METHODS:
        g = groups.get((variant, "none" if variant == "baseline" else mode))
        if g is None:
            continue
        c = g["comparison"]
        rows.append({"variant": variant, "method": name, "mean": g["mean"], "std": g["std"],
                     "n": len(g["losses"]), "claimed_pct": claim, "comparison": c})
    rows.sort(key=lambda r: r["mean"])
    lines = ["| rank | method | val loss (mean ± std) | improvement vs baseline (95% CI) | p (paired t) "
             "| significant | prior report's claim |", "|---|---|---|---|---|---|---|"]
    for rank, r in enumerate(rows, 1):
        c = r["comparison"]
        if c is None:
            improvement, p, sig = "0 (reference)", "", ""
        else:
            improvement = f"{fmt(c['mean_pct'])}% [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
            p, sig = fmt(c["p_value"], ".3g"), "yes" if c["significant"] else "no"
        lines.append(f"| {rank} | {r['method']} | {r['mean']:.4f} ± {fmt(r['std'], '.4f')} (n={r['n']}) | "
                     f"{improvement} | {p} | {sig} | {r['claimed_pct']:+.2f}% |")
    return lines, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (1..N); more is better")
    parser.add_argument("--dataset", default="shakespeare_char")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--mode", default="adaptive", help="centering mode of the centered variants")
    parser.add_argument("--report_dir", default=None)
    add_sweep_arguments(parser)
    args, overrides = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    name = "best_advanced_1k" + ("" if args.dataset == "shakespeare_char" else f"-{args.dataset}")
    overrides = [f"--dataset={args.dataset}", *overrides]
    variants = [v for v, _, _ in METHODS]
    runs = plan_runs(variants, [args.mode], list(range(1, args.seeds + 1)), [args.iters])
    sweep_dir = os.path.join(os.path.abspath(args.out_root), name)
    if args.dry_run:
        print_plan(runs, sweep_dir)
        return 0
    t0 = time.time()
    try:
        records = run_sweep(name, runs, args.out_root, overrides=overrides, **sweep_options(args))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue", file=sys.stderr)
        return 130
    wall = time.time() - t0

    groups = compare_records(list(records.values()), args.iters)
    if ("baseline", "none") not in groups:
        print("error: no baseline run finished; see the train.log files in " + sweep_dir, file=sys.stderr)
        return 1
    lines, rows = build_table(groups, args.mode)
    base = groups[("baseline", "none")]
    noise = (f"Baseline seed-to-seed noise: std {fmt(base['std'], '.4f')} "
             f"({fmt(100 * base['std'] / base['mean'], '.2f')}% of the mean) over {len(base['losses'])} seeds.")
    not_ok = [r for r in records.values() if r["status"] != "ok"]
    report_dir = args.report_dir or sweep_dir
    os.makedirs(report_dir, exist_ok=True)
    prior = {v: claim for v, _, claim in METHODS if v != "baseline"}
    wanted = {(v, "none" if v == "baseline" else args.mode) for v, _, _ in METHODS}
    improvement_bars({k: g for k, g in groups.items() if k in wanted}, os.path.join(report_dir, "improvement.png"),
                     prior=prior, title=f"Centering vs baseline at {args.iters} iterations ({args.dataset})")
    run_dirs = [os.path.join(sweep_dir, r.run_id) for r in runs if records[r.run_id]["status"] == "ok"]
    plot_curves(run_dirs, os.path.join(report_dir, "val_curves.png"),
                title=f"{args.dataset}, {args.iters} iterations")
    header = [f"Validation loss at {args.iters} iterations, {args.dataset}, mode {args.mode}, "
              f"seeds 1..{args.seeds}; improvement = relative decrease of the loss vs the same-seed baseline.", ""]
    footer = ["", noise, "Significant: the 95% interval of the paired improvement excludes 0."]
    if not_ok:
        footer.append("Runs not ok (left out): " + ", ".join(f"{r['run_id']} ({r['status']})" for r in not_ok))
    table = "\n".join(header + lines + footer)
    with open(os.path.join(report_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(report_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": args.dataset, "iters": args.iters, "mode": args.mode, "seeds": args.seeds,
                   "rows": rows, "runs": list(records.values()), "wall_s_this_call": round(wall, 1),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cores"}, f, indent=1)
    print(table)
    print(f"\nwritten to {report_dir}: results.md, results.json, improvement.png, val_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
