import math

import numpy as np
import pytest

from experiments.stats import (correct_comparisons, spearman_test, equal_wall_time, exact_test_note, holm, mean_std,
                               min_detectable_effect, min_exact_p,
                               noise_floor, paired_comparison, permutation_test, sign_test)


def test_paired_comparison_known_answer():
    # improvements of exactly 1%, 2%, 3%: mean 2, sd 1, n 3
    baseline = {1: 100.0, 2: 100.0, 3: 100.0}
    variant = {1: 99.0, 2: 98.0, 3: 97.0, 9: 50.0}  # seed 9 has no baseline: ignored
    r = paired_comparison(baseline, variant)
    assert r["n"] == 3 and r["mean_pct"] == pytest.approx(2.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - half, 2 + half))
    # t = 2 / (1 / sqrt 3); for df = 2 the t CDF is 0.5 + t / (2 sqrt(2 + t^2))
    t = 2 * math.sqrt(3)
    assert r["p_value"] == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))))
    assert r["significant"] is False  # the interval includes 0
    assert r["median_pct"] == pytest.approx(2.0) and r["seeds_ahead"] == 3
    # one bad seed moves the mean below zero, not the median or the count
    r = paired_comparison(baseline, {1: 99.0, 2: 98.0, 3: 110.0})
    assert r["mean_pct"] == pytest.approx(-7 / 3) and r["median_pct"] == pytest.approx(1.0) and r["seeds_ahead"] == 2


def test_consistent_large_improvement_is_significant_and_worse_is_negative():
    baseline = {s: 2.0 + 0.1 * s for s in range(8)}
    better = {s: baseline[s] * 0.95 + 0.001 * (s % 2) for s in range(8)}
    r = paired_comparison(baseline, better)
    assert r["significant"] and r["ci_low"] > 4.5 and r["p_value"] < 1e-6
    worse = paired_comparison(baseline, {s: baseline[s] * (1.1 + 0.01 * (-1) ** s) for s in range(8)})
    assert worse["mean_pct"] == pytest.approx(-10.0)
    assert worse["significant"] and worse["ci_high"] < -9 and worse["p_value"] < 1e-6


def test_single_seed_has_no_interval():
    r = paired_comparison({1: 2.0}, {1: 1.9})
    assert r["n"] == 1 and math.isnan(r["ci_low"]) and not r["significant"]
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))


def test_holm_against_a_hand_computed_example():
    # m = 4 tested (the NaN is no test): sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005 = 0.02,
    # 3*0.01 = 0.03, 2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06 (step-down keeps them monotone)
    adjusted = holm([0.01, math.nan, 0.04, 0.03, 0.005])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[2] == pytest.approx(0.06)
    assert adjusted[3] == pytest.approx(0.06) and adjusted[4] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9]) and holm([0.6, 0.7]) == [1.0, 1.0]


def test_sign_test_exact_values():
    assert sign_test([0.1, 0.2, 0.3]) == pytest.approx(2 / 8)  # all of one sign, n = 3
    assert sign_test([1, 2, 3, 4, -1]) == pytest.approx(2 * (1 + 5) / 32)  # one of five against
    assert sign_test([1, -1]) == 1.0
    assert sign_test([1, 2, 0]) == pytest.approx(2 / 4)  # the tie is dropped: n = 2
    assert sign_test([-1.0] * 6) == pytest.approx(2 / 64)
    assert math.isnan(sign_test([0.0, 0.0]))


def test_permutation_test_exact_values():
    # sums of +-1 +-2 +-3: 6 and -6 reach |6|: 2 of 8
    assert permutation_test([1.0, 2.0, 3.0]) == (pytest.approx(0.25), True)
    # +-1 +-2 +-3 +-0.5 reaching |5.5|: 6.5, 5.5 and their negatives: 4 of 16
    assert permutation_test([1.0, 2.0, 3.0, -0.5]) == (pytest.approx(0.25), True)
    assert permutation_test([1.0, -1.0])[0] == 1.0
    assert permutation_test([2.0] * 16) == (pytest.approx(2 / 2 ** 16), True)


def test_permutation_test_monte_carlo_beyond_16_is_seeded():
    d = np.linspace(0.5, 2.0, 20)  # all positive: the exact p would be 2 / 2^20
    p, exact = permutation_test(d, resamples=2000)
    assert not exact and p == pytest.approx(1 / 2001)
    mixed = np.where(np.arange(20) % 3 == 0, -d, d)
    assert permutation_test(mixed, seed=5, resamples=2000) == permutation_test(mixed, seed=5, resamples=2000)


def test_small_n_note_says_the_exact_tests_cannot_reach_alpha():
    assert min_exact_p(3) == 0.25 and min_exact_p(5) == pytest.approx(0.0625)
    note = exact_test_note(3)
    assert "p=0.25" in note and "n >= 6" in note
    assert exact_test_note(6) is None
    r = paired_comparison({1: 2.0, 2: 2.0, 3: 2.0}, {1: 1.9, 2: 1.8, 3: 1.95})
    assert r["p_sign"] == pytest.approx(0.25) and r["p_permutation"] == pytest.approx(0.25)
    assert r["exact_note"] == note


def test_correction_decides_on_the_holm_p_and_keeps_the_raw_one():
    base = {s: 2.0 for s in range(6)}
    better = paired_comparison(base, {s: 1.9 - 0.01 * s for s in range(6)})
    noisy = paired_comparison(base, {s: 2.0 + (0.05 if s % 2 else -0.049) for s in range(6)})
    worse = paired_comparison(base, {s: 2.2 + 0.01 * s for s in range(6)})
    single = paired_comparison(base, {1: 1.5})
    family = {"better": better, "noisy": noisy, "worse": worse, "single": single}
    assert correct_comparisons(family) == 3  # the single seed has no t-test: not in the family
    assert better["decision"] == "better" and worse["decision"] == "worse"
    assert noisy["decision"] == "no detectable difference" and single["decision"] == "untested"
    # beside the undecided row, what its seeds could have found: the t-test's 80%-power effect at
    # the strictest Holm level of the family of 3 (noisy's per-seed improvement has sd ~2.6%)
    assert noisy["mde_pct"] == pytest.approx(min_detectable_effect(np.std(noisy["improvement_pct"], ddof=1), 6, 0.05 / 3))
    assert noisy["mde_pct"] > abs(noisy["mean_pct"]) and math.isnan(single["mde_pct"])
    raw = [better["p_value"], noisy["p_value"], worse["p_value"]]
    assert [better["p_holm"], noisy["p_holm"], worse["p_holm"]] == pytest.approx(holm(raw))
    assert better["p_holm"] >= better["p_value"]


def test_noise_floor():
    floor = noise_floor({1: 2.0, 2: 2.2, 3: 2.1})
    assert floor["n"] == 3 and floor["mean"] == pytest.approx(2.1)
    assert floor["std_pct"] == pytest.approx(100 * 0.1 / 2.1)
    assert floor["aa_pairs"] == 3 and floor["aa_max_pct"] == pytest.approx(10.0)  # (2.2 - 2.0) / 2.0


def test_equal_wall_time_interpolates_the_slower_variant_at_the_baselines_time():
    its = range(0, 1001, 100)
    base = {s: {"curve": [(i, 3 - i / 1000) for i in its], "iters": 1000, "step_ms": 10.0} for s in (1, 2)}
    # better per step (1.5 vs 2.0 at 1000 iterations) but twice as slow: 500 steps in the same time
    slow = {s: {"curve": [(i, 3 - 1.5 * i / 1000) for i in its], "iters": 1000, "step_ms": 20.0} for s in (1, 2)}
    r = equal_wall_time(base, slow)
    assert r["overhead"] == pytest.approx(2.0) and r["variant_iters"] == pytest.approx(500)
    assert r["mean_pct"] == pytest.approx((2.0 - 2.25) / 2.0 * 100)
    assert r["equal_steps_pct"] == pytest.approx(25.0)
    # a faster variant is not extrapolated past its last evaluation
    fast = {s: dict(slow[s], step_ms=5.0) for s in (1, 2)}
    assert equal_wall_time(base, fast)["mean_pct"] == pytest.approx(25.0)


def test_spearman_permutation_p_is_exact_for_few_points_and_agrees_with_enumeration():
    # four points in perfect order: rho 1, and 2 of the 24 orderings reach |rho| = 1
    rho, p, exact = spearman_test([1.0, 2.0, 3.0, 4.0], [0.1, 0.5, 0.7, 2.0])
    assert rho == pytest.approx(1.0) and exact and p == pytest.approx(2 / 24)
    rho, p, _ = spearman_test([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 3.0, 4.0, 1.0, 2.0])
    assert rho == pytest.approx(-0.8)
    # by hand over the 120 orderings of 5 ranks: those with |rho| >= 0.8
    import itertools
    r = np.arange(5) - 2.0
    hits = sum(abs(float(np.dot(r, np.array(o) - 2.0)) / 10.0) >= 0.8 - 1e-12 for o in itertools.permutations(range(5)))
    assert p == pytest.approx(hits / 120)
    assert math.isnan(spearman_test([1, 1, 1, 1], [1, 2, 3, 4])[1])
    assert math.isnan(spearman_test([1.0, 2.0, 3.0, math.nan], [1, 2, 3, 4])[1])  # never p = 0 from a NaN
    assert math.isnan(spearman_test([1.0, 2.0], [1.0, 2.0])[1])
    rho, p, _ = spearman_test([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])  # ties: average ranks
    assert rho == pytest.approx(0.9486832980505138)
    ties = np.array([1.0, 2.5, 2.5, 4.0])  # x's average ranks, against every ordering of y's ranks 1-4
    hits = sum(abs(np.corrcoef(ties, o)[0, 1]) >= rho - 1e-12 for o in itertools.permutations([1.0, 2.0, 3.0, 4.0]))
    assert p == pytest.approx(hits / 24)
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    rho, p, exact = spearman_test(x, x + rng.normal(size=12) * 0.1, resamples=2000)
    assert not exact and rho > 0.9 and p == pytest.approx(1 / 2001)
