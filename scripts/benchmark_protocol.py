"""
Experiment throughput: protocol runs (config/baseline.py, 1000 iterations, one process, one thread)
per CPU-hour of an earlier revision against this working tree, alternated (see
benchmarking.protocol_pairs). Whole-process wall time: start-up, training, every evaluation, the
checkpoints and the final test evaluation.

    python data/shakespeare_char/prepare.py --input=../shared/data/tinyshakespeare/input.txt --out_dir=data/ts_char
    python scripts/benchmark_protocol.py --before=REV --data_dir=data/ts_char [--pairs=2] [--iters=1000]
"""

import os
import statistics
import sys
from dataclasses import dataclass

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

from machine import machine_description  # noqa: E402
from benchmarking import protocol_pairs, work_folder  # noqa: E402
from configurator import ConfigError, run_command  # noqa: E402


@dataclass
class ProtocolBenchConfig:
    before: str = ""  # git revision to compare against (e.g. a commit of main)
    data_dir: str = ""  # a prepared character-level dataset
    iters: int = 1000  # iterations of each timed run (the protocol's 1000)
    pairs: int = 2  # runs of each revision (before and this tree), the two alternated
    threads: int = 1  # OMP_NUM_THREADS of every run (the protocol's runs take 1)
    work_dir: str = ""  # default: a new temporary folder (kept, with the logs); a folder given must be empty
    overwrite: bool = False  # replace a previous benchmark's runs and logs in work_dir

    def validate(self):
        if not self.before or not self.data_dir:
            raise ConfigError("give --before=REV and --data_dir=FOLDER")
        if self.iters < 1 or self.pairs < 1 or self.threads < 1:
            raise ConfigError("iters, pairs and threads must be positive")


def run(cfg):
    work_dir = work_folder(cfg.work_dir, cfg.overwrite)
    print(f"machine: {machine_description()}, OMP threads {cfg.threads}\nwork dir (logs): {work_dir}")
    pairs = protocol_pairs(cfg.before, os.path.abspath(cfg.data_dir), work_dir, cfg.iters, cfg.pairs, cfg.threads)
    for i, ((b_wall, b_cpu, b_loss), (a_wall, a_cpu, a_loss)) in enumerate(pairs):
        print(f"  pair {i + 1}: before {b_wall:.1f} s wall, {b_cpu:.1f} s CPU (val loss {b_loss:.6f}); "
              f"after {a_wall:.1f} s wall, {a_cpu:.1f} s CPU (val loss {a_loss:.6f}); "
              f"speed-up {b_wall / a_wall:.2f}x wall, {b_cpu / a_cpu:.2f}x CPU", flush=True)
    for label, k in (("wall", 0), ("CPU", 1)):
        before = statistics.median(b[k] for b, _ in pairs)
        after = statistics.median(a[k] for _, a in pairs)
        print(f"runs per CPU-hour ({label} time, {cfg.threads} thread(s) a run): before "
              f"{3600 / cfg.threads / before:.1f}, after {3600 / cfg.threads / after:.1f} "
              f"({before / after:.2f}x; medians of {cfg.pairs} pairs)")


def main(argv):
    return run_command(ProtocolBenchConfig, argv, run, "benchmark_protocol.py --before=REV --data_dir=D [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
