"""
Loss curves from one or many runs: training loss (smoothed) and validation loss against the
iteration. Runs that differ only by seed are drawn as their mean with a band of one standard
deviation.

    python scripts/plot_training_improved.py out/experiments/prior/ --out=curves.png
    python scripts/plot_training_improved.py out/baseline out/embeddings_centered --out=two.png

An argument is a run folder (with metrics.jsonl) or a folder of runs (a sweep).
"""

import argparse
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def find_runs(paths):
    """Run folders under the given paths."""
    runs = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "metrics.jsonl")):
            runs.append(path)
        elif os.path.isdir(path):
            runs.extend(sorted(os.path.join(path, d) for d in os.listdir(path)
                               if os.path.isfile(os.path.join(path, d, "metrics.jsonl"))))
        else:
            raise SystemExit(f"error: no such folder: {path}")
    if not runs:
        raise SystemExit(f"error: no metrics.jsonl found under {', '.join(paths)}")
    return runs


def group_name(run_dir):
    """Sweep runs name their group in run.json; other runs are grouped by folder name less -s<seed>."""
    meta = os.path.join(run_dir, "run.json")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            return json.load(f)["group"]
    return re.sub(r"-s\d+", "", os.path.basename(os.path.normpath(run_dir)))


def load_curves(run_dir, smoothing):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [(r["iter"], r["loss"]) for r in records if r["type"] == "train"]
    val = [(r["iter"], r["val_loss"]) for r in records if r["type"] == "eval"]
    smoothed, ema = [], None
    for it, loss in train:  # exponential moving average, for a readable training curve
        ema = loss if ema is None else smoothing * ema + (1 - smoothing) * loss
        smoothed.append((it, ema))
    return {"train": smoothed, "val": val}


def mean_band(curves):
    """Mean and std over runs, on the iterations all of them have."""
    common = sorted(set.intersection(*(set(dict(c)) for c in curves)))
    values = np.array([[dict(c)[i] for i in common] for c in curves])
    return np.array(common), values.mean(0), values.std(0)


def plot_curves(run_dirs, out_path, smoothing=0.9, title="Training curves"):
    groups = {}
    for d in run_dirs:
        groups.setdefault(group_name(d), []).append(load_curves(d, smoothing))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, (name, runs) in enumerate(sorted(groups.items())):
        color = colors[k % 10]
        label = f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        for ax, key in zip(axes, ("train", "val")):
            curves = [r[key] for r in runs if r[key]]
            if not curves:
                continue
            x, mean, std = mean_band(curves)
            ax.plot(x, mean, color=color, label=label, lw=1.5)
            if len(curves) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    axes[0].set_title(f"Training loss (EMA {smoothing})")
    axes[1].set_title("Validation loss (fixed windows)")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (nats per token)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{title}: mean over seeds, band = ±1 std")
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run folders or sweep folders")
    parser.add_argument("--out", default="training_curves.png")
    parser.add_argument("--smoothing", type=float, default=0.9)
    parser.add_argument("--title", default="Training curves")
    args = parser.parse_args(argv)
    print(plot_curves(find_runs(args.paths), args.out, args.smoothing, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
