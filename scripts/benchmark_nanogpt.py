"""
Paired speed benchmark against upstream nanoGPT (see benchmarking.py): both trainers on nanoGPT's
CPU configuration, shortened, in alternation, for each thread count; prints per-iteration times,
the speed ratio per pair with its spread, and both final val losses.

    python scripts/benchmark_nanogpt.py --nanogpt_dir=../shared/peers/nanoGPT [--pairs=5]
        [--threads=1,2] [--iters=300] [--skip=20] [--input=PATH] [--work_dir=DIR]
"""

import os
import sys
from dataclasses import dataclass

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

from benchmarking import PairedBenchmark, format_summary, summarise, work_folder  # noqa: E402
from machine import machine_description  # noqa: E402
from configurator import ConfigError, run_command  # noqa: E402

DEFAULT_INPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                             "tinyshakespeare", "input.txt")


@dataclass
class BenchConfig:
    nanogpt_dir: str = ""  # a checkout of upstream nanoGPT (read only: its files are copied)
    input: str = DEFAULT_INPUT  # the text both trainers learn (tiny Shakespeare)
    pairs: int = 5  # runs of each trainer per thread count, alternated
    threads: str = "1,2"  # comma-separated thread counts (OMP_NUM_THREADS of both trainers)
    iters: int = 300  # iterations of each timed run
    skip: int = 20  # first iterations left out of each run's median
    work_dir: str = ""  # default: a new temporary folder (kept, with the logs); a folder given must be empty
    overwrite: bool = False  # replace a previous benchmark's runs and logs in work_dir

    def validate(self):
        if not self.nanogpt_dir:
            raise ConfigError("--nanogpt_dir=PATH is required (a checkout of upstream nanoGPT)")
        if self.pairs < 1 or self.iters < 2 or self.skip < 0:
            raise ConfigError("pairs and iters must be positive (iters >= 2), skip not negative")
        try:
            self.thread_counts = [int(t) for t in self.threads.split(",")]
        except ValueError:
            raise ConfigError(f"threads must be comma-separated integers, got '{self.threads}'") from None
        if not self.thread_counts or min(self.thread_counts) < 1:
            raise ConfigError(f"threads must be positive, got '{self.threads}'")


def run(cfg):
    work_dir = work_folder(cfg.work_dir, cfg.overwrite)
    bench = PairedBenchmark(cfg.nanogpt_dir, cfg.input, work_dir, cfg.iters, cfg.skip)
    print(f"machine: {machine_description()}\nwork dir (logs): {work_dir}")
    for threads in cfg.thread_counts:
        pairs = []
        for index in range(cfg.pairs):
            pairs.append(bench.run_pair(threads, index))
            nano, ours = pairs[-1]
            print(f"  threads {threads} pair {index + 1}: nanoGPT {nano.median_ms:.2f} ms, ours {ours.median_ms:.2f} ms, "
                  f"ratio {nano.median_ms / ours.median_ms:.3f}; CPU s per run: nanoGPT {nano.cpu_s:.1f}, "
                  f"ours {ours.cpu_s:.1f}", flush=True)
        print(format_summary(threads, summarise(pairs)), flush=True)


def main(argv):
    return run_command(BenchConfig, argv, run, "benchmark_nanogpt.py --nanogpt_dir=PATH [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
