"""Decisions at a declared margin and the group-sequential seed plan (experiments/seed_plan.py)."""

import math

import pytest

from configurator import ConfigError
from experiments.seed_plan import (SeedPlan, add_detectable_effects, decide, min_detectable_effect, simulate, t_test,
                                   tost_p)
from experiments.stats import paired_comparison


def t4_cdf(t):
    """Student's t CDF with 4 degrees of freedom in closed form (no scipy): 1/2 + 3/4 x (1 - x^2/3),
    x = t / sqrt(4 + t^2)."""
    x = t / math.sqrt(4 + t * t)
    return 0.5 + 0.75 * x * (1 - x * x / 3)


def test_tost_against_a_hand_computed_example():
    d = [0.1, -0.2, 0.3, 0.0, 0.2]  # mean 0.08, sd sqrt(0.148 / 4), n 5
    se = math.sqrt(0.148 / 4) / math.sqrt(5)
    p_lower = 1 - t4_cdf((0.08 + 0.5) / se)  # H0: mean <= -0.5
    p_upper = t4_cdf((0.08 - 0.5) / se)  # H0: mean >= +0.5
    assert tost_p(d, 0.5) == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    assert tost_p(d, 0.5) == pytest.approx(0.0040733, rel=1e-4)
    # a margin narrower than the interval: not equivalent; mirrored data: the same p
    assert tost_p(d, 0.1) > 0.3
    assert tost_p([-x for x in d], 0.5) == pytest.approx(tost_p(d, 0.5), rel=1e-9)
    assert math.isnan(tost_p([0.3], 0.5))


def test_the_decision_uses_the_reports_t_test():
    baseline = {s: 1.5 + 0.01 * math.sin(s) for s in range(1, 13)}
    variant = {s: 1.5 + 0.01 * math.cos(3 * s) for s in baseline}
    assert t_test(baseline, variant)["p_value"] == pytest.approx(paired_comparison(baseline, variant)["p_value"], rel=1e-9)


def test_minimum_detectable_effect_has_its_power():
    # the t-test at level 0.05 with n = 10, sd 1: the textbook value is about 1.0 sd (0.998)
    mde = min_detectable_effect(1.0, 10, 0.05)
    assert mde == pytest.approx(0.998, abs=0.01)
    assert min_detectable_effect(1.0, 40, 0.05) < mde / 1.9  # four times the seeds, about half
    assert min_detectable_effect(1.0, 10, 0.01) > mde
    assert math.isnan(min_detectable_effect(1.0, 1, 0.05))


def synthetic(effects, n, spread=0.005, loss=1.5):
    """A baseline at a constant loss and cells whose per-seed improvement is effect +- spread
    (percent), alternating, so that the mean is the effect for even n."""
    baseline = {s: loss for s in range(1, n + 1)}
    cells = {key: {s: loss * (1 - (effect + (spread if s % 2 else -spread)) / 100) for s in baseline}
             for key, effect in effects.items()}
    return baseline, cells


def test_decision_labels_on_synthetic_records():
    plan = SeedPlan.proportional((4, 8), margin=0.5)
    baseline, cells = synthetic({"better": 2.0, "worse": -2.0, "equivalent": 0.0}, 8)
    # an effect near the margin with a wide spread decides nothing, at the last look
    baseline_u, wide = synthetic({"undecided": 0.45}, 8, spread=0.6)
    cells.update(wide)
    result = add_detectable_effects(decide(plan, baseline, cells), len(cells))
    labels = {k: v["decision"] for k, v in result["cells"].items()}
    assert labels == {"better": "better", "worse": "worse", "equivalent": "equivalent", "undecided": "undecided"}
    assert result["next"] is None
    # the clear cells were decided at the first look and got no more seeds; the unclear one went on
    assert {k: v["decided_at"] for k, v in result["cells"].items()} == {
        "better": 4, "worse": 4, "equivalent": 4, "undecided": None}
    assert result["cells"]["undecided"]["comparison"]["n"] == 8
    assert result["cells"]["undecided"]["comparison"]["mde_pct"] > 0.5


def test_the_plan_asks_for_the_seeds_of_its_next_look():
    plan = SeedPlan.proportional((4, 8), margin=0.5)
    baseline, cells = synthetic({"equivalent": 0.0}, 4)
    _, wide = synthetic({"unclear": 0.3}, 4, spread=1.0)
    cells.update(wide)
    result = decide(plan, baseline, cells)
    assert result["next"] == (8, ["unclear"]) and result["look"] == 0
    # nothing run yet: the first look's seeds for every cell
    assert decide(plan, {}, {"a": {}, "b": {}})["next"] == (4, ["a", "b"])


def test_a_plan_is_checked():
    for looks, spend, margin in [((5, 3), (0.5, 0.5), 0.5), ((5, 10), (0.5, 0.4), 0.5),
                                 ((1,), (1.0,), 0.5), ((5,), (1.0,), 0.0), ((5, 10), (float("nan"), 1.0), 0.5),
                                 ((5,), (float("nan"),), 0.5)]:
        with pytest.raises(ConfigError):
            SeedPlan(looks, spend, margin)


TRIALS = 4000  # Monte Carlo error of a rate near 0.05: about 0.0034; the bound allows 3 of it
SLACK = 3 * math.sqrt(0.05 * 0.95 / TRIALS)


@pytest.mark.slow  # about 10 s: the whole procedure, simulated
def test_the_seed_plan_keeps_its_error_rates():
    plan = SeedPlan((5, 10, 20), (0.1, 0.2, 0.7), margin=0.5)
    # no true effect anywhere: a "better" or "worse" anywhere in the family is an error
    null = simulate(plan, [0.0] * 4, sd_pct=0.9, trials=TRIALS, seed=1)
    assert null["any_false"] <= plan.alpha + SLACK
    # a true effect of exactly the margin, either way: "equivalent" anywhere is an error
    edge = simulate(plan, [0.5, -0.5, 0.5, -0.5], sd_pct=0.9, trials=TRIALS, seed=2)
    assert edge["any_false"] <= plan.alpha + SLACK
    # and the plan decides: a large effect is found at the first look, no effect is mostly
    # called equivalent; the expected seeds per cell lie between the first and the last look
    mixed = simulate(plan, [-3.0, 0.0], sd_pct=0.5, trials=300, seed=3)
    assert mixed["rates"][0]["worse"] == 1.0 and mixed["rates"][1]["equivalent"] > 0.7
    assert 5 <= mixed["mean_seeds"] < 20


@pytest.mark.slow  # about 5 s
def test_the_simulation_catches_an_equivalence_test_at_twice_its_level(monkeypatch):
    """A design where the TOST has power at every look (20 and 40 seeds, alpha spent half and
    half), effects exactly at the margin: the plan's false "equivalent" rate stays within alpha,
    and the same plan with each TOST p halved (tested at twice its level) is caught."""
    import experiments.seed_plan as seed_plan
    plan = SeedPlan((20, 40), (0.5, 0.5), margin=0.5)
    at_margin = [0.5, -0.5, 0.5, -0.5]
    assert simulate(plan, at_margin, sd_pct=0.9, trials=TRIALS, seed=2)["any_false"] <= plan.alpha + SLACK
    real = seed_plan.tost_p
    monkeypatch.setattr(seed_plan, "tost_p", lambda improvement, margin: real(improvement, margin) / 2)
    assert simulate(plan, at_margin, sd_pct=0.9, trials=TRIALS, seed=2)["any_false"] > plan.alpha + SLACK


def test_equivalent_is_decided_exactly_when_the_narrower_interval_lies_within_the_margin():
    """One cell, one look: "equivalent" at level a exactly when the (1 - 2a) t interval of the mean
    improvement lies inside +-margin (and the t-test does not decide better or worse first)."""
    import numpy as np
    from scipy import stats as scipy_stats
    plan = SeedPlan((10,), (1.0,), margin=0.5)
    rng = np.random.default_rng(0)
    seen = set()
    for trial in range(200):
        improvement = rng.normal(rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.9), size=10)
        baseline = {s: 2.0 for s in range(1, 11)}
        cell = {s: 2.0 * (1 - improvement[s - 1] / 100) for s in range(1, 11)}
        result = decide(plan, baseline, {"c": cell}, compare=t_test)["cells"]["c"]
        d = np.array(result["comparison"]["improvement_pct"])
        half = scipy_stats.t.ppf(1 - plan.alpha, 9) * d.std(ddof=1) / math.sqrt(10)
        inside = -0.5 < d.mean() - half and d.mean() + half < 0.5
        different = result["comparison"]["p_value"] <= plan.alpha
        expected = ("better" if d.mean() > 0 else "worse") if different else "equivalent" if inside else "undecided"
        assert result["decision"] == expected, (trial, d.mean(), half)
        seen.add(expected)
    assert seen == {"better", "worse", "equivalent", "undecided"}


class EveryLookAtFullAlpha(SeedPlan):
    """The naive design: the whole alpha at every look."""
    def level(self, k):
        return self.alpha


@pytest.mark.slow
def test_the_simulation_catches_a_design_that_spends_alpha_twice():
    naive = EveryLookAtFullAlpha((3, 4, 5, 6, 8, 10, 14, 20), (0.125,) * 8, margin=0.5)
    null = simulate(naive, [0.0] * 4, sd_pct=0.9, trials=600, seed=1)
    assert null["any_false"] > naive.alpha + 3 * math.sqrt(0.05 * 0.95 / 600)
