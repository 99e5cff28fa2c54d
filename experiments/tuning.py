"""
Per-variant learning-rate tuning, as pure functions over sweep result records.

The protocol (Kaddour et al. 2023; Wortsman et al. 2023: compare each variant at its own best
learning rate, because an untuned baseline manufactures wins):

1. Selection: every variant, the baseline included, trains at every rate of a grid on the
   selection seeds. `selection_table` gathers their validation losses ("best_val_loss": the
   validation loss of the checkpoint kept as best.pt), and `choose_rates` takes, per variant,
   the rate with the lowest mean over the selection seeds. A rate at which any selection seed
   diverged or did not finish is not eligible.
2. Test: fresh seeds, disjoint from the selection seeds, at each variant's chosen rate; the
   comparison uses their "test_loss" (the held-out split, evaluated once at the end of a run).

Nothing here reads a test loss before the rates are chosen: selection sees only the records'
validation metric.
"""

import math

from configurator import ConfigError

SELECTION_METRIC = "best_val_loss"
TEST_METRIC = "test_loss"
RATE_KEY = "learning_rate"


def rate_of(record, key=RATE_KEY):
    """The rate a run trained with, as the text given on the grid (so that it names the same run
    id again), from the record's params."""
    return record["params"][key]


def selection_table(records, selection_seeds, key=RATE_KEY, metric=SELECTION_METRIC):
    """{(variant, mode): {rate text: {"losses": {seed: loss}, "statuses": {seed: status},
    "mean": mean loss over the ok seeds or NaN, "eligible": every selection seed finished ok}}}
    from the records of the selection seeds. Reads only `metric` of each record."""
    seeds = set(selection_seeds)
    table = {}
    for r in records:
        if r["seed"] not in seeds or key not in r.get("params", {}):
            continue
        cell = table.setdefault((r["variant"], r["mode"]), {}).setdefault(
            rate_of(r, key), {"losses": {}, "statuses": {}})
        cell["statuses"][r["seed"]] = r["status"]
        if r["status"] == "ok" and r.get(metric) is not None:
            cell["losses"][r["seed"]] = r[metric]
    for rates in table.values():
        for cell in rates.values():
            losses = list(cell["losses"].values())
            cell["mean"] = sum(losses) / len(losses) if losses else math.nan
            cell["eligible"] = set(cell["losses"]) == seeds
    return table


def choose_rates(table):
    """{(variant, mode): rate text} with, per variant, the eligible rate of lowest mean selection
    loss (ties: the smaller rate). A variant with no eligible rate is left out."""
    chosen = {}
    for key, rates in table.items():
        eligible = [(cell["mean"], float(rate), rate) for rate, cell in rates.items() if cell["eligible"]]
        if eligible:
            chosen[key] = min(eligible)[2]
    return chosen


def check_disjoint(selection_seeds, test_seeds):
    """The test seeds must be fresh: a seed used to choose a rate would carry the selection's
    luck into the test comparison."""
    shared = sorted(set(selection_seeds) & set(test_seeds))
    if shared:
        raise ConfigError(f"selection and test seeds must be disjoint; both have {', '.join(map(str, shared))}")


def at_chosen_rates(records, chosen, test_seeds, key=RATE_KEY):
    """The records of the test phase: each variant's runs at its chosen rate on the test seeds."""
    seeds = set(test_seeds)
    return [r for r in records if r["seed"] in seeds and key in r.get("params", {})
            and chosen.get((r["variant"], r["mode"])) == rate_of(r, key)]


def edge_rates(table, chosen):
    """{(variant, mode): "lowest" or "highest"} for each variant whose chosen rate is at the edge
    of its grid: its optimum may lie outside, and the grid should be widened."""
    edges = {}
    for key, rate in chosen.items():
        rates = sorted(table[key], key=float)
        if len(rates) > 1 and rate in (rates[0], rates[-1]):
            edges[key] = "lowest" if rate == rates[0] else "highest"
    return edges


def borderline(groups, band):
    """{(variant, mode): Holm-corrected p} of the comparisons (experiments.stats.compare_records
    groups, corrected) whose p lies within band = (low, high): too close to call on these seeds."""
    return {k: g["comparison"]["p_holm"] for k, g in groups.items()
            if g["comparison"] and band[0] <= g["comparison"]["p_holm"] <= band[1]}
