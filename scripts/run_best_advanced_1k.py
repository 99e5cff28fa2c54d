"""
The prior report's table (baseline, embeddings centered, QK + value, full attention, value only,
at 1000 iterations) with several seeds, compared with the baseline seed by seed on the held-out
test split: paired t-test with Holm-corrected p-values over every comparison of the table, exact
sign and permutation tests, the baseline's noise floor, and the effect at equal wall time.

    python scripts/run_best_advanced_1k.py [--seeds=5] [--modes=adaptive,momentum] [--dataset=shakespeare_char]
    python scripts/run_best_advanced_1k.py --tune=True [--rates=1e-3,2e-3,4e-3,8e-3,1.6e-2] [--selection_seeds=2] [--seeds=5]
    python scripts/run_best_advanced_1k.py --tune=True --looks=10,20,30,40 --margin=0.5 [--cells=...]

Without --tune every variant trains at the config's learning rate on seeds 1..N. With
--tune=True each variant, the baseline included, is first trained at every rate of --rates on
the selection seeds (1001, 1002, ...); its rate is the one with the lowest mean validation loss
(best checkpoint); then it trains at that rate on the fresh test seeds 1..N, and only those runs
are compared, on their test loss. The report has the whole grid and the chosen rates. The test
seeds are 1..--seeds, or, with --looks, a seed plan declared before the runs: look by look, the
cells not yet better, worse or equivalent within --margin get more seeds (README, "Experiment
protocol"). The older extension rule (more seeds for a borderline p) is retired; --extend_to
only reads back, with --report_only, the reports made with it.

--report_only=True trains nothing: the report of what the sweep folder holds so far (a sweep
still under way, or one archived in results/ with scripts/archive_sweep.py: --out_root=results).
A variant whose grid is not complete gets no rate yet, one whose test seeds are not complete is
left out of the comparison, and the page says so.

Any variant (--variants), mode (--modes), dataset, width or other training key (--key=value,
e.g. --n_embd=256) and any executor of the sweep machinery (--jobs, --executor=slurm, ...) go
with either. The runs live in a sweep folder (out/experiments/best_advanced_1k[-tuned][-...]),
so an interrupted command continues where it stopped; runs with other settings (another width)
need a --name of their own. Writes results.md, results.json and the
plots to --report_dir (default: the sweep folder) and prints the tables.
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import CommandLine, boolean, comma_list, underscored
from experiments.cli import add_sweep_arguments, guarded
from experiments.plan import MODES
from experiments.protocol import DEFAULT_RATES, EXTEND_BAND, SELECTION_SEED_BASE, rate_list, run


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="number of test seeds (1..N); more is better")
    parser.add_argument("--dataset", default="shakespeare_char", help="dataset folder under data/")
    parser.add_argument("--iters", type=int, default=1000, help="training iterations of every run")
    parser.add_argument("--variants", type=comma_list(str, unique=True), default=None,
                        help="comma-separated config names (default: the prior report's four centered variants; the baseline is always added)")
    parser.add_argument("--modes", type=comma_list(str, unique=True), default=None,
                        help=f"comma-separated centering modes of the centered variants, of {', '.join(MODES)} "
                             f"(default: adaptive)")
    parser.add_argument("--cells", type=comma_list(str, unique=True), default=None,
                        help="instead of --variants and --modes: comma-separated variant/mode pairs, e.g. "
                             "embeddings_centered/momentum,value_centered/adaptive")
    parser.add_argument("--looks", type=comma_list(int), default=None,
                        help="with --tune: the seed plan, test seeds at each look, e.g. 10,20,30,40; the undecided "
                             "cells get more seeds look by look (replaces --seeds and the extension rule)")
    parser.add_argument("--spend", type=comma_list(float), default=None,
                        help="with --looks: the share of alpha spent at each look, summing to 1 (default: in "
                             "proportion to the seeds each look adds)")
    parser.add_argument("--margin", type=float, default=None,
                        help="with --looks: the equivalence margin, percent of the test loss (e.g. 0.5); "
                             "declare it before the runs")
    parser.add_argument("--tune", type=boolean, default=False, metavar="True|False",
                        help="True (or --tune alone): tune the learning rate per variant on the selection seeds first")
    parser.add_argument("--rates", type=rate_list, default=None,
                        help=f"with --tune: the learning-rate grid, comma-separated (default: {','.join(DEFAULT_RATES)})")
    parser.add_argument("--selection_seeds", type=int, default=None,
                        help=f"with --tune: number of selection seeds ({SELECTION_SEED_BASE + 1}, ...; default: 2)")
    parser.add_argument("--name", default=None,
                        help="sweep folder name (default: best_advanced_1k[-tuned][-<dataset>])")
    parser.add_argument("--report_dir", default=None, help="where the report goes (default: the sweep folder)")
    parser.add_argument("--extend_to", type=int, default=None,
                        help=f"with --tune and --report_only only: read back the retired extension rule's extra "
                             f"test seeds (up to this seed) of a variant whose Holm p on --seeds lay in "
                             f"[{EXTEND_BAND[0]}, {EXTEND_BAND[1]}]; the second edition's reports were made with it")
    parser.add_argument("--report_only", type=boolean, default=False, metavar="True|False",
                        help="True (or --report_only alone): train nothing; report what the sweep folder holds")
    add_sweep_arguments(parser)
    args, overrides = parser.parse_with_overrides(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.argv_keys = {underscored(a)[2:].partition("=")[0] for a in args.argv if a.startswith("--")}

    return guarded(lambda: run(args, overrides))


if __name__ == "__main__":
    sys.exit(main())
