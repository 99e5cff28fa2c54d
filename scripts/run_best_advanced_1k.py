"""
The prior report's table (baseline, embeddings centered, QK + value, full attention, value only,
at 1000 iterations) with several seeds, compared with the baseline seed by seed on the held-out
test split: paired t-test with Holm-corrected p-values over every comparison of the table, exact
sign and permutation tests, the baseline's noise floor, and the effect at equal wall time.

    python scripts/run_best_advanced_1k.py [--seeds=5] [--modes=adaptive,momentum] [--dataset=shakespeare_char]
    python scripts/run_best_advanced_1k.py --tune=True [--rates=1e-3,2e-3,4e-3,8e-3,1.6e-2] [--selection_seeds=2] [--seeds=5]

Without --tune every variant trains at the config's learning rate on seeds 1..N. With
--tune=True each variant, the baseline included, is first trained at every rate of --rates on
the selection seeds (1001, 1002, ...); its rate is the one with the lowest mean validation loss
(best checkpoint); then it trains at that rate on the fresh test seeds 1..N, and only those runs
are compared, on their test loss. The report has the whole grid and the chosen rates.

Any variant (--variants), mode (--modes), dataset, width or other training key (--key=value,
e.g. --n_embd=256) and any executor of the sweep machinery (--jobs, --executor=slurm, ...) go
with either. The runs live in a sweep folder (out/experiments/best_advanced_1k[-tuned][-...]),
so an interrupted command continues where it stopped; runs with other settings (another width)
need a --name of their own. Writes results.md, results.json and the
plots to --report_dir (default: the sweep folder) and prints the tables.
"""

import os
import sys
import time

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import ConfigError, UserError
from experiments import report
from experiments.cli import (CommandLine, add_sweep_arguments, boolean, comma_list, guarded, name_not_ok,
                             print_plan, sweep_options)
from experiments.plan import BASELINE, BASELINE_MODE, MODES, Run, check_plan, plan_runs
from experiments.records import read_metrics
from experiments.sweep import run_sweep
from experiments.tuning import RATE_KEY, at_chosen_rates, check_disjoint, choose_rates, selection_table

# (config, name in the prior report, its claimed improvement in %)
METHODS = [
    ("embeddings_centered", "Embeddings centered", 2.26),
    ("qk_value_centered", "QK + Value", 1.89),
    ("full_attention_centered", "Full attention", 1.89),
    ("value_centered", "Value only", 1.13),
    ("baseline", "Baseline", 0.0),
]
SELECTION_SEED_BASE = 1000  # selection seeds are 1001, 1002, ...: never a test seed 1..N
DEFAULT_RATES = ["1e-3", "2e-3", "4e-3", "8e-3", "1.6e-2"]


def rate_list(text):
    rates = [r for r in text.split(",") if r]
    for r in rates:
        if float(r) <= 0:
            raise ValueError(r)
    return rates


def sweep_name(args):
    if args.name:
        return args.name
    return ("best_advanced_1k" + ("-tuned" if args.tune else "")
            + ("" if args.dataset == "shakespeare_char" else f"-{args.dataset}"))


def plan_and_check(args, overrides, variants):
    """The runs of the command (for --tune, phase 1's grid), checked before anything runs (a run
    the folder already holds with other settings is refused by run_sweep), and their resolved
    training configs."""
    if args.tune:
        check_disjoint(args.selection_seeds, args.test_seeds)
        runs = plan_runs(variants, args.modes, args.selection_seeds, [args.iters], {RATE_KEY: args.rates})
    else:
        runs = plan_runs(variants, args.modes, args.test_seeds, [args.iters])
    return runs, check_plan(runs, variants, args.modes, overrides, args.config_dir)


def tuned_phases(args, name, overrides, runs, log):
    """Phase 1 (the grid on the selection seeds), the choice, phase 2 (the test seeds at the
    chosen rates). Returns (records of phase 2, the selection table, the chosen rates, the
    records of phase 1 not ok, the (variant, mode) pairs left without a rate), or None while
    runs are still queued (Slurm without --wait)."""
    phase1 = run_sweep(name, runs, args.out_root, overrides=overrides, **sweep_options(args))
    if len(phase1) < len(runs):
        log(f"phase 1: {len(runs) - len(phase1)} runs still queued or running; run the same command again")
        return None
    table = selection_table(phase1.values(), args.selection_seeds)
    chosen = choose_rates(table)
    unrated = sorted({(r.variant, r.mode) for r in runs} - set(chosen))
    if (BASELINE, BASELINE_MODE) in unrated:
        raise UserError("no learning rate of the grid finished ok on every selection seed for the baseline; "
                        f"see the train.log files in {os.path.join(os.path.abspath(args.out_root), name)}")
    if unrated:
        print(f"warning: no learning rate of the grid finished ok on every selection seed for "
              f"{', '.join(f'{v}/{m}' for v, m in unrated)}: left out of the test comparison", file=sys.stderr)
    log("chosen rates (lowest mean validation loss on the selection seeds): "
        + ", ".join(f"{v}/{m} {r}" for (v, m), r in sorted(chosen.items())))
    phase2_runs = [Run(v, m, seed, args.iters, ((RATE_KEY, rate),))
                   for (v, m), rate in sorted(chosen.items()) for seed in args.test_seeds]
    phase2 = run_sweep(name, phase2_runs, args.out_root, overrides=overrides, **sweep_options(args))
    if len(phase2) < len(phase2_runs):
        log(f"phase 2: {len(phase2_runs) - len(phase2)} runs still queued or running; run the same command again")
        return None
    selection_not_ok = [r for r in phase1.values() if r["status"] != "ok"]
    return at_chosen_rates(phase2.values(), chosen, args.test_seeds), table, chosen, selection_not_ok, unrated


def build_report(args, name, records, table, chosen, wall, selection_not_ok=(), unrated=()):
    """Write results.md, results.json and the plots; returns the markdown text. selection_not_ok,
    unrated: with --tune, the selection runs not ok and the (variant, mode) pairs with no rate."""
    sweep_dir = os.path.join(os.path.abspath(args.out_root), name)
    ok = [r for r in records if r["status"] == "ok"]
    metric = "test_loss" if ok and all(r.get("test_loss") is not None for r in ok) else None
    if metric is None:
        raise UserError(f"runs in {sweep_dir} have no test loss (the dataset has no test split, or they "
                        f"trained before it had one): re-run the dataset's prepare.py if needed, and give "
                        f"--name=NEW for a sweep folder of its own")
    analysis = report.analyse(records, args.iters, metric, (BASELINE, BASELINE_MODE),
                              run_dir_of=lambda r: os.path.join(sweep_dir, r["run_id"]), read_metrics=read_metrics)
    if analysis is None:
        raise UserError(f"no baseline run finished ok; see the train.log files in {sweep_dir}")
    names = {v: n for v, n, _ in METHODS}
    prior = {v: claim for v, _, claim in METHODS if v != BASELINE}
    command = "python scripts/run_best_advanced_1k.py " + " ".join(args.argv)
    seeds = ", ".join(map(str, args.test_seeds))
    what = (f"{args.dataset}, {args.iters} iterations, modes {', '.join(args.modes)}, test seeds {seeds}"
            + (f"; learning rate tuned per variant on selection seeds {', '.join(map(str, args.selection_seeds))}"
               if args.tune else ", the config's learning rate"))
    sections = [[f"`{command}`", "", what + ". Improvement = relative decrease of the test loss against the "
                 "same-seed baseline, in percent (positive = better).", "",
                 f"Wall time of this call: {wall / 60:.1f} min; runs' own wall time: "
                 f"{sum(r.get('wall_s') or 0 for r in records) / 60:.1f} min; machine: {report.machine()}."]]
    if args.tune:
        sections.append(["## Learning-rate selection (validation loss of the best checkpoint, mean over the "
                         "selection seeds; bold: chosen)", ""] + report.grid_table(table, chosen))
    sections.append(["## Test comparison", ""] + report.comparison_table(
        analysis, metric, names=names, rates=chosen if args.tune else None, prior=prior))
    sections.append(report.notes(analysis, metric))
    not_ok = [r for r in records if r["status"] != "ok"]
    if not_ok:
        sections.append(["Runs not ok (left out): " + ", ".join(f"{r['run_id']} ({r['status']})" for r in not_ok)])
    if selection_not_ok:
        sections.append(["Selection runs not ok (their rate not eligible): "
                         + ", ".join(f"{r['run_id']} ({r['status']})" for r in selection_not_ok)])
    if unrated:
        sections.append(["No eligible learning rate (left out of the test comparison): "
                         + ", ".join(f"{names.get(v, v)} / {m}" for v, m in unrated)])
    report_dir = args.report_dir or sweep_dir
    os.makedirs(report_dir, exist_ok=True)
    title = f"{args.dataset}, {args.iters} iterations" + (", tuned rates" if args.tune else "")
    figures = report.report_plots(report_dir, analysis, title, metric,
                                  [os.path.join(sweep_dir, r["run_id"]) for r in ok], prior=prior,
                                  table=table, chosen=chosen)
    data = {"command": command, "dataset": args.dataset, "iters": args.iters, "modes": args.modes,
            "test_seeds": args.test_seeds, "tuned": args.tune, "metric": metric,
            "selection_seeds": args.selection_seeds if args.tune else None,
            "grid": table, "chosen_rates": chosen, "family": analysis["family"],
            "comparisons": analysis["groups"], "equal_wall_time": analysis["wall_time"],
            "noise_floor": analysis["noise_floor"], "runs": records, "wall_s_this_call": round(wall, 1),
            "selection_not_ok": [r["run_id"] for r in selection_not_ok],
            "no_rate": [f"{v}/{m}" for v, m in unrated],
            "machine": report.machine()}
    text = report.write_report(report_dir, "Centering vs baseline: " + title, sections, data, figures)
    return text, report_dir, figures


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="number of test seeds (1..N); more is better")
    parser.add_argument("--dataset", default="shakespeare_char", help="dataset folder under data/")
    parser.add_argument("--iters", type=int, default=1000, help="training iterations of every run")
    parser.add_argument("--variants", type=comma_list(str), default=[v for v, _, _ in METHODS],
                        help="comma-separated config names (default: the prior report's five; the baseline is added)")
    parser.add_argument("--modes", type=comma_list(str), default=["adaptive"],
                        help=f"comma-separated centering modes of the centered variants, of {', '.join(MODES)}")
    parser.add_argument("--tune", type=boolean, default=False, metavar="True|False",
                        help="True (or --tune alone): tune the learning rate per variant on the selection seeds first")
    parser.add_argument("--rates", type=rate_list, default=None,
                        help=f"with --tune: the learning-rate grid, comma-separated (default: {','.join(DEFAULT_RATES)})")
    parser.add_argument("--selection_seeds", type=int, default=None,
                        help=f"with --tune: number of selection seeds ({SELECTION_SEED_BASE + 1}, ...; default: 2)")
    parser.add_argument("--name", default=None,
                        help="sweep folder name (default: best_advanced_1k[-tuned][-<dataset>])")
    parser.add_argument("--report_dir", default=None, help="where the report goes (default: the sweep folder)")
    add_sweep_arguments(parser)
    args, overrides = parser.parse_with_overrides(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)

    def body():
        if not args.tune and (args.rates or args.selection_seeds):
            raise ConfigError("--rates and --selection_seeds go with --tune=True")
        args.rates = args.rates or DEFAULT_RATES
        args.selection_seeds = 2 if args.selection_seeds is None else args.selection_seeds
        if args.seeds < 1 or args.selection_seeds < 1:
            raise ConfigError("--seeds and --selection_seeds must be at least 1")
        if any(o.startswith(f"--{RATE_KEY}=") for o in overrides) and args.tune:
            raise ConfigError(f"--tune=True chooses {RATE_KEY} itself: give the grid as --rates")
        args.test_seeds = list(range(1, args.seeds + 1))
        args.selection_seeds = list(range(SELECTION_SEED_BASE + 1, SELECTION_SEED_BASE + 1 + args.selection_seeds))
        variants = [BASELINE] + [v for v in args.variants if v != BASELINE]
        all_overrides = [f"--dataset={args.dataset}", *overrides]
        name = sweep_name(args)
        sweep_dir = os.path.join(os.path.abspath(args.out_root), name)
        runs, configs = plan_and_check(args, all_overrides, variants)
        if args.dry_run:
            print_plan(runs, sweep_dir, configs)
            if args.tune:
                print(f"then {len(args.test_seeds)} test seeds per variant and mode at its chosen rate")
            return 0
        t0 = time.time()
        table = chosen = None
        selection_not_ok, unrated = [], []
        if args.tune:
            phases = tuned_phases(args, name, all_overrides, runs, print)
            if phases is None:
                return 0
            records, table, chosen, selection_not_ok, unrated = phases
        else:
            done = run_sweep(name, runs, args.out_root, overrides=all_overrides, **sweep_options(args))
            if len(done) < len(runs):
                print(f"{len(runs) - len(done)} runs still queued or running; run the same command again")
                return 0
            records = list(done.values())
        text, report_dir, figures = build_report(args, name, records, table, chosen, time.time() - t0,
                                                 selection_not_ok, unrated)
        print(text)
        print(f"written to {report_dir}: results.md, results.json, {', '.join(figures)}")
        not_ok = selection_not_ok + [r for r in records if r["status"] != "ok"]
        return name_not_ok(not_ok, len(records) + (len(runs) if args.tune else 0), sweep_dir)

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
