"""
A seed plan's operating characteristics, by simulation, before any run: for each true effect, how
often each decision comes out, and the expected seeds per cell. The noise is the paired per-seed
spread measured before (e.g. about 0.9% for the 1000-iteration character model).

    python scripts/seed_plan.py --looks=10,20,30,40 --spend=0.05,0.1,0.15,0.7 --margin=0.5 --sd=0.9 --cells=5
    python scripts/seed_plan.py --looks=40 --margin=0.5 --sd=0.9 --effects=0,0.5,-1 --trials=2000

Each effect is simulated as a family of --cells cells that all have it (the worst case for the
error rates), and once as the mixed family of --effects (one cell each), as a sweep would have it.
"""

import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import ConfigError
from configurator import CommandLine, at_least, comma_list
from experiments.cli import guarded
from experiments.seed_plan import DECISIONS, SeedPlan, simulate


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--looks", type=comma_list(int), required=True, help="test seeds at each look, e.g. 10,20,30,40")
    parser.add_argument("--spend", type=comma_list(float), default=None,
                        help="share of alpha at each look, summing to 1 (default: in proportion to the seeds added)")
    parser.add_argument("--margin", type=float, required=True, help="equivalence margin, percent of the loss")
    parser.add_argument("--sd", type=float, required=True, help="std of the paired per-seed improvement, percent")
    parser.add_argument("--cells", type=at_least(1), default=5, help="cells in the family (Holm over them)")
    parser.add_argument("--effects", type=comma_list(float), default=None,
                        help="true improvements to simulate, percent (default: 0, the margin, twice the margin, -2)")
    parser.add_argument("--trials", type=at_least(10), default=1000, help="simulated sweeps per line")
    args = parser.parse_args(argv)

    def body():
        plan = (SeedPlan(tuple(args.looks), tuple(args.spend), args.margin) if args.spend
                else SeedPlan.proportional(tuple(args.looks), args.margin))
        if not args.sd > 0:
            raise ConfigError(f"--sd must be a positive percentage, got {args.sd}")
        effects = args.effects or [0.0, args.margin, 2 * args.margin, -2.0]
        print(f"plan: {plan.describe()}; paired sd {args.sd:g}%; {args.trials} simulated sweeps per line")
        print("| true effect | family | " + " | ".join(DECISIONS) + " | seeds per cell | any false decision |")
        print("|---|---|" + "---|" * (len(DECISIONS) + 2))
        families = [(f"{e:+g}%", f"{args.cells} cells alike", [e] * args.cells) for e in effects]
        families.append(("mixed", "one cell each", effects))
        for label, family, cells in families:
            result = simulate(plan, cells, args.sd, args.trials, seed=1)
            rates = [sum(result["rates"][i][d] for i in range(len(cells))) / len(cells) for d in DECISIONS]
            print(f"| {label} | {family} | " + " | ".join(f"{r:.3f}" for r in rates)
                  + f" | {result['mean_seeds']:.1f} | {result['any_false']:.3f} |")
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
