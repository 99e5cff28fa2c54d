"""
Comparison plots from a sweep's results.jsonl: a bar chart of the improvement of each variant over
the baseline (paired by seed, 95% confidence interval as error bars), and a variant-by-mode
heatmap of the mean improvement.

    python scripts/create_comparison_plots.py out/experiments/prior/results.jsonl [--iters=1000] [--out_dir=DIR]
"""

import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.stats import compare_records  # noqa: E402


def label(variant, mode):
    return variant.replace("_centered", "") + ("" if mode == "none" else f" ({mode})")


def improvement_bars(groups, out_path, prior=None, title="Improvement over the baseline"):
    """groups: compare_records output. prior: {variant: claimed improvement %} drawn as markers."""
    rows = sorted(((k, g) for k, g in groups.items() if g["comparison"]),
                  key=lambda kg: -kg[1]["comparison"]["mean_pct"])
    if not rows:
        raise SystemExit("error: no variant has runs paired with a baseline run")
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 5), constrained_layout=True)
    x = np.arange(len(rows))
    means = [g["comparison"]["mean_pct"] for _, g in rows]
    lows = [g["comparison"]["ci_low"] for _, g in rows]
    highs = [g["comparison"]["ci_high"] for _, g in rows]
    err = np.array([[m - lo if not math.isnan(lo) else 0 for m, lo in zip(means, lows)],
                    [hi - m if not math.isnan(hi) else 0 for m, hi in zip(means, highs)]])
    colors = ["tab:green" if g["comparison"]["significant"] and m > 0 else
              "tab:red" if g["comparison"]["significant"] else "tab:gray" for (_, g), m in zip(rows, means)]
    ax.bar(x, means, color=colors, alpha=0.8)
    ax.errorbar(x, means, yerr=err, fmt="none", ecolor="black", capsize=4, lw=1)
    if prior:
        claimed = [(i, prior[k[0]]) for i, (k, _) in enumerate(rows) if k[0] in prior]
        if claimed:
            ax.scatter([i for i, _ in claimed], [c for _, c in claimed], marker="D", color="tab:orange",
                       zorder=3, label="prior report's claim")
            ax.legend(loc="best", fontsize=9)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [label(*k) + f"\nn={g['comparison']['n']}" for k, g in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("val loss improvement vs baseline (%)")
    ax.set_title(f"{title}\nmean of per-seed paired differences, 95% CI; green/red: CI excludes 0")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def mode_heatmap(groups, out_path, title="Mean improvement over the baseline (%)"):
    cells = {k: g["comparison"]["mean_pct"] for k, g in groups.items() if g["comparison"]}
    variants = sorted({v for v, _ in cells})
    modes = sorted({m for _, m in cells})
    grid = np.full((len(variants), len(modes)), np.nan)
    for (v, m), value in cells.items():
        grid[variants.index(v), modes.index(m)] = value
    limit = max(1e-9, np.nanmax(np.abs(grid)))
    fig, ax = plt.subplots(figsize=(max(6.5, 2.5 + 1.6 * len(modes)), 2 + 0.5 * len(variants)),
                           constrained_layout=True)
    image = ax.imshow(grid, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(variants)):
        for j in range(len(modes)):
            text = "not run" if np.isnan(grid[i, j]) else f"{grid[i, j]:+.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="gray" if np.isnan(grid[i, j]) else "black")
    ax.set_xticks(range(len(modes)), modes)
    ax.set_yticks(range(len(variants)), [v.replace("_centered", "") for v in variants])
    ax.set_xlabel("centering mode")
    ax.set_ylabel("variant")
    fig.colorbar(image, ax=ax, label="improvement (%), positive = lower val loss")
    ax.set_title(title)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a sweep's results.jsonl")
    parser.add_argument("--iters", type=int, default=None, help="iteration count to compare (default: the largest)")
    parser.add_argument("--out_dir", default=None, help="default: the sweep's folder")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.results):
        raise SystemExit(f"error: no such file: {args.results}")
    with open(args.results, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        raise SystemExit(f"error: {args.results} holds no runs")
    iters = args.iters or max(r["iters"] for r in records)
    groups = compare_records(records, iters)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    print(improvement_bars(groups, os.path.join(out_dir, f"improvement_i{iters}.png"),
                           title=f"Improvement over the baseline at {iters} iterations"))
    print(mode_heatmap(groups, os.path.join(out_dir, f"mode_heatmap_i{iters}.png"),
                       title=f"Mean improvement over the baseline (%)\nat {iters} iterations, paired by seed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
