"""
Paired comparisons of a variant against the baseline over seeds. Same seed, same data order
and initial weights: the per-seed difference removes most of the seed-to-seed noise.
"""

import math

import numpy as np
from scipy import stats


def paired_comparison(baseline, variant, confidence=0.95):
    """baseline, variant: {seed: val loss}. Improvement is the relative decrease of the loss in
    percent (positive = the variant is better), per seed; returned with its mean, the
    t-interval of that mean, and the two-sided p-value of a one-sample t-test of the per-seed
    improvements against 0 (the paired t-test). Seeds present in only one side are ignored."""
    seeds = sorted(set(baseline) & set(variant))
    b = np.array([baseline[s] for s in seeds], dtype=float)
    v = np.array([variant[s] for s in seeds], dtype=float)
    improvement = (b - v) / b * 100.0
    n = len(seeds)
    result = {"n": n, "seeds": seeds, "improvement_pct": improvement.tolist(),
              "mean_pct": float(improvement.mean()) if n else math.nan,
              "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "significant": False}
    if n >= 2:
        sd = improvement.std(ddof=1)
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        result["ci_low"], result["ci_high"] = result["mean_pct"] - half, result["mean_pct"] + half
        if sd > 0:
            result["p_value"] = float(stats.ttest_1samp(improvement, 0.0).pvalue)
        result["significant"] = bool(result["ci_low"] > 0 or result["ci_high"] < 0)
    return result


def mean_std(values):
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def compare_records(records, iters, metric="final_val_loss"):
    """From a sweep's results records: every (variant, mode) at `iters` compared with the
    baseline, seed by seed. Returns {(variant, mode): {"losses": {seed: loss}, "mean", "std",
    "comparison"}}; the baseline is under ("baseline", "none"). Only runs with status ok count."""
    groups = {}
    for r in records:
        if r["iters"] == iters and r["status"] == "ok" and r.get(metric) is not None:
            groups.setdefault((r["variant"], r["mode"]), {})[r["seed"]] = r[metric]
    baseline = groups.get(("baseline", "none"), {})
    out = {}
    for key, losses in groups.items():
        mean, std = mean_std(list(losses.values()))
        out[key] = {"losses": losses, "mean": mean, "std": std,
                    "comparison": paired_comparison(baseline, losses) if key[0] != "baseline" else None}
    return out
