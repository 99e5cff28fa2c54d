"""
Reports of a comparison with the baseline, from sweep result records: the markdown table
(results.md), the data behind it (results.json) and the plots, with every statistic of
experiments.stats, and for a tuned comparison the whole learning-rate grid and the chosen rates.

Numbers of modes that train on batch statistics (simple, adaptive) are labelled non-causal.
"""

import json
import math
import os

import numpy as np
from scipy import stats

from experiments import plots
from files import write_atomically
from experiments.plan import BASELINE_MODE
from experiments.stats import (ALPHA, UNDECIDED, compare_records, correct_comparisons, equal_wall_time, noise_floor,
                               spearman_test)
from model_advanced_centering import PLACEMENTS

METRIC_NAMES = {"test_loss": "test loss", "final_val_loss": "val loss (last evaluation)",
                "best_val_loss": "val loss (best checkpoint)"}
EQUAL_WALL_TIME_METHOD = (
    "Equal wall time: per seed, the variant's step-time overhead r (median step_ms of its run / the "
    "same-seed baseline's) gives it T / r steps in the baseline's wall time for T steps; its validation "
    "loss there is interpolated linearly on its own validation curve (metrics.jsonl) and compared with "
    "the baseline's at T. It is a validation-split estimate (the test split is evaluated once, at the "
    "end); the variant's learning rate at T / r has not decayed as in a run planned for T / r steps "
    "(this favours the baseline when r > 1); a faster variant is not extrapolated past its last "
    "evaluation; step times are measured in these runs, so they carry the machine's other load. It is "
    "an estimate beside the decision, not part of it (its own Holm family is in results.json).")


def fmt(x, spec="+.2f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def wall_time_inputs(records, run_dir_of, read_metrics):
    """{(variant, mode): {seed: {"curve", "iters", "step_ms"}}} for equal_wall_time, from the
    records and their runs' metrics (eval records' validation loss)."""
    out = {}
    for r in records:
        curve = [(m["iter"], m["val_loss"]) for m in read_metrics(run_dir_of(r)) if m.get("type") == "eval"]
        out.setdefault((r["variant"], r["mode"]), {})[r["seed"]] = {
            "curve": curve, "iters": r["iters"], "step_ms": r.get("step_ms")}
    return out


def improvement_curves(records, baseline_key, run_dir_of, read_metrics, confidence=0.95):
    """{(variant, mode): [(iteration, mean %, CI low, CI high, n)]}: at every evaluation the
    relative decrease of the validation loss against the same-seed baseline's at that iteration
    (positive = better), over the seeds both have there. An early speed-up shows as a gap that
    closes; a lasting effect, as one that stays to the end."""
    curves = {}
    for r in records:
        if r["status"] == "ok":
            curves.setdefault((r["variant"], r["mode"]), {})[r["seed"]] = {
                m["iter"]: m["val_loss"] for m in read_metrics(run_dir_of(r)) if m.get("type") == "eval"}
    base = curves.get(baseline_key, {})
    out = {}
    for key, by_seed in curves.items():
        if key == baseline_key:
            continue
        points = []
        for it in sorted(set().union(*by_seed.values())):
            pairs = [(base[s][it], v[it]) for s, v in by_seed.items() if it in v and it in base.get(s, {})]
            if not pairs:
                continue
            pct = np.array([100.0 * (b - v) / b for b, v in pairs])
            half = (stats.t.ppf(0.5 + confidence / 2, len(pct) - 1) * pct.std(ddof=1) / math.sqrt(len(pct))
                    if len(pct) > 1 else math.nan)
            points.append((it, float(pct.mean()), float(pct.mean() - half), float(pct.mean() + half), len(pct)))
        out[key] = points
    return out


DIAGNOSTIC_METRICS = ("isoscore", "var_top1", "cosine")  # isotropy, its top direction, and the mean cosine


SHARED_SITE = "residual"  # every variant has a residual stream: one column comparable across them


def diagnostic_effects(records, baseline_key, run_dir_of, read_metrics, metrics=DIAGNOSTIC_METRICS):
    """At the last evaluation of each run, each metric after centering (the representation the
    model goes on with), averaged over layers, at two places: the sites the variant centers
    ("own"; for the baseline the same sites, uncentered) and the residual stream. Per variant, its
    mean difference from the same-seed baseline: {(variant, mode): {(place, metric): difference}}."""
    def final_values(run_dir, sites):
        evals = [m for m in read_metrics(run_dir) if m.get("type") == "eval"]
        values = {}
        for k, v in (evals[-1] if evals else {}).items():
            parts = k.split("/")  # diag/<site>/<layer>/<metric>_after
            if len(parts) == 4 and parts[0] == "diag" and parts[3].endswith("_after") and v is not None:
                metric, site = parts[3][:-len("_after")], parts[1]
                if metric in metrics:
                    for place in (["own"] if site in sites else []) + ([SHARED_SITE] if site == SHARED_SITE else []):
                        values.setdefault((place, metric), []).append(v)
        return {k: float(np.mean(v)) for k, v in values.items()}

    ok = [r for r in records if r["status"] == "ok"]
    base = {r["seed"]: r for r in ok if (r["variant"], r["mode"]) == baseline_key}
    effects = {}
    for r in ok:
        key = (r["variant"], r["mode"])
        if key == baseline_key or r["seed"] not in base:
            continue
        sites = {site for flag, sites in PLACEMENTS.items() if r["config"].get(flag) for site in sites}
        mine, theirs = final_values(run_dir_of(r), sites), final_values(run_dir_of(base[r["seed"]]), sites)
        for name in sorted(set(mine) & set(theirs)):  # sorted: the same results.json on every regeneration
            effects.setdefault(key, {}).setdefault(name, []).append(mine[name] - theirs[name])
    return {k: {name: float(np.mean(d)) for name, d in e.items()} for k, e in effects.items()}


def diagnostic_correlations(effects, improvements):
    """{(site, metric): (Spearman rho, permutation p, n)} over the (variant, mode) rows with both
    a diagnostic difference (diagnostic_effects) and a mean improvement ({(variant, mode): %});
    4 rows at least."""
    out = {}
    for name in sorted({n for e in effects.values() for n in e}):
        keys = [k for k in effects if name in effects[k] and k in improvements]
        if len(keys) >= 4:
            rho, p, _ = spearman_test([effects[k][name] for k in keys], [improvements[k] for k in keys])
            out[name] = (rho, p, len(keys))
    return out


def diagnostics_table(effects, improvements, correlations, names=None):
    """Markdown lines: per variant its improvement and the change of each metric at each site
    (mean over layers, after centering, last evaluation, minus the same-seed baseline's), then
    the rank correlation of each column with the improvement."""
    columns = sorted({n for e in effects.values() for n in e})
    if not columns:
        return []
    lines = ["| method | mode | improvement (%) | " + " | ".join(
        f"Δ {m} ({'centered sites' if place == 'own' else place})" for place, m in columns) + " |",
             "|" + "---|" * (len(columns) + 3)]
    for key in sorted(effects, key=lambda k: -improvements.get(k, -math.inf)):
        variant, mode = key
        lines.append(f"| {(names or {}).get(variant, variant)} | {plots.mode_label(mode)} | "
                     f"{fmt(improvements.get(key, math.nan))} | "
                     + " | ".join(fmt(effects[key].get(c, math.nan), "+.3f") for c in columns) + " |")
    lines.append("| Spearman ρ with the improvement (p) | | | " + " | ".join(
        f"{correlations[c][0]:+.2f} ({correlations[c][1]:.2g})" if c in correlations else "n/a" for c in columns) + " |")
    return lines


def analyse(records, iters, metric, baseline_key, run_dir_of=None, read_metrics=None):
    """Every (variant, mode) at `iters` against the baseline on `metric`, with the Holm
    correction over all of them, the exact tests, the noise floor and (given run_dir_of and
    read_metrics) the effect at equal wall time. Returns a dict of plain data."""
    records = [r for r in records if r["iters"] == iters]
    groups = compare_records(records, iters, metric=metric)
    if baseline_key not in groups:
        return None
    comparisons = {k: g["comparison"] for k, g in groups.items() if g["comparison"]}
    family = correct_comparisons(comparisons)
    wall = {}
    if run_dir_of is not None:
        ok = [r for r in records if r["status"] == "ok"]
        inputs = wall_time_inputs(ok, run_dir_of, read_metrics)
        wall = {k: equal_wall_time(inputs[baseline_key], inputs[k]) for k in comparisons if k in inputs}
        correct_comparisons(wall)  # a family of its own: a secondary estimate, not a second vote
    return {"groups": groups, "family": family, "wall_time": wall,
            "noise_floor": noise_floor(groups[baseline_key]["losses"])}


def by_improvement(key_group):
    """Sort key of a (key, group) item: largest mean paired improvement first, the baseline at 0,
    a comparison without a mean (no shared ok seed) last."""
    c = key_group[1]["comparison"]
    mean = c["mean_pct"] if c else 0.0
    return (math.isnan(mean), -mean)


def comparison_table(analysis, metric, names=None, rates=None, prior=None):
    """Markdown lines: one row per variant, largest mean paired improvement first, the baseline
    at 0 (ranking by mean loss would mix seed sets when some rows have more seeds). names:
    {variant: display name}; rates: {(variant, mode): chosen rate}; prior: {variant: claimed
    improvement %}."""
    groups, wall = analysis["groups"], analysis["wall_time"]
    head = ["rank", "method", "mode"] + (["lr"] if rates else []) + [
        f"{METRIC_NAMES.get(metric, metric)} (mean ± std)", "improvement vs baseline (95% CI)",
        "detectable at 80% power", "p (paired t)", "p (Holm)", "p (sign, exact)", "p (permutation)", "decision"]
    head += ["val improvement at equal wall time (step-time overhead)"] if wall else []
    head += ["prior report's claim"] if prior else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, (key, g) in enumerate(sorted(groups.items(), key=by_improvement), 1):
        variant, mode = key
        c = g["comparison"]
        cells = [str(rank), (names or {}).get(variant, variant), "-" if mode == BASELINE_MODE else plots.mode_label(mode)]
        cells += [rates.get(key, "")] if rates else []
        cells.append(f"{g['mean']:.4f} ± {fmt(g['std'], '.4f')} (n={len(g['losses'])})")
        if c is None:
            cells += ["0 (reference)", "", "", "", "", "", "baseline"]
        else:
            cells += [f"{fmt(c['mean_pct'])}% [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]", f"±{fmt(c['mde_pct'], '.2f')}%",
                      fmt(c["p_value"], ".3g"), fmt(c["p_holm"], ".3g"), fmt(c["p_sign"], ".3g"),
                      fmt(c["p_permutation"], ".3g") + ("" if c["permutation_exact"] else " (MC)"), c["decision"]]
        if wall:
            w = wall.get(key)
            cells.append("" if w is None else f"{fmt(w['mean_pct'])}% (x{fmt(w['overhead'], '.3f')}; "
                         f"{fmt(w['equal_steps_pct'])}% at equal steps, same curves)")
        if prior:
            cells.append(f"{prior[variant]:+g}%" if variant in prior else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notes(analysis, metric, names=None, decision=None):
    """The lines under the table: the decision rule (decision: the line of another rule than the
    fixed-design Holm one), the exact tests' limits, the noise floor, a robust view of each row
    (median per-seed improvement, seeds ahead), the equal-wall-time method."""
    comparisons = [g["comparison"] for g in analysis["groups"].values() if g["comparison"]]
    floor = analysis["noise_floor"]
    out = [decision or (
        f"Decision: paired t-test on the per-seed improvement, Holm-Bonferroni corrected over the "
        f"{analysis['family']} comparisons of this table, p (Holm) <= {ALPHA}; the raw p is beside it; "
        f"\"{UNDECIDED}\" otherwise (no margin was declared, so no equivalence is tested). \"Detectable\" is the "
        f"effect the strictest Holm level finds with 80% power given the spread of the row's seeds. "
        f"Sign and permutation tests are exact (two-sided; 'MC': Monte Carlo for n > 16).")]
    small = sorted({c["exact_note"] for c in comparisons if c["exact_note"]})
    out += [f"Note: {n}." for n in small]
    out.append(f"Noise floor: the baseline's {METRIC_NAMES.get(metric, metric)} varies with the seed alone by "
               f"std {fmt(floor['std'], '.4f')} ({fmt(floor['std_pct'], '.2f')}% of the mean, n={floor['n']}); "
               f"baseline against baseline (A/A over {floor['aa_pairs']} pair(s) of seeds, unpaired): relative "
               f"differences of std {fmt(floor['aa_std_pct'], '.2f')}%, at most {fmt(floor['aa_max_pct'], '.2f')}%.")
    robust = [f"{(names or {}).get(variant, variant)} ({plots.mode_label(mode)}) {fmt(c['median_pct'])}%, "
              f"{c['seeds_ahead']}/{c['n']}"
              for (variant, mode), g in sorted(analysis["groups"].items(), key=by_improvement)
              if (c := g["comparison"]) and c["n"]]
    if robust:
        out.append("Robust view, beside the decision and not part of it (one bad seed moves a mean, not these): "
                   "median per-seed improvement, and the seeds on which the variant is ahead: " + "; ".join(robust) + ".")
    if analysis["wall_time"]:
        out.append(EQUAL_WALL_TIME_METHOD)
    if any(m in plots.BATCH_STATISTICS_MODES for _, m in analysis["groups"]):
        out.append("Non-causal: `simple` centers with the batch mean in training and in evaluation, `adaptive` "
                   "in training only (it evaluates with the running mean), so in their training forward a "
                   "position sees later tokens. `adaptive`'s loss is that of a causal model trained non-causally; "
                   "`simple`'s is not a causal model's loss at all.")
    return out


DECISION_WORDS = {"better": "better", "worse": "worse", "undecided": UNDECIDED}


def decision_text(entry, margin):
    """A cell's decision in words: "equivalent within +-m", "no detectable difference" while
    undecided (never "level"), with the seeds it was decided on."""
    if entry["decision"] == "equivalent":
        word = f"equivalent within ±{margin:g}%"
    else:
        word = DECISION_WORDS[entry["decision"]]
    return word + (f" (at {entry['decided_at']} seeds)" if entry["decided_at"] else "")


def sequential_table(decided, plan, analysis, names=None, rates=None, prior=None):
    """Markdown lines of the seed plan's decisions (experiments.seed_plan.decide, with
    add_detectable_effects): per cell, its seeds, improvement with the 95% interval, the effect
    its look detects with 80% power, the Holm-corrected p of the difference and of the
    equivalence tests against that look's level, and the decision. Sorted as comparison_table."""
    head = ["rank", "method", "mode", "lr", "seeds", "improvement vs baseline (95% CI)",
            "detectable at 80% power", "p (difference, Holm)", "p (equivalence ±m, Holm)", "level of the look",
            "decision"] + (["prior report's claim"] if prior else [])
    lines = [f"Seed plan, declared before the runs: {plan.describe()}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [(key, entry) for key, entry in decided["cells"].items() if entry["comparison"]]
    rows.sort(key=lambda item: (math.isnan(item[1]["comparison"]["mean_pct"]), -item[1]["comparison"]["mean_pct"]))
    for rank, (key, entry) in enumerate(rows, 1):
        variant, mode = key
        c = entry["comparison"]
        cells = [str(rank), (names or {}).get(variant, variant), plots.mode_label(mode), (rates or {}).get(key, ""),
                 str(c["n"]), f"{fmt(c['mean_pct'])}% [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]",
                 f"±{fmt(c['mde_pct'], '.2f')}%", fmt(c["p_holm"], ".3g"), fmt(c["p_tost_holm"], ".3g"),
                 fmt(c["level"], ".3g"), decision_text(entry, plan.margin)]
        if prior:
            cells.append(f"{prior[variant]:+g}%" if variant in prior else "")
        lines.append("| " + " | ".join(cells) + " |")
    waiting = [key for key, entry in decided["cells"].items() if not entry["comparison"]]
    if waiting:
        lines += ["", "No look complete yet for: " + ", ".join(f"{(names or {}).get(v, v)} / {m}" for v, m in waiting)]
    return lines


def sequential_note(decided, plan):
    """The decision rule of a seed plan, and where it stands, in the lines under its table."""
    state = ("every cell is decided" if decided["next"] is None and all(
        e["decided_at"] for e in decided["cells"].values())
        else "the last look is done" if decided["next"] is None
        else f"{decided['look'] + 1} of {len(plan.looks)} looks done; next: seeds up to {decided['next'][0]} "
             f"for {len(decided['next'][1])} undecided cells and the baseline")
    return (f"Decision (seed plan, declared before the runs): at each look the cells not yet decided get "
            f"seeds up to the look's count; the paired t-tests (better/worse) and the two one-sided tests of "
            f"equivalence within ±{plan.margin:g}% (TOST) are each Holm-corrected over the "
            f"{len(decided['cells'])} cells at the look's share of alpha {plan.alpha:g}; a decided cell stops. "
            f"Each family's error rate over all looks is at most {plan.alpha:g} (experiments/seed_plan.py, "
            f"checked by simulation in tests/test_seed_plan.py). \"Detectable\" is the effect that its look's "
            f"strictest Holm level finds with 80% power given the spread of its seeds. Now: {state}.")


def grid_table(table, chosen, unfinished=()):
    """Markdown lines of the whole learning-rate grid: mean selection loss per variant and rate,
    the chosen rate in bold; a rate where a selection seed did not finish ok says so, and a
    variant in unfinished (its grid not complete yet) has no rate chosen yet."""
    rates = sorted({rate for cells in table.values() for rate in cells}, key=float)
    lines = ["| method | mode | " + " | ".join(f"lr {r}" for r in rates) + " | chosen |",
             "|" + "---|" * (len(rates) + 3)]
    for key in sorted(table):
        cells = []
        for rate in rates:
            cell = table[key].get(rate)
            if cell is None:
                cells.append("not run")
                continue
            bad = sorted({s for s in cell["statuses"].values() if s != "ok"})
            text = f"{fmt(cell['mean'], '.4f')} (n={len(cell['losses'])})" + (f" {', '.join(bad)}" if bad else "")
            cells.append(f"**{text}**" if chosen.get(key) == rate else text)
        variant, mode = key
        lines.append(f"| {variant} | {'-' if mode == BASELINE_MODE else plots.mode_label(mode)} | "
                     + " | ".join(cells) + f" | {chosen.get(key, 'grid unfinished' if key in unfinished else 'none eligible')} |")
    return lines


def runs_trained_again(report_dir, records, metric):
    """The runs of records whose metric differs from the one an earlier report in report_dir gave:
    {run_id: {"reported": loss then, "now": loss now}}. Such a run was trained again (lost before
    it was archived, or its folder removed), usually on another CPU, which rounds differently. The
    list is kept in results.json from report to report, so that a look re-analysed on retrained
    runs says so for good, also after the next report replaces the earlier losses."""
    try:
        with open(os.path.join(report_dir, "results.json"), encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        return {}  # no earlier report here (check_report_dir refused one of another experiment)

    def loss(value):  # NaN is written as null
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    retrained = {k: dict(v) for k, v in (old.get("retrained") or {}).items()}
    before = {r["run_id"]: loss(r.get(metric)) for r in old.get("runs") or [] if isinstance(r, dict) and "run_id" in r}
    for r in records:
        now = loss(r.get(metric))
        if r["run_id"] in retrained:
            retrained[r["run_id"]]["now"] = now
        elif r["run_id"] in before and before[r["run_id"]] != now:
            retrained[r["run_id"]] = {"reported": before[r["run_id"]], "now": now}
    return retrained


def retrained_section(retrained, metric):
    """The report's lines on the runs trained again since an earlier report (runs_trained_again)."""
    name = METRIC_NAMES.get(metric, metric)
    return ["## Runs trained again",
            "",
            f"{len(retrained)} runs have another {name} than in an earlier report written in this folder: they were "
            f"trained again (lost before they were archived, or their folders removed), usually on another CPU, "
            f"which rounds differently, so they differ by seed noise. Every decision here (each look of a seed "
            f"plan) is made on the losses now; the earlier report's were made on the losses then.",
            "",
            "| run | " + name + " then | now |",
            "|---|---|---|"] + [f"| {run_id} | {fmt(v['reported'], '.4f')} | {fmt(v['now'], '.4f')} |"
                                for run_id, v in sorted(retrained.items())]


def write_report(report_dir, title, sections, data, figures):
    """results.md (title, then the sections: lists of lines) and results.json (data); figures
    are listed in results.md. Returns the markdown text."""
    os.makedirs(report_dir, exist_ok=True)
    text = "\n".join([f"# {title}", ""] + [line for section in sections for line in section + [""]]
                     + [f"![{os.path.splitext(f)[0]}]({f})" for f in figures]) + "\n"
    # each replaced whole: a kill mid-write leaves the previous report, never half of one
    body = json.dumps(jsonable(data), indent=1).encode("utf-8")
    write_atomically(os.path.join(report_dir, "results.json"), lambda f: f.write(body))
    write_atomically(os.path.join(report_dir, "results.md"), lambda f: f.write(text.encode("utf-8")))
    return text


def jsonable(value):
    """Tuple keys ((variant, mode)) as "variant/mode" strings, NaN as null: plain JSON."""
    if isinstance(value, dict):
        return {"/".join(map(str, k)) if isinstance(k, tuple) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def report_plots(report_dir, analysis, title, metric, run_dirs, prior=None, table=None, chosen=None, plan=None,
                 decided=None):
    """The report's figures, written into report_dir; returns their file names. plan, decided: a
    seed plan and its decisions, which then colour the improvement bars."""
    figures = []
    wall = {k: w["mean_pct"] for k, w in analysis["wall_time"].items()}
    groups = analysis["groups"]
    if any(g["comparison"] for g in groups.values()):
        decisions = rule = None
        if decided:
            decisions = {k: "equivalent" if e["decision"] == "equivalent" else DECISION_WORDS[e["decision"]]
                         for k, e in decided["cells"].items()}
            decisions = {k: decisions.get(k, UNDECIDED) for k, g in groups.items() if g["comparison"]}
            rule = f"seed plan, equivalence within ±{plan.margin:g}%"
        plots.improvement_bars(groups, os.path.join(report_dir, "improvement.png"), prior=prior, title=title,
                               wall_time=wall, metric=METRIC_NAMES.get(metric, metric), decisions=decisions, rule=rule)
        figures.append("improvement.png")
    if len({m for _, m in groups if m != BASELINE_MODE}) > 1:
        plots.mode_heatmap(groups, os.path.join(report_dir, "mode_heatmap.png"),
                           title=f"Mean improvement over the baseline (%), {METRIC_NAMES.get(metric, metric)}")
        figures.append("mode_heatmap.png")
    if table:
        plots.rate_grid(table, chosen, os.path.join(report_dir, "rate_grid.png"))
        figures.append("rate_grid.png")
    if run_dirs:
        plots.plot_curves(run_dirs, os.path.join(report_dir, "val_curves.png"), title=title)
        figures.append("val_curves.png")
    return figures

