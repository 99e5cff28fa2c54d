"""
Plots of sweeps and comparisons: improvement bars coloured by the Holm-corrected decision, a
variant-by-mode heatmap, loss curves (mean over seeds with a band), and the learning-rate grid of
a tuned comparison. Modes whose training uses batch statistics are labelled non-causal.
"""

import json
import math
import os
import re
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from configurator import UserError  # noqa: E402
from diagnostics import parse_diag_key  # noqa: E402
from experiments.plan import BASELINE_MODE  # noqa: E402
from experiments.stats import correct_comparisons  # noqa: E402
from model_advanced_centering import BATCH_STATISTICS_MODES  # noqa: E402
from training.metrics import METRICS_FILE, read_metrics  # noqa: E402

DECISION_COLORS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "no detectable difference": "tab:gray", "untested": "lightgray"}
# the diagnostics' sites in the model's order, and what each metric's plot is titled
SITE_ORDER = ("embeddings", "q", "k", "v", "attn_out", "mlp", "residual", "attention")
METRIC_TITLES = {
    "isoscore": "IsoScore (1: isotropic, 0: one direction)",
    "var_top1": "share of the variance in the top principal direction",
    "var_top5": "share of the variance in the top 5 principal directions",
    "cosine": "mean pairwise cosine similarity",
    "max_abs": "largest |activation|",
    "median_abs": "median |activation|",
    "max_median_ratio": "largest / median |activation| (massive activations)",
    "first_mass": "attention weight on the first position (attention sink), mean over heads",
    "first_mass_max_head": "attention weight on the first position, the head with the most",
}


def mode_label(mode):
    """The mode as printed in tables and plots: batch-statistics modes say they are not causal."""
    return f"{mode}, non-causal" if mode in BATCH_STATISTICS_MODES else mode


def label(variant, mode):
    return variant.replace("_centered", "") + ("" if mode == BASELINE_MODE else f" ({mode_label(mode)})")


def fit_texts(fig, margin=4, passes=4):
    """Wrap every title and label that does not fit in the figure: a centred text may extend
    as far as its nearer edge allows on either side (a colour-bar label runs along the height).
    Constrained layout moves things after a wrap, hence a few passes."""
    for _ in range(passes):
        fig.canvas.draw()
        renderer, box = fig.canvas.get_renderer(), fig.bbox
        wrapped = False
        for text in fig.findobj(Text):
            content = text.get_text()
            if not (text.get_visible() and content):
                continue
            e = text.get_window_extent(renderer)
            if abs(text.get_rotation() % 180 - 90) < 1:
                length, low, high, size = e.height, e.y0, e.y1, box.height
            else:
                length, low, high, size = e.width, e.x0, e.x1, box.width
            centre = (low + high) / 2
            room = 2 * min(centre, size - centre) - 2 * margin
            if low < margin or high > size - margin:
                longest = max(len(line) for line in content.split("\n"))
                width = max(8, int(longest * max(room, size / 4) / length) - 1)
                text.set_text("\n".join(textwrap.fill(line, width) for line in content.split("\n")))
                wrapped = True
        if not wrapped:
            return


def save_figure(fig, out_path, dpi=120):
    fit_texts(fig)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


def improvement_bars(groups, out_path, prior=None, title="Improvement over the baseline", wall_time=None,
                     metric="val loss", decisions=None, rule=None):
    """groups: compare_records output. Bars: mean paired improvement with its 95% interval,
    coloured by the Holm-corrected decision (the comparisons shown are the family when no
    decision was taken before), or by decisions ({(variant, mode): a DECISION_COLORS label},
    taken by the rule named in the title, e.g. a seed plan's). prior: {variant: claimed
    improvement %}, drawn as markers; wall_time: {(variant, mode): improvement % at equal wall
    time}, drawn as markers."""
    rows = sorted(((k, g) for k, g in groups.items() if g["comparison"]),
                  key=lambda kg: -kg[1]["comparison"]["mean_pct"])
    if not rows:
        raise ValueError("no variant has runs paired with a baseline run")
    comparisons = {k: g["comparison"] for k, g in rows}
    family = (correct_comparisons(comparisons) if any("decision" not in c for c in comparisons.values())
              else sum(not math.isnan(c["p_value"]) for c in comparisons.values()))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 5.5), constrained_layout=True)
    x = np.arange(len(rows))
    means = [c["mean_pct"] for c in comparisons.values()]
    err = np.array([[m - c["ci_low"] if not math.isnan(c["ci_low"]) else 0 for m, c in zip(means, comparisons.values())],
                    [c["ci_high"] - m if not math.isnan(c["ci_high"]) else 0 for m, c in zip(means, comparisons.values())]])
    shown = [decisions[k] if decisions else c["decision"] for k, c in comparisons.items()]
    ax.bar(x, means, color=[DECISION_COLORS[d] for d in shown], alpha=0.8)
    ax.errorbar(x, means, yerr=err, fmt="none", ecolor="black", capsize=4, lw=1)
    for decision, color in DECISION_COLORS.items():  # the legend names the decisions shown
        if decision in shown:
            ax.bar([0], [0], color=color, alpha=0.8, label=decision)
    if prior:
        claimed = [(i, prior[k[0]]) for i, (k, _) in enumerate(rows) if k[0] in prior]
        if claimed:
            ax.scatter(*zip(*claimed), marker="D", color="tab:orange", zorder=3, label="prior report's claim")
    if wall_time:
        at_wall = [(i, wall_time[k]) for i, (k, _) in enumerate(rows) if not math.isnan(wall_time.get(k, math.nan))]
        if at_wall:
            ax.scatter(*zip(*at_wall), marker="x", color="black", zorder=3, label="at equal wall time")
    ax.legend(loc="best", fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [label(*k) + f"\nn={g['comparison']['n']}" for k, g in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} improvement vs baseline (%)")
    rule = rule or f"paired t-test, Holm-corrected over {family} comparisons, p <= 0.05"
    ax.set_title(f"{title}\nmean of per-seed paired differences, 95% CI; colour: {rule}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_path)


def setting_curve(curve, key, out_path, title=None):
    """curve: experiments.compare.setting_curve's {cell: [(value, mean_pct, ci_low, ci_high, n,
    decision)]}. Each cell's improvement with its 95% interval against the setting; the markers
    are coloured by each report's own decision. A log2 axis when the values are powers of two."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    values = sorted({point[0] for points in curve.values() for point in points})
    shift = (max(values) / min(values)) ** 0.05 if min(values) > 0 else 0  # side by side, not on top
    for i, (cell, points) in enumerate(sorted(curve.items())):
        variant, mode = cell.split("/")
        offset = shift ** (i - (len(curve) - 1) / 2) if shift else 1
        x = [p[0] * offset for p in points]
        y = [p[1] for p in points]
        line = ax.errorbar(x, y, yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]], capsize=3,
                           marker="", label=label(variant, mode))[0]
        for xi, p in zip(x, points):
            ax.plot(xi, p[1], "o", color=DECISION_COLORS.get(p[5], "black"), markersize=9, markeredgewidth=1.2,
                    markeredgecolor=line.get_color())
            ax.annotate(f"n={p[4]}", (xi, p[3]), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    if min(values) > 0 and all(math.log2(v).is_integer() for v in values):
        ax.set_xscale("log", base=2)
    ax.set_xticks(values, [str(v) for v in values])
    ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel("improvement over the same-seed baseline (%, 95% CI)")
    ax.set_title(title or f"Improvement against {key} (dots: each report's decision; "
                 + ", ".join(f"{c} {d}" for d, c in (("better", "green"), ("worse", "red"), ("equivalent", "blue"),
                                                      ("no detectable difference", "grey"))) + ")")
    ax.legend(fontsize=8)
    return save_figure(fig, out_path)


def mode_heatmap(groups, out_path, title="Mean improvement over the baseline (%)"):
    """Variant by mode, the mean improvement; '*' marks a cell whose corrected decision is not
    'no detectable difference' (the cells shown are the family when no decision was taken before)."""
    comparisons = {k: g["comparison"] for k, g in groups.items() if g["comparison"]}
    if any("decision" not in c for c in comparisons.values()):
        correct_comparisons(comparisons)
    variants = sorted({v for v, _ in comparisons})
    modes = sorted({m for _, m in comparisons})
    grid = np.full((len(variants), len(modes)), np.nan)
    for (v, m), c in comparisons.items():
        grid[variants.index(v), modes.index(m)] = c["mean_pct"]
    limit = max(1e-9, np.nanmax(np.abs(grid)))
    fig, ax = plt.subplots(figsize=(max(6.5, 2.5 + 1.8 * len(modes)), 2.5 + 0.5 * len(variants)),
                           constrained_layout=True)
    image = ax.imshow(grid, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    for (v, m), c in comparisons.items():
        mark = "*" if c["decision"] in ("better", "worse") else ""
        ax.text(modes.index(m), variants.index(v), f"{c['mean_pct']:+.2f}{mark}", ha="center", va="center", fontsize=8)
    for i, j in zip(*np.nonzero(np.isnan(grid))):
        ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="gray")
    ax.set_xticks(range(len(modes)), [mode_label(m) for m in modes], fontsize=8)
    ax.set_yticks(range(len(variants)), [v.replace("_centered", "") for v in variants])
    ax.set_xlabel("centering mode")
    ax.set_ylabel("variant")
    fig.colorbar(image, ax=ax, label="improvement (%), positive = lower loss")
    ax.set_title(f"{title}\n* = Holm-corrected p <= 0.05", fontsize=10)
    return save_figure(fig, out_path)


def rate_grid(table, chosen, out_path, title="Learning-rate selection"):
    """table, chosen: experiments.tuning's selection_table and choose_rates. Mean selection
    loss per rate and variant (a point per seed), the chosen rate circled."""
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, (key, rates) in enumerate(sorted(table.items())):
        color = colors[k % 10]
        points = sorted((float(rate), cell) for rate, cell in rates.items())
        ok = [(r, cell["mean"]) for r, cell in points if cell["eligible"]]
        if ok:
            ax.plot(*zip(*ok), "-o", color=color, label=label(*key), ms=4)
        for r, cell in points:
            ax.scatter([r] * len(cell["losses"]), list(cell["losses"].values()), color=color, s=8, alpha=0.4)
        if key in chosen:
            ax.scatter([float(chosen[key])], [rates[chosen[key]]["mean"]], s=160, facecolors="none",
                       edgecolors=color, linewidths=2)
    ax.set_xscale("log")
    grid_rates = sorted({rate for rates in table.values() for rate in rates}, key=float)
    ax.set_xticks([float(r) for r in grid_rates], grid_rates)
    ax.minorticks_off()
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation loss (best checkpoint)")
    ax.set_title(f"{title}\nmean over the selection seeds (dots: each seed); circled: the chosen rate", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_path)


def find_runs(paths):
    """Run folders (with metrics.jsonl) under the given paths: run folders or sweep folders."""
    def has_metrics(folder):  # metrics.jsonl, or gzipped in an archived run
        return any(os.path.isfile(os.path.join(folder, METRICS_FILE + ext)) for ext in ("", ".gz"))

    runs = []
    for path in paths:
        if has_metrics(path):
            runs.append(path)
        elif os.path.isdir(path):
            runs.extend(sorted(os.path.join(path, d) for d in os.listdir(path) if has_metrics(os.path.join(path, d))))
        else:
            raise UserError(f"no such folder: {path}")
    if not runs:
        raise UserError(f"no metrics.jsonl found under {', '.join(paths)}")
    return runs


def group_name(run_dir):
    """Sweep runs name their group in run.json; other runs are grouped by folder name less -s<seed>."""
    meta = os.path.join(run_dir, "run.json")
    if os.path.isfile(meta):
        try:
            with open(meta, encoding="utf-8") as f:
                run = json.load(f)
            if not isinstance(run, dict) or not isinstance(run.get("group"), str):
                raise ValueError("not a run's description: no group")
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"{meta} cannot be read ({e}): repair or remove it (the run is then grouped by "
                            f"its folder's name)") from None
        return run["group"] + (", non-causal" if run.get("mode") in BATCH_STATISTICS_MODES else "")
    return re.sub(r"-s\d+", "", os.path.basename(os.path.normpath(run_dir)))


def load_curves(run_dir, smoothing):
    """{"train": [(iter, smoothed loss)], "val": [(iter, val loss)]}. The training curve is the
    exponential moving average of the logged step losses; a run that logged fewer than two
    steps (a log interval longer than the run) gets the training-split loss of its evaluations."""
    records = read_metrics(run_dir)
    train = [(r["iter"], r["loss"]) for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    if len(train) < 2:
        return {"train": [(r["iter"], r["train_loss"]) for r in evals], "val": [(r["iter"], r["val_loss"]) for r in evals]}
    smoothed, ema = [], None
    for it, loss in train:
        ema = loss if ema is None else smoothing * ema + (1 - smoothing) * loss
        smoothed.append((it, ema))
    return {"train": smoothed, "val": [(r["iter"], r["val_loss"]) for r in evals]}


def mean_band(curves):
    """Mean and std over runs, on the iterations all of them have (or, when they share fewer
    than two, interpolated onto the iterations any of them has)."""
    common = sorted(set.intersection(*(set(dict(c)) for c in curves)))
    if len(common) < 2:  # e.g. runs logged at other iterations: interpolate onto all of them
        common = sorted(set().union(*(dict(c) for c in curves)))
        values = np.array([np.interp(common, *zip(*sorted(dict(c).items()))) for c in curves])
    else:
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
        label_text = f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        for ax, key in zip(axes, ("train", "val")):
            curves = [r[key] for r in runs if r[key]]
            if not curves:
                continue
            x, mean, std = mean_band(curves)
            # markers when there are few points: a one-point line draws nothing
            ax.plot(x, mean, color=color, label=label_text, lw=1.5, marker="o" if len(x) <= 10 else None, ms=3)
            if len(curves) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    axes[0].set_title(f"Training loss (EMA {smoothing} of the logged steps; runs that logged fewer than two: "
                      f"the training-split loss of their evaluations)", fontsize=10)
    axes[1].set_title("Validation loss (fixed windows)")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (nats per token)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{title}: mean over seeds, band = ±1 std")
    return save_figure(fig, out_path)


def improvement_over_training(curves, out_path, title="Improvement over training"):
    """curves: experiments.report.improvement_curves. One line per variant: the mean per-seed
    improvement of the validation loss over the same-seed baseline at each evaluation, with its
    95% interval as a band. A gap that closes is an early speed-up; one that stays, a lasting
    effect."""
    keys = sorted(k for k, points in curves.items() if points)
    if not keys:
        raise ValueError("no variant has evaluations paired with a baseline run")
    modes = sorted({m for _, m in keys})
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 5), constrained_layout=True, squeeze=False)
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    variants = sorted({v for v, _ in keys})
    for ax, mode in zip(axes[0], modes):
        for variant, m in keys:
            if m != mode:
                continue
            it, mean, low, high, n = map(np.array, zip(*curves[(variant, m)]))
            color = colors[variants.index(variant) % 10]
            ax.plot(it, mean, color=color, lw=1.5, marker="o", ms=3, label=f"{variant} (n={n.max()})")
            if np.isfinite(low).any():
                ax.fill_between(it, low, high, color=color, alpha=0.15, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(mode_label(mode), fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("val loss improvement vs same-seed baseline (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean over seeds, band = 95% CI (positive = lower loss)")
    return save_figure(fig, out_path)


# ----------------------------------------------------------------------------------------------
# Diagnostics over training (the diag/ keys of eval records, diagnostics.py)
def diagnostic_curves(records):
    """{(site, layer, metric): {iter: value}} from a run's records (eval records' diag/ keys)."""
    curves = {}
    for record in records:
        if record.get("type") != "eval":
            continue
        for key, value in record.items():
            parsed = parse_diag_key(key)
            if parsed is not None and value is not None:
                curves.setdefault(parsed, {})[record["iter"]] = value
    return curves


def base_metric(metric):
    """The metric's name without its _before/_after side."""
    return metric.rsplit("_", 1)[0] if metric.endswith(("_before", "_after")) else metric


def metric_names(curves):
    """The metrics (without their side) that runs' diagnostic_curves hold, sorted."""
    return sorted({base_metric(metric) for run_curves in curves for _, _, metric in run_curves})


def plot_diagnostics(groups, out_dir, metrics=None):
    """One PNG per metric, out_dir/diag_<metric>.png: a grid of sites (rows) by layers (columns),
    each variant drawn over training as its mean over runs (band: +-1 std where it has several).
    Solid: the representation leaving the site (after centering); dashed, where it differs: before.
    groups: {variant label: [the records of one run, ...]}. metrics: names to draw (default all).
    Returns the paths written."""
    runs = {label: [diagnostic_curves(r) for r in run_records] for label, run_records in sorted(groups.items())}
    present = {key for curves in runs.values() for c in curves for key in c}
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in metric_names(c for curves in runs.values() for c in curves):
        if metrics and name not in metrics:
            continue
        cells = sorted({(site, layer) for site, layer, m in present if base_metric(m) == name},
                       key=lambda sl: (SITE_ORDER.index(sl[0]) if sl[0] in SITE_ORDER else len(SITE_ORDER), sl[1]))
        sites = list(dict.fromkeys(site for site, _ in cells))
        n_layers = 1 + max(layer for _, layer in cells)
        has_sides = any(m == f"{name}_after" for _, _, m in present)
        width = max(7.0, 2.6 * n_layers + 0.8)  # inches; wide enough for the titles
        fig, axes = plt.subplots(len(sites), n_layers, figsize=(width, 2.0 * len(sites) + 1.4),
                                 squeeze=False, sharex=True, constrained_layout=True)
        for (row, site), layer in ((rs, layer) for rs in enumerate(sites) for layer in range(n_layers)):
            ax = axes[row][layer]
            if (site, layer) not in cells:
                ax.remove()  # (hidden, its tick labels would still count as text outside the figure)
                continue
            for k, (label, curves) in enumerate(runs.items()):
                drawn = None
                for side in ("after", "before") if has_sides else (None,):
                    key = (site, layer, name if side is None else f"{name}_{side}")
                    series = [c[key] for c in curves if key in c]
                    if not series:
                        continue
                    x, mean, std = mean_band(series)
                    if side == "before" and drawn is not None and np.allclose(mean, drawn, rtol=1e-4):
                        continue  # not centered here (or a mean-shift invariant metric): before is after
                    drawn = mean
                    ax.plot(x, mean, color=colors[k % 10], lw=1.3, ls="--" if side == "before" else "-",
                            label=None if side == "before" else f"{label} ({len(series)} run{'s' * (len(series) > 1)})")
                    if len(series) > 1:
                        ax.fill_between(x, mean - std, mean + std, color=colors[k % 10], alpha=0.15, lw=0)
            ax.set_title(site if site == "embeddings" else f"{site}, layer {layer}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if layer == 0 or (site, layer - 1) not in cells:
                ax.set_ylabel(name, fontsize=8)
            if row == len(sites) - 1 or (sites[row + 1], layer) not in cells:
                ax.set_xlabel("iteration", fontsize=8)
                ax.tick_params(labelbottom=True)
        handles, labels = axes[0][0].get_legend_handles_labels()
        # about 15 characters per inch at font size 8, plus the line sample
        per_column = 0.07 * max(len(label) for label in labels) + 0.7
        fig.legend(handles, labels, loc="outside lower center", fontsize=8,
                   ncol=max(1, min(len(labels), int(width / per_column))))
        style = "solid: after the site (centered), dashed: before centering where different; " if has_sides else ""
        title = [f"{METRIC_TITLES.get(name, name)} over training", f"{style}mean over seeds, band ±1 std"]
        # wrapped to the width here (about 12 characters per inch at size 10): save_figure would
        # find the shared axes' off-view tick labels "outside" and redraw 4 times
        fig.suptitle("\n".join(textwrap.fill(line, int(width * 12)) for line in title), fontsize=10)
        path = os.path.join(out_dir, f"diag_{name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
