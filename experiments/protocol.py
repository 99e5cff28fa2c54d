"""
The tuning protocol of scripts/run_best_advanced_1k.py: select -> test -> decide.

    phase 1 (select)  every variant, the baseline included, at each rate of the grid on the
                      selection seeds 1001, 1002, ...; its rate: the lowest mean validation loss
    phase 2 (test)    each variant at its chosen rate on fresh test seeds 1..N, compared with the
                      same-seed baseline on the held-out test split
    decide            with a seed plan (--looks): look by look, the undecided cells and the baseline
                      get more seeds (experiments/seed_plan.py); without one, the test seeds are
                      1..--seeds, fixed before the runs

The older extension rule (a variant whose Holm p lay in EXTEND_BAND got more seeds, which makes
that p optimistic) is retired: no call trains by it. --extend_to with --report_only reads the
extra seeds back, so that the second edition's reports, made under it, still regenerate.

The report (results.md, results.json, plots) is built here too, from the runs the sweep folder
holds. README, "Experiment protocol", explains the protocol for readers.
"""


import argparse
import json
import os
import sys
import time

from configurator import ConfigError, UserError, repeated
from experiments import plots, report
from experiments.cli import name_not_ok, print_plan, sweep_options
from experiments.plan import BASELINE, BASELINE_MODE, Run, check_plan, check_sweep_name, plan_runs
from experiments.records import FINAL_STATUSES
from experiments.seed_plan import SeedPlan, add_detectable_effects, decide
from experiments.sweep import run_sweep, setting_differences
from experiments.tuning import (RATE_KEY, TEST_METRIC, at_chosen_rates, borderline, check_disjoint, choose_rates,
                                edge_rates, selection_table)
from files import check_folder_can_be_made
from machine import machine_description
from training.metrics import read_metrics

# (config, name in the prior report, its claimed improvement in %)
METHODS = [
    ("embeddings_centered", "Embeddings centered", 2.26),
    ("qk_value_centered", "QK + Value", 1.89),
    ("full_attention_centered", "Full attention", 1.89),
    ("value_centered", "Value only", 1.13),
    ("baseline", "Baseline", 0.0),
]
OTHER_METHODS = [  # measured by the prior report too, not in its table: not run unless asked (--variants)
    ("mlp_centered", "MLP", -0.57),
    ("residual_centered", "Residual stream", -11.73),
    ("aggressive_centered", "Aggressive (every placement)", -88.0),  # "catastrophic, -88%"
]
SELECTION_SEED_BASE = 1000  # selection seeds are 1001, 1002, ...: never a test seed 1..N
DEFAULT_RATES = ["1e-3", "2e-3", "4e-3", "8e-3", "1.6e-2"]
EXTEND_BAND = (0.01, 0.1)  # Holm p of a cell that got extra test seeds under the retired rule (--extend_to)


def seed_plan(args):
    """The SeedPlan of --looks, --spend and --margin (ConfigError for a bad one), or None."""
    if args.looks is None:
        if args.spend is not None or args.margin is not None:
            raise ConfigError("--spend and --margin go with --looks")
        return None
    if not args.tune:
        raise ConfigError("--looks goes with --tune=True")
    if args.margin is None:
        raise ConfigError("--looks needs --margin (the equivalence margin, percent of the test loss), declared before the runs")
    if any(o in args.argv_keys for o in ("seeds", "extend_to")):
        raise ConfigError("--looks replaces --seeds and --extend_to: give the seeds of each look")
    if args.spend is None:
        return SeedPlan.proportional(tuple(args.looks), args.margin)
    return SeedPlan(tuple(args.looks), tuple(args.spend), args.margin)


def cells_of(args):
    """--cells as (variants, modes, [(variant, mode)]); --variants and --modes do not go with it."""
    if args.variants is not None or args.modes is not None:
        raise ConfigError("--cells replaces --variants and --modes: give one or the other")
    if not args.tune:
        raise ConfigError("--cells goes with --tune=True")
    cells = []
    for text in args.cells:
        variant, slash, mode = text.partition("/")
        if not slash or not variant or not mode or variant == BASELINE:
            raise ConfigError(f"--cells takes variant/mode pairs of centered variants, got '{text}'")
        cells.append((variant, mode))
    if not cells:
        raise ConfigError("--cells is empty")
    return sorted({v for v, _ in cells}), sorted({m for _, m in cells}), cells


def rate_list(text):
    """An argparse type: --rates as the texts typed (run ids keep them), each a positive number,
    none twice (1e-3 and 0.001 are the same rate: one grid point trained twice)."""
    rates = [r for r in text.split(",") if r]
    if not rates:
        raise ValueError(text)
    for r in rates:
        if float(r) <= 0:
            raise ValueError(r)
    twice = repeated(rates, float)
    if twice:
        raise argparse.ArgumentTypeError(twice)
    return rates


def sweep_name(args):
    if args.name is not None:
        return check_sweep_name(args.name)
    name = ("best_advanced_1k" + ("-tuned" if args.tune else "")
            + ("" if args.dataset == "shakespeare_char" else f"-{args.dataset}"))
    try:
        return check_sweep_name(name)
    except ConfigError:  # the folder would land outside --out_root, or have an awkward name
        raise ConfigError(f"--dataset={args.dataset} makes no sweep folder name ('{name}'): name the sweep with "
                          f"--name=NAME") from None


def plan_and_check(args, overrides, variants):
    """The runs of the command (for --tune, phase 1's grid), checked before anything runs (a run
    the folder already holds with other settings is refused by run_sweep), and their resolved
    training configs."""
    if args.tune:
        check_disjoint(args.selection_seeds, args.test_seeds)
        runs = plan_runs(variants, args.modes, args.selection_seeds, [args.iters], {RATE_KEY: args.rates})
        if args.cells:  # the cells asked for, not every variant x mode
            runs = [r for r in runs if r.variant == BASELINE or (r.variant, r.mode) in args.cells]
    else:
        runs = plan_runs(variants, args.modes, args.test_seeds, [args.iters])
    return runs, check_plan(runs, variants, args.modes, overrides, args.config_dir, starts=not args.report_only,
                            device=args.executor != "slurm")


def tuned_phases(args, name, overrides, runs, log):
    """Phase 1 (the grid on the selection seeds), the choice, phase 2 (the test seeds at the
    chosen rates: by the seed plan, or fixed), then (--extend_to, report only) the extra test seeds
    that the retired extension rule gave the borderline variants. Returns a dict: records
    (the test runs at the chosen rates), table, chosen, selection_not_ok, unrated (no eligible
    rate), pending (variants whose grid or test seeds are not complete; a failed selection run
    keeps its variant's grid incomplete),
    extended ({(variant, mode): Holm p at --seeds}); or None while runs are still queued (Slurm
    without --wait)."""
    options = {**sweep_options(args, trains=not args.report_only), "execute": not args.report_only}

    def sweep(planned, execute=options["execute"]):
        return run_sweep(name, planned, args.out_root, overrides=overrides, **{**options, "execute": execute})

    def missing(planned, recorded):
        # a failed run is done for this call, which ran it; for --report_only it is not: the
        # next call runs it again
        return {(r.variant, r.mode) for r in planned if r.run_id not in recorded
                or (args.report_only and recorded[r.run_id]["status"] not in FINAL_STATUSES)}

    selected = selection_phase(args, name, runs, sweep, missing, log)
    if selected is None:
        return None
    result, grid_pending = selected
    chosen = result["chosen"]

    def test_runs(keys, seeds):
        return [Run(v, m, seed, args.iters, ((RATE_KEY, chosen[(v, m)]),)) for v, m in sorted(keys) for seed in seeds]

    if args.plan:
        return sequential_phase(args, result, grid_pending, sweep, test_runs, log)
    phase2_runs = test_runs(chosen, args.test_seeds)
    phase2 = sweep(phase2_runs)
    if len(phase2) < len(phase2_runs) and not args.report_only:
        log(f"phase 2: {len(phase2_runs) - len(phase2)} runs still queued or running; run the same command again")
        return None
    result["recorded"] += phase2.values()
    pending = grid_pending | missing(phase2_runs, phase2)
    if (BASELINE, BASELINE_MODE) in pending:  # nothing to compare with yet
        return {**result, "records": [], "pending": sorted(pending)}
    complete = {k: rate for k, rate in chosen.items() if k not in pending}
    records = at_chosen_rates(phase2.values(), complete, args.test_seeds)
    if args.extend_to > args.seeds and not pending:
        records += extension_read_back(args, result, records, sweep, missing, test_runs)
    return {**result, "records": records, "pending": sorted(pending)}


def selection_phase(args, name, runs, sweep, missing, log):
    """Phase 1: the rate grid on the selection seeds, and the rate chosen for each variant whose
    grid is complete. Returns (tuned_phases' dict so far, the variants whose grid is not), or
    None while runs are still queued."""
    phase1 = sweep(runs)
    if len(phase1) < len(runs) and not args.report_only:
        log(f"phase 1: {len(runs) - len(phase1)} runs still queued or running; run the same command again")
        return None
    table = selection_table(phase1.values(), args.selection_seeds)
    # a failed selection run (a crash, not a divergence) is run again by the next call: its
    # variant's rate waits for it, rather than being chosen from the rest of the grid now
    failed = [r for r in runs if r.run_id in phase1 and phase1[r.run_id]["status"] not in FINAL_STATUSES]
    grid_pending = missing(runs, phase1) | {(r.variant, r.mode) for r in failed}
    if failed and not args.report_only:
        log(f"phase 1: {len(failed)} selection runs failed ({', '.join(r.run_id for r in failed[:3])}"
            f"{', ...' if len(failed) > 3 else ''}): their variants get a rate and test runs once the "
            f"same command has run them again")
    chosen = {k: rate for k, rate in choose_rates(table).items() if k not in grid_pending}
    unrated = sorted({(r.variant, r.mode) for r in runs} - set(chosen) - grid_pending)
    if (BASELINE, BASELINE_MODE) in unrated:
        raise UserError("no learning rate of the grid finished ok on every selection seed for the baseline; "
                        f"see the train.log files in {os.path.join(os.path.abspath(args.out_root), name)}")
    if unrated:
        print(f"warning: no learning rate of the grid finished ok on every selection seed for "
              f"{', '.join(f'{v}/{m}' for v, m in unrated)}: left out of the test comparison", file=sys.stderr)
    log("chosen rates (lowest mean validation loss on the selection seeds): "
        + (", ".join(f"{v}/{m} {r}" for (v, m), r in sorted(chosen.items())) or "none yet"))
    result = {"table": table, "chosen": chosen, "unrated": unrated, "extended": {},
              "selection_not_ok": [r for r in phase1.values() if r["status"] != "ok"],
              "recorded": list(phase1.values())}  # every run of the command so far
    return result, grid_pending


def extension_read_back(args, result, records, sweep, missing, test_runs):
    """The retired extension rule, read back (run() allows --extend_to with --report_only only): a
    borderline variant and the baseline, which it is paired with, got more seeds; decided on the
    whole family only, once every test run is there. A failed test run keeps it undecided.
    Returns the extra records (result notes extended, extension_pending or extension_undecided)."""
    unfinished = [r["run_id"] for r in records if r["status"] not in FINAL_STATUSES]
    if unfinished:
        result["extension_undecided"] = unfinished
        return []
    analysis = report.analyse(records, args.iters, TEST_METRIC, (BASELINE, BASELINE_MODE))
    if analysis is None:  # without an ok baseline run: nothing to compare with
        return []
    close = borderline(analysis["groups"], EXTEND_BAND)
    if not close:
        return []
    extra_seeds = list(range(args.seeds + 1, args.extend_to + 1))
    phase3_runs = test_runs([*close, (BASELINE, BASELINE_MODE)], extra_seeds)
    phase3 = sweep(phase3_runs, execute=False)  # read, never trained
    result["recorded"] += phase3.values()
    if missing(phase3_runs, phase3):
        result["extension_pending"] = sorted(close)
        return []
    result["extended"] = close
    return at_chosen_rates(phase3.values(), result["chosen"], extra_seeds)


def sequential_phase(args, result, grid_pending, sweep, test_runs, log):
    """The test phase under the seed plan (--looks): every cell and the baseline on the first
    look's seeds; then, look by look, the cells still undecided and the baseline on the next
    look's seeds, until every cell is decided or the last look is done (experiments/seed_plan.py).
    Returns tuned_phases' dict with "sequential" (decide's result), or None while runs are queued."""
    baseline = (BASELINE, BASELINE_MODE)
    chosen = result["chosen"]
    cells = [k for k in sorted(chosen) if k != baseline]
    pending = sorted(grid_pending)
    if baseline in grid_pending or not cells:
        return {**result, "records": [], "pending": pending}
    seeds_of = {key: args.plan.looks[0] for key in [baseline, *cells]}
    while True:
        # by seed, the baseline first: a seed's pair trains side by side, on one machine, even when
        # a look spans two sessions (two CPUs round differently, and the runs drift apart)
        planned = sorted((run for key, n in seeds_of.items() for run in test_runs([key], range(1, n + 1))),
                         key=lambda run: (run.seed, run.variant != BASELINE, run.variant, run.mode))
        recorded = sweep(planned)
        if len(recorded) < len(planned) and not args.report_only:
            log(f"test phase: {len(planned) - len(recorded)} runs still queued or running; run the same command again")
            return None
        records = at_chosen_rates(recorded.values(), chosen, range(1, args.plan.looks[-1] + 1))
        losses = {key: {} for key in [baseline, *cells]}
        for r in records:
            if r["status"] == "ok":
                losses[(r["variant"], r["mode"])][r["seed"]] = r[TEST_METRIC]
        decided = decide(args.plan, losses[baseline], {key: losses[key] for key in cells})
        wanted = decided["next"]
        if wanted is None or all(seeds_of[key] >= wanted[0] for key in [baseline, *wanted[1]]):
            break  # decided, or the look waits for runs that did not finish ok (named in the report)
        log(f"look at {args.plan.looks[decided['look']]} seeds done; {len(wanted[1])} cells undecided: "
            f"seeds up to {wanted[0]} for them and the baseline")
        for key in [baseline, *wanted[1]]:
            seeds_of[key] = wanted[0]
    add_detectable_effects(decided, len(cells))
    result["recorded"] += recorded.values()
    return {**result, "records": records, "pending": pending, "sequential": decided}


def build_report(args, name, phases, wall):
    """Write results.md, results.json and the plots; returns (markdown text, report folder,
    figures). phases: tuned_phases' dict (without --tune: records alone). With --report_only a
    report of what is there: the grid so far, and the comparison of the complete variants."""
    sweep_dir = os.path.join(os.path.abspath(args.out_root), name)
    records, table, chosen = phases["records"], phases.get("table"), phases.get("chosen")
    pending = phases.get("pending", [])
    names = {v: n for v, n, _ in METHODS + OTHER_METHODS}
    prior = {v: claim for v, _, claim in METHODS + OTHER_METHODS if v != BASELINE}
    command = "python scripts/run_best_advanced_1k.py " + " ".join(args.argv)
    recorded = phases.get("recorded", records)
    sections = [header_lines(args, command, recorded, wall)]
    if pending:
        sections.append([f"**Partial**: {len(pending)} of the variants have not finished their "
                         f"{'grid or test seeds' if args.tune else 'runs'} and are not in the comparison: "
                         + ", ".join(f"{names.get(v, v)} / {m}" for v, m in pending) + "."])
    report_dir = args.report_dir or sweep_dir
    retrained = report.runs_trained_again(report_dir, records, TEST_METRIC)
    if retrained:  # said early: the decisions below are not those an earlier report gave
        sections.append(report.retrained_section(retrained, TEST_METRIC))
    if args.tune:
        sections += selection_sections(table, chosen, pending, names)
    os.makedirs(report_dir, exist_ok=True)
    title = f"{args.dataset}, {args.iters} iterations" + (", tuned rates" if args.tune else "")
    ok = [r for r in records if r["status"] == "ok"]
    run_dir_of = lambda r: os.path.join(sweep_dir, r["run_id"])  # noqa: E731
    analysis = analyse_test_runs(args, records, ok, sweep_dir, run_dir_of)
    if analysis is None and not args.report_only:
        raise UserError(f"no baseline run finished ok; see the train.log files in {sweep_dir}")
    figures, curves, effects, correlations = [], {}, {}, {}
    if analysis is None:
        sections.append(["## Test comparison", "", baseline_missing(args, pending, records)])
        if args.tune and table:
            figures.append(os.path.basename(plots.rate_grid(table, chosen, os.path.join(report_dir, "rate_grid.png"))))
    else:
        sections += comparison_sections(args, phases, analysis, names, chosen, prior)
        improvements = {k: g["comparison"]["mean_pct"] for k, g in analysis["groups"].items() if g["comparison"]}
        effects = report.diagnostic_effects(records, (BASELINE, BASELINE_MODE), run_dir_of, read_metrics)
        correlations = report.diagnostic_correlations(effects, improvements)
        sections += diagnostics_sections(effects, improvements, correlations, names)
        figures = report.report_plots(report_dir, analysis, title, TEST_METRIC, [run_dir_of(r) for r in ok], prior=prior,
                                      table=table, chosen=chosen, plan=args.plan, decided=phases.get("sequential"))
        curves = report.improvement_curves(records, (BASELINE, BASELINE_MODE), run_dir_of, read_metrics)
        if any(curves.values()):
            plots.improvement_over_training(curves, os.path.join(report_dir, "improvement_over_training.png"), title=title)
            figures.append("improvement_over_training.png")
        figures += diagnostics_figures(report_dir, ok, run_dir_of)
    sections += runs_left_out(args, phases, records, names)
    data = {**report_identity(args), "command": command, "modes": args.modes,
            "test_seeds": args.test_seeds, "tuned": args.tune, "metric": TEST_METRIC,
            "selection_seeds": args.selection_seeds if args.tune else None,
            "grid": table, "chosen_rates": chosen, "pending": pending, "extended": phases.get("extended", {}),
            "sequential": phases.get("sequential"),
            "family": analysis and analysis["family"], "comparisons": analysis and analysis["groups"],
            "equal_wall_time": analysis and analysis["wall_time"],
            "noise_floor": analysis and analysis["noise_floor"], "runs": records,
            # a report-only call trains nothing: no wall time of its own (and the report regenerates byte for byte)
            "wall_s_this_call": None if args.report_only else round(wall, 1),
            "selection_not_ok": [r["run_id"] for r in phases.get("selection_not_ok", [])],
            "no_rate": [f"{v}/{m}" for v, m in phases.get("unrated", [])],
            "machine": machine_of(recorded),
            "improvement_over_training": {k: [dict(zip(("iter", "mean_pct", "ci_low", "ci_high", "n"), point))
                                              for point in points] for k, points in curves.items()},
            "diagnostics": {"changes": effects, "spearman": {k: dict(zip(("rho", "p", "n"), v))
                                                             for k, v in correlations.items()}}}
    if retrained:  # (absent, not empty, where none was: the committed reports regenerate byte for byte)
        data["retrained"] = retrained
    text = report.write_report(report_dir, "Centering vs baseline: " + title, sections, data, figures)
    return text, report_dir, figures


def header_lines(args, command, recorded, wall):
    """The report's first lines: its command, what it compares, and where and how long it ran."""
    seeds = ", ".join(map(str, args.test_seeds))
    what = (f"{args.dataset}, {args.iters} iterations, "
            + (f"cells {', '.join(f'{v}/{m}' for v, m in args.cells)}" if args.cells else f"modes {', '.join(args.modes)}")
            + (f", test seeds by the seed plan (1 to {args.plan.looks[-1]} at most)" if args.plan else f", test seeds {seeds}")
            + (f" (up to {args.extend_to} for a variant whose Holm p lies in [{EXTEND_BAND[0]}, {EXTEND_BAND[1]}])"
               if args.tune and args.extend_to > args.seeds else "")
            + (f"; learning rate tuned per variant on selection seeds {', '.join(map(str, args.selection_seeds))}"
               if args.tune else ", the config's learning rate"))
    return [f"`{command}`", "", what + ". Improvement = relative decrease of the test loss against the "
            "same-seed baseline, in percent (positive = better).", "",
            f"Runs' own wall time: {sum(r.get('wall_s') or 0 for r in recorded) / 3600:.2f} h over "
            f"{len(recorded)} runs" + ("" if args.report_only else f"; this call: {wall / 60:.1f} min")
            + f"; machine: {machine_of(recorded)}."]


def selection_sections(table, chosen, pending, names):
    """The learning-rate grid with the chosen rates, and the variants chosen at the grid's edge."""
    edges = edge_rates(table, chosen)
    unfinished = {k for k in pending if k in table and k not in chosen}
    sections = [["## Learning-rate selection (validation loss of the best checkpoint, mean over the "
                 "selection seeds; bold: chosen)", ""] + report.grid_table(table, chosen, unfinished)]
    if edges:
        sections.append(["Chosen at the edge of the grid (the optimum may lie outside it): "
                         + ", ".join(f"{names.get(v, v)} / {m} ({side})" for (v, m), side in sorted(edges.items()))])
    return sections


def analyse_test_runs(args, records, ok, sweep_dir, run_dir_of):
    """report.analyse of the test runs, or None while no run is ok."""
    if not ok:
        return None
    if not all(r.get("test_loss") is not None for r in ok):
        raise UserError(f"runs in {sweep_dir} have no test loss (the dataset has no test split, or they "
                        f"trained before it had one): re-run the dataset's prepare.py if needed, and give "
                        f"--name=NEW for a sweep folder of its own")
    return report.analyse(records, args.iters, TEST_METRIC, (BASELINE, BASELINE_MODE),
                          run_dir_of=run_dir_of, read_metrics=read_metrics)


def comparison_sections(args, phases, analysis, names, chosen, prior):
    """The test comparison: the seed plan's decisions, or the Holm-corrected table; and what the
    retired extension rule added, where a report was made with it."""
    if phases.get("sequential"):
        sections = [["## Test comparison (decisions under the seed plan)", ""] + report.sequential_table(
                        phases["sequential"], args.plan, analysis, names=names, rates=chosen, prior=prior),
                    report.notes(analysis, TEST_METRIC, names,
                                 decision=report.sequential_note(phases["sequential"], args.plan))]
    else:
        sections = [["## Test comparison", ""] + report.comparison_table(
                        analysis, TEST_METRIC, names=names, rates=chosen if args.tune else None, prior=prior),
                    report.notes(analysis, TEST_METRIC, names)]
    extended = phases.get("extended", {})
    if extended:
        sections.append([f"More seeds: {', '.join(f'{names.get(v, v)} / {m} (Holm p {p:.3g} on seeds 1-{args.seeds})' for (v, m), p in sorted(extended.items()))} "
                         f"and the baseline were given test seeds {args.seeds + 1}-{args.extend_to}, as the extension rule "
                         f"(retired since) did for a p in [{EXTEND_BAND[0]}, {EXTEND_BAND[1]}]; their row is on every seed (so its mean "
                         f"is over more seeds than the other rows'). "
                         f"Adding seeds because p was close makes that p slightly optimistic (optional stopping)."])
    if phases.get("extension_pending"):
        sections.append(["Extra test seeds of the retired extension rule not in the folder for: " + ", ".join(
            f"{names.get(v, v)} / {m}" for v, m in phases["extension_pending"])
            + f" and the baseline (Holm p in [{EXTEND_BAND[0]}, {EXTEND_BAND[1]}]); "
            f"compared here on seeds 1-{args.seeds} only."])
    if phases.get("extension_undecided"):
        sections.append(["Extra test seeds of the retired extension rule: not read, since test runs failed ("
                         + ", ".join(phases["extension_undecided"]) + ")."])
    return sections


def diagnostics_sections(effects, improvements, correlations, names):
    """The diagnostics' change against the baseline at the end of training, and whether it goes
    with the improvement (exploratory)."""
    table_lines = report.diagnostics_table(effects, improvements, correlations, names)
    if not table_lines:
        return []
    return [["## Diagnostics at the end of training (test runs; change against the same-seed "
             "baseline, mean over layers and seeds, after centering)", ""] + table_lines
            + ["", "IsoScore: 1 = isotropic, near 0 = one direction; var_top1: the share of variance "
               "on the top principal direction; cosine: mean pairwise cosine of the vectors. "
               "Spearman ρ over the rows (variant × mode): does the change go with the loss improvement? Its p "
               "is a permutation test over the orderings of the rows (exact up to 8 rows); "
               "uncorrected, exploratory."]]


def runs_left_out(args, phases, records, names):
    """Every run or variant the comparison leaves out, and why."""
    sections = []
    # every test run not ok, also of a variant left out as unfinished (--report_only)
    not_ok = [r for r in phases.get("recorded", records) if r["status"] != "ok"
              and not (args.tune and r["seed"] in args.selection_seeds)]
    if not_ok:
        sections.append(["Runs not ok (left out): " + ", ".join(f"{r['run_id']} ({r['status']})" for r in not_ok)])
    if phases.get("selection_not_ok"):
        sections.append(["Selection runs not ok (a diverged run's rate is not eligible; a failed run is run "
                         "again by the next call, and its variant waits for it): "
                         + ", ".join(f"{r['run_id']} ({r['status']})" for r in phases["selection_not_ok"])])
    if phases.get("unrated"):
        sections.append(["No eligible learning rate (left out of the test comparison): "
                         + ", ".join(f"{names.get(v, v)} / {m}" for v, m in phases["unrated"])])
    return sections



def baseline_missing(args, pending, records):
    """Why there is no test comparison yet, in one line."""
    if (BASELINE, BASELINE_MODE) in pending:
        return ("Not yet: the baseline's " + ("learning-rate grid or " if args.tune else "")
                + "test runs are not all finished.")
    if records:
        return "None: no test run of the baseline finished ok (see the runs not ok below)."
    return "Not yet: no test runs."


def report_identity(args):
    """What makes two commands' reports the same report (more seeds do not): kept in
    results.json, so that a report folder is never taken over by another experiment's report."""
    identity = {"dataset": args.dataset, "iters": args.iters, "tuned": args.tune,
                "variants": sorted({BASELINE, *args.variants}), "mode_set": sorted(set(args.modes))}
    if args.plan:  # the plan and its margin are declared once: another plan needs a report of its own
        identity["seed_plan"] = {"looks": list(args.plan.looks), "spend": list(args.plan.spend),
                                 "margin": args.plan.margin, "alpha": args.plan.alpha}
    if args.cells:
        identity["cells"] = sorted(f"{v}/{m}" for v, m in args.cells)
    return identity


def check_report_dir(args, report_dir, baseline_config=None):
    """Refuse (UserError), before anything trains, a report folder that holds the report of
    another experiment (a sweep folder shared by two commands, e.g. other modes reusing the
    baseline's runs; or another width's sweep given the same --report_dir): writing there would
    silently replace it. baseline_config: the resolved config of a baseline run planned now."""
    check_folder_can_be_made(report_dir, "--report_dir")
    path = os.path.join(report_dir, "results.json")
    if not os.path.isfile(path):
        if os.path.exists(os.path.join(report_dir, "results.md")):  # ours always comes with results.json, written first
            raise UserError(f"{report_dir} holds a results.md that is no report of this project: "
                            f"give --report_dir=NEW for this one")
        return
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError("not a report")
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e}): remove it, or give --report_dir=NEW") from None
    new = report_identity(args)
    if "mode_set" not in old and isinstance(old.get("modes"), list):  # a report from before these keys
        old["mode_set"] = sorted(set(old["modes"]))
    differ = [k for k in new if k in old and old[k] != new[k]]
    if "variants" not in old:  # an older report: the variants it shows must be among this command's
        shown = {str(k).split("/")[0] for k in {**(old.get("grid") or {}), **(old.get("comparisons") or {})}}
        shown |= {r.get("variant") for r in old.get("runs") or [] if isinstance(r, dict)}
        if not shown <= set(new["variants"]):
            differ.append("variants")
    if differ:
        raise UserError(f"{report_dir} holds the report of another command (other {', '.join(differ)}): "
                        f"give --report_dir=NEW for this one")
    held = next((r["config"] for r in old.get("runs") or [] if isinstance(r, dict) and r.get("variant") == BASELINE
                 and isinstance(r.get("config"), dict)), None)
    settings = held and baseline_config and setting_differences(held, baseline_config, also_free=("seed", RATE_KEY))
    if settings:  # e.g. the same sweep at another width: its run ids, and so its report, look the same
        raise UserError(f"{report_dir} holds the report of runs trained with other settings ({settings}): "
                        f"give --report_dir=NEW for this one")


def machine_of(records):
    """Where the runs trained (their provenance), else this machine."""
    hosts = sorted({f"{r['provenance'].get('hostname')}, " + (f"{r['provenance']['cpu']}, " if r["provenance"].get("cpu") else "")
                    + f"{r['provenance'].get('device')}, torch {r['provenance'].get('torch')}"
                    for r in records if r.get("provenance")})
    return "; ".join(hosts) or machine_description()


def diagnostics_figures(report_dir, runs, run_dir_of):
    """The diagnostics over training of the test runs, per mode (the baseline in each):
    diagnostics/<mode>/diag_<metric>.png. Returns their paths relative to report_dir."""
    paths = []
    for mode in sorted({r["mode"] for r in runs} - {BASELINE_MODE}):
        groups = {}
        for r in runs:
            if r["mode"] in (mode, BASELINE_MODE):
                groups.setdefault(plots.label(r["variant"], r["mode"]), []).append(read_metrics(run_dir_of(r)))
        out_dir = os.path.join(report_dir, "diagnostics", mode)
        paths += [os.path.relpath(p, report_dir) for p in plots.plot_diagnostics(groups, out_dir, list(report.DIAGNOSTIC_METRICS))]
    return paths


def run(args, overrides):
    """The whole command: check the arguments, plan, train (or only report) and write the report.
    args: the parsed command line (scripts/run_best_advanced_1k.py), with argv and argv_keys;
    overrides: the --key=value training keys. Returns the exit status; raises UserError."""
    if not args.tune and (args.rates or args.selection_seeds):
        raise ConfigError("--rates and --selection_seeds go with --tune=True")
    args.rates = args.rates or DEFAULT_RATES
    args.selection_seeds = 2 if args.selection_seeds is None else args.selection_seeds
    if args.seeds < 1 or args.selection_seeds < 1:
        raise ConfigError("--seeds and --selection_seeds must be at least 1")
    if args.extend_to is not None and not args.tune:
        raise ConfigError("--extend_to goes with --tune=True")
    if args.extend_to and not args.report_only:
        raise ConfigError("--extend_to is the retired extension rule (more seeds for a borderline p, which makes that p "
                          "optimistic): it only reads back, with --report_only, the reports made with it; plan the "
                          "seeds with --looks and --margin, or fix them with --seeds")
    args.extend_to = args.extend_to or 0
    if args.extend_to and args.extend_to < args.seeds:
        raise ConfigError(f"--extend_to must be 0 or at least --seeds ({args.seeds}), got {args.extend_to}")
    args.plan = seed_plan(args)
    if args.cells is not None:
        args.variants, args.modes, args.cells = cells_of(args)
    else:
        args.variants = [v for v, _, _ in METHODS] if args.variants is None else args.variants
        args.modes = ["adaptive"] if args.modes is None else args.modes
    if args.report_only and args.dry_run:
        raise ConfigError("--report_only and --dry_run do not go together")
    if any(o.startswith(f"--{RATE_KEY}=") for o in overrides) and args.tune:
        raise ConfigError(f"--tune=True chooses {RATE_KEY} itself: give the grid as --rates")
    if args.plan:  # the seeds go by the plan
        args.seeds, args.extend_to = args.plan.looks[-1], 0
    args.test_seeds = list(range(1, args.seeds + 1))
    args.selection_seeds = list(range(SELECTION_SEED_BASE + 1, SELECTION_SEED_BASE + 1 + args.selection_seeds))
    variants = [BASELINE] + [v for v in args.variants if v != BASELINE]
    all_overrides = [f"--dataset={args.dataset}", *overrides]
    name = sweep_name(args)
    sweep_dir = os.path.join(os.path.abspath(args.out_root), name)
    runs, configs = plan_and_check(args, all_overrides, variants)
    check_report_dir(args, args.report_dir or sweep_dir, next(configs[r.run_id] for r in runs if r.variant == BASELINE))
    if args.dry_run:
        sweep_options(args)  # the executor's checks, as a real start makes them
        print_plan(runs, sweep_dir, configs)
        if args.tune:
            print(f"then test seeds by the seed plan ({args.plan.describe()})" if args.plan else
                  f"then {len(args.test_seeds)} test seeds per variant and mode at its chosen rate")
        return 0
    t0 = time.time()
    if args.tune:
        phases = tuned_phases(args, name, all_overrides, runs, print)
        if phases is None:
            return 0
    else:
        done = run_sweep(name, runs, args.out_root, overrides=all_overrides, execute=not args.report_only,
                         **sweep_options(args, trains=not args.report_only))
        if len(done) < len(runs) and not args.report_only:
            print(f"{len(runs) - len(done)} runs still queued or running; run the same command again")
            return 0
        phases = {"records": list(done.values()), "recorded": list(done.values()),
                  "pending": sorted({(r.variant, r.mode) for r in runs if r.run_id not in done})}
        phases["records"] = [r for r in phases["records"] if (r["variant"], r["mode"]) not in phases["pending"]]
    text, report_dir, figures = build_report(args, name, phases, time.time() - t0)
    print(text)
    print(f"written to {report_dir}: results.md, results.json{''.join(', ' + f for f in figures)}")
    if args.report_only:
        return 0
    not_ok = phases.get("selection_not_ok", []) + [r for r in phases["records"] if r["status"] != "ok"]
    return name_not_ok(not_ok, len(phases["records"]) + (len(runs) if args.tune else 0), sweep_dir)
