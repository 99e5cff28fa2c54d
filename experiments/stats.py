"""
Statistics of a comparison of centering variants with the baseline, paired by seed.

Same seed, same data order and initial weights: the per-seed difference removes most of the
seed-to-seed noise. For each variant the per-seed improvement (relative decrease of the loss, in
percent, positive = the variant is better) is tested three ways:

- the paired t-test (one-sample t-test of the improvements against 0) with its 95% interval;
- the exact two-sided sign test (how many seeds improve; ties dropped);
- the paired permutation test: the mean improvement against its distribution under every
  assignment of signs to the per-seed improvements (all 2^n for n <= 16, else a seeded Monte
  Carlo sample), which assumes only that the differences are symmetric about 0 under no effect.

With n seeds neither exact test can go below 2 / 2^n (all seeds on one side), so with n <= 5 they
cannot reach 0.05: `exact_test_note` says so wherever a report prints them.

A report makes many comparisons: `holm` applies the Holm-Bonferroni step-down correction across
all of them (the count is part of its output), and a decision ("better", "worse", "no
detectable difference") is taken on the corrected p-value of the t-test; the raw p-values stay beside it.

`noise_floor` says how much the baseline moves with the seed alone; `equal_wall_time` estimates
the effect when a slower variant gets the baseline's wall time instead of its number of steps.
"""

import itertools
import math

import numpy as np
from scipy import special, stats

from experiments.plan import BASELINE, BASELINE_MODE

ALPHA = 0.05
UNDECIDED = "no detectable difference"  # never "level": equivalence is a test of its own (tost_p)
POWER = 0.8  # the power at which a report prints each cell's minimum detectable effect
EXACT_PERMUTATION_MAX_N = 16  # 2^16 sign assignments; beyond that a Monte Carlo sample
MONTE_CARLO_RESAMPLES = 100_000


def relative_improvement_pct(baseline, variant):
    """Per seed, (baseline - variant) / baseline in percent, for the seeds both sides have.
    baseline, variant: {seed: loss}. Returns (seeds, numpy array)."""
    seeds = sorted(set(baseline) & set(variant))
    b = np.array([baseline[s] for s in seeds], dtype=float)
    v = np.array([variant[s] for s in seeds], dtype=float)
    return seeds, (b - v) / b * 100.0


def sign_test(differences):
    """Exact two-sided sign test of the median difference against 0: zeros are dropped, then
    p = P(|K - n/2| >= |k - n/2|) for K ~ Binomial(n, 1/2), with k the number of positive
    differences. NaN when every difference is 0 (or there are none)."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return math.nan
    k = int((d > 0).sum())
    tail = min(k, n - k)
    p = 2 * sum(math.comb(n, i) for i in range(tail + 1)) / 2 ** n
    return min(1.0, p)


def permutation_test(differences, seed=0, resamples=MONTE_CARLO_RESAMPLES):
    """Paired permutation (sign-flip) test of the mean difference against 0, two-sided.
    Returns (p, exact): exact over all 2^n sign assignments when n <= EXACT_PERMUTATION_MAX_N,
    else from `resamples` seeded random assignments, p = (hits + 1) / (resamples + 1)."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0 or not np.any(d):
        return math.nan, True
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))  # equal sums up to rounding count as ties
    if n <= EXACT_PERMUTATION_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float((means >= observed - tolerance).mean()), True
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(resamples, n))
    hits = int((np.abs(signs @ d) / n >= observed - tolerance).sum())
    return (hits + 1) / (resamples + 1), False


EXACT_RANK_PERMUTATION_MAX_N = 8  # 8! = 40320 orderings; beyond that a Monte Carlo sample


def spearman_test(x, y, seed=0, resamples=MONTE_CARLO_RESAMPLES):
    """Spearman's rank correlation of paired values and its two-sided permutation p-value:
    (rho, p, exact). The p is the share of orderings of y's ranks whose |rho| reaches the
    observed one: over all n! orderings when n <= EXACT_RANK_PERMUTATION_MAX_N, else from
    `resamples` seeded random ones, p = (hits + 1) / (resamples + 1). (scipy's t approximation
    is far off for a handful of points: it gives p = 0 for four perfectly ranked ones, whose
    exact p is 2/24.)"""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan, math.nan, True
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    n = len(rx)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan, math.nan, True
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float(rx @ rx) * float(ry @ ry))
    rho = float(rx @ ry) / norm
    exact = n <= EXACT_RANK_PERMUTATION_MAX_N
    if exact:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((resamples, n)), axis=1)
    hits = np.abs(ry[orders] @ rx) / norm >= abs(rho) - 1e-12
    p = float(hits.mean()) if exact else (int(hits.sum()) + 1) / (resamples + 1)
    return rho, p, exact


def min_exact_p(n):
    """The smallest two-sided p-value the sign test or the exact permutation test can give with
    n paired differences (all of one sign): 2 / 2^n."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def exact_test_note(n, alpha=ALPHA):
    """A one-line note when n seeds are too few for an exact test to reach alpha, else None."""
    if min_exact_p(n) <= alpha:
        return None
    needed = next(m for m in itertools.count(1) if min_exact_p(m) <= alpha)
    return (f"with n={n} the exact sign and permutation tests cannot go below p={min_exact_p(n):.3g}, "
            f"so they cannot reach {alpha} (that needs n >= {needed})")


def paired_comparison(baseline, variant, confidence=0.95):
    """baseline, variant: {seed: loss}. Improvement is the relative decrease of the loss in
    percent (positive = the variant is better), per seed; returned with its mean, the
    t-interval of that mean, the two-sided p-value of the paired t-test ("p_value"), of the
    exact sign test ("p_sign") and of the permutation test ("p_permutation"), and a note when n
    is too small for the exact tests. Seeds present in only one side are ignored.
    "significant" (the interval excludes 0) is uncorrected; see `holm` for the decision.
    "median_pct" and "seeds_ahead" (seeds where the variant is better) are a robust view of the
    same differences, not part of any decision."""
    seeds, improvement = relative_improvement_pct(baseline, variant)
    n = len(seeds)
    p_perm, exact = permutation_test(improvement)
    result = {"n": n, "seeds": seeds, "improvement_pct": improvement.tolist(),
              "mean_pct": float(improvement.mean()) if n else math.nan,
              # robust view beside the decision: one bad seed moves the mean, not these
              "median_pct": float(np.median(improvement)) if n else math.nan,
              "seeds_ahead": int((improvement > 0).sum()),
              "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "significant": False,
              "p_sign": sign_test(improvement), "p_permutation": p_perm, "permutation_exact": exact,
              "exact_note": exact_test_note(n)}
    if n >= 2:
        sd = improvement.std(ddof=1)
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        result["ci_low"], result["ci_high"] = result["mean_pct"] - half, result["mean_pct"] + half
        if sd > 1e-9 * max(1.0, abs(result["mean_pct"])):  # identical improvements: no t-test
            result["p_value"] = float(stats.ttest_1samp(improvement, 0.0).pvalue)
        result["significant"] = bool(result["ci_low"] > 0 or result["ci_high"] < 0)
    return result


def tost_p(differences, margin):
    """Two one-sided t-tests of equivalence: H0 mean <= -margin and H0 mean >= +margin, each
    rejected by a one-sided t-test; p is the larger of the two one-sided p-values (rejecting both
    at level a is the (1 - 2a) interval lying inside (-margin, +margin)). NaN with fewer than two
    differences; with identical differences, 0 inside the margin and 1 outside."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2 or margin <= 0:
        return math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    p_lower = special.stdtr(n - 1, -(mean + margin) / se)  # H0: mean <= -margin (the t CDF, as a ufunc)
    p_upper = special.stdtr(n - 1, (mean - margin) / se)  # H0: mean >= +margin
    return float(max(p_lower, p_upper))


def min_detectable_effect(sd, n, level, power=POWER):
    """The smallest true mean difference that a two-sided one-sample t-test at `level` with n
    differences of standard deviation sd detects with probability `power` (noncentral t;
    the far tail is ignored, as usual). NaN when n < 2 or sd is unknown."""
    if n < 2 or not (sd > 0) or not math.isfinite(sd):
        return math.nan
    df = n - 1
    critical = stats.t.ppf(1 - level / 2, df)

    def shortfall(delta):
        return stats.nct.sf(critical, df, delta * math.sqrt(n) / sd) - power

    high = sd
    while shortfall(high) < 0:
        high *= 2
    low = 0.0
    for _ in range(60):  # bisection to well below the printed precision
        mid = (low + high) / 2
        low, high = (mid, high) if shortfall(mid) < 0 else (low, mid)
    return high


def holm(p_values):
    """Holm-Bonferroni step-down adjustment of a family of p-values (a list; NaN = no test, left
    out of the family and returned as NaN). With the m tested p-values sorted, p_(1) <= ... <=
    p_(m), the adjusted p_(i) is max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting where
    the adjusted p <= alpha controls the family-wise error rate at alpha. Returns the adjusted
    p-values in the input order."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def correct_comparisons(comparisons, alpha=ALPHA):
    """comparisons: {key: paired_comparison result}, every comparison a report makes. Adds to
    each "p_holm" (the t-test's p, Holm-corrected across all of them), "p_permutation_holm" and
    "decision": "better"/"worse" when p_holm <= alpha, else UNDECIDED ("untested" without
    a p-value), and "mde_pct": the effect the t-test would detect with 80% power at the strictest
    Holm level (alpha / family size), given the spread of the seeds: what "no detectable
    difference" rules out. Returns the number of comparisons in the family (those with a t-test p)."""
    keys = list(comparisons)
    for field, p_field in (("p_holm", "p_value"), ("p_permutation_holm", "p_permutation")):
        for key, p in zip(keys, holm([comparisons[k][p_field] for k in keys])):
            comparisons[key][field] = p
    family = sum(not math.isnan(c["p_value"]) for c in comparisons.values())
    for c in comparisons.values():
        sd = float(np.std(c["improvement_pct"], ddof=1)) if c["n"] > 1 else math.nan
        c["mde_pct"] = min_detectable_effect(sd, c["n"], alpha / max(family, 1))
        if math.isnan(c["p_holm"]):
            c["decision"] = "untested"
        elif c["p_holm"] <= alpha:
            c["decision"] = "better" if c["mean_pct"] > 0 else "worse"
        else:
            c["decision"] = UNDECIDED
    return family


def mean_std(values):
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan


def noise_floor(baseline):
    """How much the baseline moves when only the seed changes. baseline: {seed: loss}.
    "std_pct": the seed-to-seed standard deviation in percent of the mean. "aa_std_pct" and
    "aa_max_pct": an A/A comparison, the baseline against itself: the relative differences
    (b_i - b_j) / b_j in percent over every ordered pair of distinct seeds, their standard
    deviation and largest magnitude; what an unpaired comparison of two identical methods shows.
    (A same-seed repeat is not used: on a deterministic device it is bit-identical, so the
    paired design's A/A difference is 0.)"""
    losses = [baseline[s] for s in sorted(baseline)]
    mean, std = mean_std(losses) if losses else (math.nan, math.nan)
    pairs = [(a - b) / b * 100.0 for a, b in itertools.permutations(losses, 2)]
    return {"n": len(losses), "mean": mean, "std": std,
            "std_pct": 100.0 * std / mean if losses else math.nan,
            "aa_pairs": len(pairs) // 2,
            "aa_std_pct": float(np.std(pairs, ddof=1)) if len(pairs) > 1 else math.nan,
            "aa_max_pct": float(np.max(np.abs(pairs))) if pairs else math.nan}


def loss_at_iter(curve, iteration):
    """The validation loss at a (fractional) iteration, linearly interpolated between the
    evaluations of curve [(iter, val_loss), ...]. Beyond the last evaluation, the last value
    (the run did not go further); before the first, the first."""
    its, losses = zip(*sorted(curve))
    return float(np.interp(iteration, its, losses))


def equal_wall_time(baseline, variant, confidence=0.95):
    """The effect at equal wall time, beside the effect at equal steps.

    baseline, variant: {seed: {"curve": [(iter, val_loss), ...], "iters": int, "step_ms": float}}
    (the validation curve from the run's metrics.jsonl eval records, the run's iterations, its
    median training step time). Method, per seed: the overhead r = variant step_ms / baseline
    step_ms; in the wall time of the baseline's T iterations the variant takes T / r steps; its
    loss there is read off its own validation curve by linear interpolation, and compared with
    the baseline's loss at T. Caveats, said in every report: (1) the variant's curve comes from a
    run scheduled for T steps, so at T / r its learning rate has not decayed as a run planned for
    T / r steps would have (this favours the baseline when r > 1); (2) a faster variant (r < 1)
    is not extrapolated past its last evaluation, so its gain is understated; (3) it is a
    validation-split estimate, since the test split is evaluated once, at the end; (4) step
    times come from the same runs, so they carry whatever else the machine was doing.
    Returns paired_comparison over the per-seed equal-wall-time losses, plus "overhead" (the
    mean r), "variant_iters" (the mean T / r) and "equal_steps_pct" (the mean improvement read
    off the same curves at T, for a like-for-like look at what the wall time changes)."""
    seeds = sorted(set(baseline) & set(variant))
    base_loss, var_loss, var_at_steps, ratios, steps = {}, {}, {}, [], []
    for s in seeds:
        b, v = baseline[s], variant[s]
        if not (b.get("step_ms") and v.get("step_ms") and b.get("curve") and v.get("curve")):
            continue
        r = v["step_ms"] / b["step_ms"]
        base_loss[s] = loss_at_iter(b["curve"], b["iters"])
        var_loss[s] = loss_at_iter(v["curve"], min(b["iters"] / r, v["iters"]))
        var_at_steps[s] = loss_at_iter(v["curve"], b["iters"])
        ratios.append(r)
        steps.append(b["iters"] / r)
    result = paired_comparison(base_loss, var_loss, confidence)
    result["equal_steps_pct"] = paired_comparison(base_loss, var_at_steps)["mean_pct"]
    result["overhead"] = float(np.mean(ratios)) if ratios else math.nan
    result["variant_iters"] = float(np.mean(steps)) if steps else math.nan
    return result


def compare_records(records, iters, metric="final_val_loss"):
    """From a sweep's results records: every (variant, mode) at `iters` compared with the
    baseline, seed by seed. Returns {(variant, mode): {"losses": {seed: loss}, "mean", "std",
    "comparison"}}; the baseline is under (BASELINE, BASELINE_MODE). Only runs with status ok count.
    Raises ValueError where one variant, mode and seed has runs at two grid points (params): which
    of them to pair would be a guess."""
    groups, grid_point = {}, {}
    for r in records:
        if r["iters"] == iters and r["status"] == "ok" and r.get(metric) is not None:
            run = (r["variant"], r["mode"], r["seed"])
            params = r.get("params") or {}
            if grid_point.setdefault(run, params) != params:
                shown = lambda p: ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "no grid value"  # noqa: E731
                raise ValueError(f"{r['variant']}/{r['mode']} seed {r['seed']} has runs at two grid points "
                                 f"({shown(grid_point[run])}; {shown(params)})")
            groups.setdefault((r["variant"], r["mode"]), {})[r["seed"]] = r[metric]
    baseline = groups.get((BASELINE, BASELINE_MODE), {})
    out = {}
    for key, losses in groups.items():
        mean, std = mean_std(list(losses.values()))
        out[key] = {"losses": losses, "mean": mean, "std": std,
                    "comparison": paired_comparison(baseline, losses) if key[0] != BASELINE else None}
    return out
