import math
import os
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
from experiment_stats import mean_std, paired_comparison  # noqa: E402


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
