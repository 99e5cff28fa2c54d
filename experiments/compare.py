"""
One table across several reports (results.json of run_best_advanced_1k.py): the same cells
measured at other widths, datasets or iteration counts, each from its own tuned comparison. A
row per cell (variant / mode), a column per report, labelled by the settings in which the reports
differ. Nothing is recomputed: each figure is the one its own report decided on, and each p is
Holm-corrected within that report's own family (the footer says how large each family was).
The same figures as a curve over one numeric setting (e.g. n_embd): setting_curve.
"""

import json
import os

from configurator import UserError
from experiments.plan import BASELINE, BASELINE_MODE
from experiments.plots import mode_label
from experiments.report import fmt
from training.run_folder import SESSION_KEYS

REPORT_FILE = "results.json"
# differ between runs of one report, or say nothing about the setting
RATE = "learning_rate"
NOT_A_SETTING = SESSION_KEYS | {"seed", RATE}  # (the rate is added back as a setting by setting_of)
BASELINE_CELL = f"{BASELINE}/{BASELINE_MODE}"


def load_report(folder):
    path = os.path.join(folder, REPORT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{folder} has no {REPORT_FILE}: give a report folder of run_best_advanced_1k.py")
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read: {e}")
    if isinstance(report, dict) and report.get("grid") and report.get("comparisons") is None and report.get("runs") == []:
        raise UserError(f"{folder} has no test runs yet, only its learning-rate selection (a sweep under way?): "
                        f"compare it once its first test runs are in")
    if not isinstance(report, dict) or not isinstance(report.get("comparisons"), dict) or not report.get("runs"):
        raise UserError(f"{path} is not a comparison report (no comparisons or runs)")
    if not isinstance(report["runs"], list) or not all(isinstance(r, dict) for r in report["runs"]):
        raise UserError(f"{path} is not a comparison report (its runs are not a list of records)")
    return report


def setting_of(report):
    """The settings a report's baseline runs trained with (the config of its first baseline run).
    The learning rate is one: "tuned" where each cell chose its own (--tune), else the fixed rate."""
    baseline = [r for r in report["runs"] if r.get("variant") == BASELINE and isinstance(r.get("config"), dict)]
    config = baseline[0]["config"] if baseline else {}
    setting = {k: v for k, v in config.items() if k not in NOT_A_SETTING}
    if report.get("tuned") is True:
        setting[RATE] = "tuned"
    elif RATE in config:
        setting[RATE] = config[RATE]
    return setting


def differing_keys(settings):
    """The keys whose values are not the same in every one of settings (dicts), sorted."""
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]


def labels_of(reports, folders):
    """A column label per report: the settings in which the reports differ (key=value), else the
    folder's name."""
    settings = [setting_of(r) for r in reports]
    differing = differing_keys(settings)
    labels = [", ".join(f"{k}={s.get(k)}" for k in differing) for s in settings]
    if not differing or len(set(labels)) < len(labels):
        labels = [os.path.basename(os.path.normpath(f)) for f in folders]
    return labels


def decided(report, cell):
    """(comparison, decision, p) of a cell as its report decided it: under a seed plan (--looks),
    the look that decided it or the last one, with the p of the test that decided (TOST for
    "equivalent within ±m"); else the Holm-corrected t-test over the report's family. None for
    the baseline or a cell the report lacks."""
    sequential = (report.get("sequential") or {}).get("cells", {}).get(cell)
    if sequential is not None and sequential.get("comparison") is None:  # its first look is not complete
        return None
    if sequential is not None:
        c, decision = sequential["comparison"], sequential["decision"]
        if decision == "equivalent":
            return c, f"equivalent within ±{fmt(report['seed_plan']['margin'], 'g')}%", c["p_tost_holm"]
        return c, decision, c["p_holm"]
    group = report["comparisons"].get(cell)
    c = group and group.get("comparison")
    return (c, c["decision"], c["p_holm"]) if c else None


def cell_text(report, cell):
    group = report["comparisons"].get(cell)
    if group is None:
        return "not measured"
    rate = report.get("chosen_rates", {}).get(cell)
    at = f"lr {rate}: " if rate else ""
    if group.get("comparison") is None:  # the baseline
        return f"{at}{group['mean']:.4f} ± {fmt(group.get('std'), '.4f')} (n={len(group['losses'])})"
    outcome = decided(report, cell)
    if outcome is None:
        return f"{at}no look of the seed plan complete yet"
    c, decision, p = outcome
    return (f"{at}{fmt(c['mean_pct'])}% [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}] (n={c['n']}), "
            f"p {fmt(p, '.2g')}, {decision}")


def cell_name(cell):
    variant, mode = cell.split("/")
    return variant if mode == BASELINE_MODE else f"{variant} ({mode_label(mode)})"


def across_reports(folders, cells=None):
    """Markdown lines: the table and its footer. cells: "variant/mode" names to show (default: every
    cell of the first report, then those only later reports have); the baseline comes first."""
    if len(folders) < 2:
        raise UserError("give two or more report folders to compare")
    reports = [load_report(f) for f in folders]
    if cells is None:
        cells = []
        for report in reports:
            cells += [c for c in report["comparisons"] if c not in cells]
    else:
        unknown = [c for c in cells if not any(c in r["comparisons"] for r in reports)]
        if unknown:
            raise UserError(f"no report has {', '.join(unknown)} (cells are variant/mode, e.g. value_centered/momentum)")
    cells = [BASELINE_CELL] + [c for c in cells if c != BASELINE_CELL]
    labels = labels_of(reports, folders)
    lines = ["| cell | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for cell in cells:
        lines.append(f"| {cell_name(cell)} | " + " | ".join(cell_text(r, cell) for r in reports) + " |")
    families = "; ".join(f"{label}: {r.get('family', '?')} comparisons, {r.get('metric', '?')}"
                         for label, r in zip(labels, reports))
    lines += ["", "Baseline: its rate (chosen, where tuned), its test loss (mean ± std, seeds). Other cells: their rate, "
              "improvement over the same-seed baseline (95% CI, seeds), p Holm-corrected within its own "
              f"report's family ({families}), and that report's decision. A report with a seed plan "
              "gives the look that decided the cell (or its last look), and the p of the test that decided "
              "(the equivalence test for \"equivalent\"). Reports: " + ", ".join(f"`{f}`" for f in folders) + "."]
    return lines


def setting_curve(folders, key=None, cells=None):
    """Each cell's improvement against one numeric setting in which the reports differ (key;
    default: the only one): (key, {cell: [(value, mean_pct, ci_low, ci_high, n, decision)]}),
    sorted by value. Nothing is recomputed; a report without the cell leaves no point."""
    if len(folders) < 2:
        raise UserError("give two or more report folders to compare")
    reports = [load_report(f) for f in folders]
    settings = [setting_of(r) for r in reports]
    differing = differing_keys(settings)
    if key is None:
        if len(differing) != 1:
            raise UserError(f"the reports differ in {', '.join(differing) or 'no setting'}: give the one to plot "
                            f"against with --x")
        key = differing[0]
    if len({s.get(RATE) == "tuned" for s in settings}) > 1:
        raise UserError(f"some reports tuned the learning rate and some did not ({RATE}: "
                        f"{', '.join(str(s.get(RATE)) for s in settings)}): one curve would mix them")
    values = [s.get(key) for s in settings]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise UserError(f"--x={key}: not a number in every report ({', '.join(map(str, values))})")
    if len(set(values)) < len(values):
        raise UserError(f"--x={key}: two reports have the same value ({', '.join(map(str, values))})")
    curve = {}
    for value, report in sorted(zip(values, reports), key=lambda pair: pair[0]):
        for cell in report["comparisons"]:
            outcome = None if cells is not None and cell not in cells else decided(report, cell)
            if outcome is None:
                continue
            c, decision, _ = outcome
            if any(c.get(k) is None for k in ("mean_pct", "ci_low", "ci_high")):  # e.g. one seed: no interval
                continue
            curve.setdefault(cell, []).append((value, c["mean_pct"], c["ci_low"], c["ci_high"], c["n"],
                                               decision.split(" within")[0]))
    if cells is not None and set(cells) - set(curve):
        raise UserError(f"no report has {', '.join(sorted(set(cells) - set(curve)))} "
                        f"(cells are variant/mode, e.g. value_centered/momentum)")
    return key, curve
