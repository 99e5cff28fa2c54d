"""
Train a config and print its speed: median ms per iteration, tokens/s, peak memory, and the best
validation loss reached.

    python scripts/benchmark.py config/train_shakespeare_char_cpu.py [--key=value ...]

The first iterations (allocator warm-up, compilation) are left out of the median. For steady
figures on a shared CPU fix the thread count, e.g. OMP_NUM_THREADS=2. The run goes to
out/benchmark (replaced at every benchmark), never to the config's folder, unless --out_dir=
says otherwise.
"""

import dataclasses
import os
import statistics
import sys

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

from benchmarking import SKIP_FIRST  # noqa: E402
from configurator import run_command, sets_key  # noqa: E402
from machine import machine_description  # noqa: E402
from train import TrainConfig, train  # noqa: E402

BENCHMARK_DIR = os.path.join("out", "benchmark")  # a scratch folder of its own


@dataclasses.dataclass
class BenchmarkConfig(TrainConfig):
    out_dir: str = BENCHMARK_DIR  # scratch folder, replaced at every benchmark (a config's out_dir is not used)


def report(summary):
    times = summary["step_times"][SKIP_FIRST:] or summary["step_times"]
    median = statistics.median(times)
    return {"median_ms": median * 1000, "tokens_per_s": summary["tokens_per_iter"] / median,
            "peak_memory_mb": summary["peak_memory_mb"], "best_val_loss": summary["best_val_loss"],
            "iters": summary["iters"]}


def benchmark(cfg, argv):
    if not sets_key(argv, "out_dir"):
        cfg = dataclasses.replace(cfg, out_dir=BENCHMARK_DIR, overwrite=True)
    r = report(train(cfg, log=lambda *a: None))
    print(f"machine: {machine_description()}")
    print(f"config: {' '.join(argv)}")
    print(f"iterations: {r['iters']}  median: {r['median_ms']:.2f} ms/iter  "
          f"tokens/s: {r['tokens_per_s']:,.0f}  peak memory: {r['peak_memory_mb']:.0f} MiB  "
          f"best val loss: {r['best_val_loss']:.4f}")


def main(argv):
    return run_command(BenchmarkConfig, argv, lambda cfg: benchmark(cfg, argv),
                       "benchmark.py [config.py ...] [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
