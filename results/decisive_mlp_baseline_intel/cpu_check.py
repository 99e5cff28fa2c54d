"""MLP centering `adaptive` (results/decisive_mlp) was paired with baseline runs trained on an AMD
EPYC, its own runs on an Intel Xeon. This compares it again with the baseline's seeds 1-10 trained
here on the Intel Xeon (the same settings), and the two CPUs' baselines with each other, by the
reports' own paired test. Run from the repository root: python results/decisive_mlp_baseline_intel/cpu_check.py"""
import os
import sys

sys.path.insert(0, os.getcwd())
from experiments.records import read_results  # noqa: E402
from experiments.stats import paired_comparison  # noqa: E402
from experiments.sweep import setting_differences  # noqa: E402


def runs_of(folder, variant):
    runs = {r["seed"]: r for r in read_results(folder).values() if r["variant"] == variant and r["status"] == "ok"
            and r["params"] == {"learning_rate": "4e-3"} and 1 <= r["seed"] <= 10}
    return runs


amd, mlp = runs_of("results/decisive_1k", "baseline"), runs_of("results/decisive_1k", "mlp_centered")
intel = runs_of("results/decisive_mlp_baseline_intel", "baseline")
print("settings in which the two baselines differ:", setting_differences(amd[1]["config"], intel[1]["config"],
                                                                        also_free=("seed",)))
for name, runs in (("baseline (decisive_1k)", amd), ("MLP adaptive", mlp), ("baseline (this folder)", intel)):
    print(f"{name}: trained on {', '.join(sorted({r['provenance']['cpu'] for r in runs.values()}))}")
loss = lambda runs: {seed: r["test_loss"] for seed, r in runs.items()}  # noqa: E731
for name, base, variant in (("MLP against the AMD baseline (the plan's pairs)", amd, mlp),
                            ("MLP against the Intel baseline (one CPU)", intel, mlp),
                            ("Intel baseline against AMD baseline (the CPUs)", amd, intel)):
    c = paired_comparison(loss(base), loss(variant))
    print(f"{name}: n={c['n']}, {c['mean_pct']:+.2f}% [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], "
          f"p {c['p_value']:.2g}, ahead on {c['seeds_ahead']}/{c['n']}")
