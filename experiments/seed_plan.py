"""
Decisions at a declared margin, with the number of seeds planned in advance (a group-sequential
design), for a family of cells (variant, mode) compared with one baseline, paired by seed.

Each cell ends with one of four labels:
- "better" / "worse": the paired t-test (two-sided) of the per-seed improvement against 0 rejects;
- "equivalent": the two one-sided tests (TOST) reject both |effect| >= margin hypotheses, i.e.
  the effect lies within +-margin (relative test loss, percent);
- "undecided": neither, at the last look (the most seeds the plan allows).
Where both tests reject (an effect different from 0 but within the margin), the difference test
decides: the cell is "better" or "worse".

The plan: looks at n_1 < n_2 < ... < n_K seeds (seeds 1..n_k), and a share w_k of alpha spent at
look k (the shares sum to 1). At look k every cell not yet decided gets seeds up to n_k, and two
Holm-corrected families are tested at level alpha * w_k, over all C cells of the plan: the
difference tests ("better"/"worse") and the equivalence tests. A cell decided at an earlier look
stops (no more seeds); in later looks it enters the family where it was decided with p = 0 and the
other with p = 1, so Holm's denominator still counts it.

Why the error rates hold (each family separately): a first false decision at look k means that a
true null hypothesis with a real p-value at look k is rejected by Holm at level alpha * w_k, where
every true null of the family is still in it (a stopped cell's true null has p = 1, never p = 0,
unless an error came before). Holm's bound then gives at most alpha * w_k, and summing over the
looks, at most alpha for the whole procedure, whatever the correlation between cells (they share
the baseline's seeds). `simulate` checks this, and tests/test_seed_plan.py runs it in CI.

A fixed design is the special case of one look (K = 1, w = (1,)).
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from configurator import ConfigError
from experiments.stats import (ALPHA, holm, min_detectable_effect, paired_comparison, relative_improvement_pct,
                               tost_p)

DECISIONS = ("better", "worse", "equivalent", "undecided")


@dataclass(frozen=True)
class SeedPlan:
    """looks: cumulative seeds at each look, increasing; spend: the share of alpha at each look
    (sums to 1); margin: the equivalence margin in percent of the loss; alpha: each family's
    error rate over the whole procedure."""
    looks: tuple
    spend: tuple
    margin: float
    alpha: float = ALPHA

    def __post_init__(self):
        if not self.looks or list(self.looks) != sorted(set(self.looks)) or self.looks[0] < 2:
            raise ConfigError(f"the looks must be increasing seed counts of at least 2, got {list(self.looks)}")
        if len(self.spend) != len(self.looks) or not all(w > 0 and math.isfinite(w) for w in self.spend) or abs(sum(self.spend) - 1) > 1e-9:
            raise ConfigError(f"the alpha shares must be one positive share per look, summing to 1, got {list(self.spend)}")
        if not (self.margin > 0 and math.isfinite(self.margin)):
            raise ConfigError(f"the equivalence margin must be a positive percentage, got {self.margin}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must lie in (0, 1), got {self.alpha}")

    @classmethod
    def proportional(cls, looks, margin, alpha=ALPHA):
        """Alpha spent in proportion to the seeds each look adds: most of it where the seeds are."""
        steps = np.diff([0, *looks])
        return cls(tuple(looks), tuple(float(s) / looks[-1] for s in steps), margin, alpha)

    def level(self, k):
        return self.alpha * self.spend[k]

    def describe(self):
        return (f"equivalence margin ±{self.margin:g}% of the test loss; looks at {', '.join(map(str, self.looks))} "
                f"seeds; alpha {self.alpha:g} "
                f"per family spent as {', '.join(f'{self.level(k):.3g}' for k in range(len(self.looks)))}")


def t_test(baseline, variant):
    """The part of stats.paired_comparison a decision needs (no exact tests: fast enough to
    simulate): n, improvement_pct, mean_pct, p_value."""
    _, improvement = relative_improvement_pct(baseline, variant)
    n = len(improvement)
    mean = float(improvement.mean()) if n else math.nan
    p = math.nan
    sd = float(improvement.std(ddof=1)) if n >= 2 else 0.0
    if sd > 1e-9 * max(1.0, abs(mean)):  # as stats.paired_comparison: identical values get no t-test
        p = float(2 * special.stdtr(n - 1, -abs(mean) / (sd / math.sqrt(n))))
    return {"n": n, "improvement_pct": improvement.tolist(), "mean_pct": mean, "p_value": p}


def decide(plan, baseline, cells, compare=paired_comparison):
    """Walk the plan's looks over the seeds recorded so far.

    baseline: {seed: loss}; cells: {key: {seed: loss}} (every cell of the plan, also those with no
    run yet). Returns {"cells": {key: {...}}, "look": index of the look reached, "next": None when
    every cell is decided or the last look is done, else (n, [keys]): the seeds the undecided cells
    and the baseline need for the next look}. Per cell: decision, decided_at (seeds, or None),
    comparison (paired_comparison on the seeds of its last look, with "p_tost", "p_holm",
    "p_tost_holm" and "level" added). compare: the comparison of two {seed: loss} dicts
    (t_test for a simulation: the same decision without the exact tests)."""
    keys = list(cells)
    state = {k: {"decision": "undecided", "decided_at": None, "comparison": None, "family": None} for k in keys}
    reached = -1
    for k, n in enumerate(plan.looks):
        seeds = list(range(1, n + 1))
        active = [key for key in keys if state[key]["decided_at"] is None]
        have = lambda losses: all(s in losses for s in seeds)  # noqa: E731
        if not active:
            break
        missing = [key for key in active if not have(cells[key])]
        if missing or not have(baseline):
            return {"cells": state, "look": reached, "next": (n, active)}
        base = {s: baseline[s] for s in seeds}
        comparisons = {}
        for key in active:
            c = compare(base, {s: cells[key][s] for s in seeds})
            c["p_tost"] = tost_p(c["improvement_pct"], plan.margin)
            comparisons[key] = c
        # a decided cell: p = 0 where it was decided, 1 in the other family (see the module's doc)
        p_diff = [comparisons[key]["p_value"] if key in comparisons
                  else (0.0 if state[key]["family"] == "difference" else 1.0) for key in keys]
        p_equiv = [comparisons[key]["p_tost"] if key in comparisons
                   else (0.0 if state[key]["family"] == "equivalence" else 1.0) for key in keys]
        level = plan.level(k)
        for key, ph, pe in zip(keys, holm([1.0 if math.isnan(p) else p for p in p_diff]),
                               holm([1.0 if math.isnan(p) else p for p in p_equiv])):
            if key not in comparisons:
                continue
            c = comparisons[key]
            c.update(p_holm=ph, p_tost_holm=pe, level=level)
            entry = state[key]
            entry["comparison"] = c
            if ph <= level:
                entry.update(decision="better" if c["mean_pct"] > 0 else "worse", decided_at=n, family="difference")
            elif pe <= level:
                entry.update(decision="equivalent", decided_at=n, family="equivalence")
        reached = k
    return {"cells": state, "look": reached, "next": None}


def add_detectable_effects(result, family_size):
    """Adds to each cell's comparison "mde_pct": the effect its look's test would detect with 80%
    power at the strictest Holm level of that look (level / family size), given the spread of its
    per-seed improvements. Beside the interval it says what "no detectable difference" rules out."""
    for entry in result["cells"].values():
        c = entry["comparison"]
        if c is not None:
            sd = float(np.std(c["improvement_pct"], ddof=1)) if c["n"] > 1 else math.nan
            c["mde_pct"] = min_detectable_effect(sd, c["n"], c["level"] / family_size)
    return result


def simulate(plan, effects_pct, sd_pct, trials, seed=0, loss=1.5):
    """The plan's operating characteristics by simulation: per trial, a baseline and one cell per
    entry of effects_pct (true improvements in percent). A cell's per-seed improvement over the
    baseline is its effect plus a baseline term shared by every cell of that seed and a term of
    its own, each of std sd_pct / sqrt(2): a paired difference has std sd_pct and mean exactly the
    effect, and the cells are correlated through the baseline's seeds, as they are in a sweep.
    Returns {"rates": {cell index: {decision: share}}, "mean_seeds": mean seeds per cell,
    "any_false": share of trials with at least one false better/worse (effect 0) or false
    equivalent (|effect| >= margin)}."""
    rng = np.random.default_rng(seed)
    noise = sd_pct / 100 / math.sqrt(2)
    n_max = plan.looks[-1]
    counts = [{d: 0 for d in DECISIONS} for _ in effects_pct]
    seeds_used, any_false = 0, 0
    for _ in range(trials):
        seeds = range(1, n_max + 1)
        base_draw = rng.standard_normal(n_max)
        baseline = {s: loss * (1 + noise * base_draw[s - 1]) for s in seeds}
        cells = {}
        for i, effect in enumerate(effects_pct):
            draw = rng.standard_normal(n_max)
            # (baseline - cell) / baseline = effect / 100 + noise * (base_draw - draw), exactly
            cells[i] = {s: baseline[s] * (1 - effect / 100 - noise * (base_draw[s - 1] - draw[s - 1])) for s in seeds}
        result = decide(plan, baseline, cells, compare=t_test)
        false = False
        for i, effect in enumerate(effects_pct):
            entry = result["cells"][i]
            counts[i][entry["decision"]] += 1
            seeds_used += entry["decided_at"] or n_max
            false |= (effect == 0 and entry["decision"] in ("better", "worse")) or \
                     (abs(effect) >= plan.margin and entry["decision"] == "equivalent")
        any_false += false
    return {"rates": {i: {d: c / trials for d, c in cell.items()} for i, cell in enumerate(counts)},
            "mean_seeds": seeds_used / (trials * len(effects_pct)), "any_false": any_false / trials}
