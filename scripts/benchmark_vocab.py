"""
GPT-2 BPE step time and quality with GPT-2's whole vocabulary against the compact one (only the
tokens the text uses), at the experiment protocol's shape, the two runs alternated (see
benchmarking.vocabulary_pairs):

    python data/shakespeare/prepare.py --input=../shared/data/tinyshakespeare/input.txt --out_dir=data/ts_bpe
    python data/shakespeare/prepare.py --input=../shared/data/tinyshakespeare/input.txt --compact_vocab --out_dir=data/ts_bpe_compact
    OMP_NUM_THREADS=1 python scripts/benchmark_vocab.py --full_dir=data/ts_bpe --compact_dir=data/ts_bpe_compact [--iters=60] [--pairs=3]
"""

import statistics
import sys
from dataclasses import dataclass

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

from machine import machine_description  # noqa: E402
from benchmarking import vocabulary_pairs, work_folder  # noqa: E402
from configurator import ConfigError, run_command  # noqa: E402


@dataclass
class VocabBenchConfig:
    full_dir: str = ""  # a GPT-2 BPE dataset with GPT-2's ids
    compact_dir: str = ""  # the same text prepared with --compact_vocab
    iters: int = 60  # per run; the val loss is measured at the end
    pairs: int = 3  # runs of each dataset (full and compact), the two alternated
    threads: int = 1  # OMP_NUM_THREADS of every run
    skip: int = 5  # first iterations left out of each run's median
    work_dir: str = ""  # default: a new temporary folder (kept, with the logs); a folder given must be empty
    overwrite: bool = False  # replace a previous benchmark's runs and logs in work_dir

    def validate(self):
        if not self.full_dir or not self.compact_dir:
            raise ConfigError("give --full_dir=FOLDER and --compact_dir=FOLDER (two prepared datasets)")
        if self.iters <= self.skip + 1 or self.pairs < 1 or self.threads < 1:
            raise ConfigError("iters must exceed skip + 1; pairs and threads must be positive")


def run(cfg):
    work_dir = work_folder(cfg.work_dir, cfg.overwrite)
    print(f"machine: {machine_description()}, OMP threads {cfg.threads}\nwork dir (logs): {work_dir}")
    pairs = vocabulary_pairs(cfg.full_dir, cfg.compact_dir, work_dir, cfg.iters, cfg.pairs, cfg.threads, cfg.skip)
    for i, (full, compact) in enumerate(pairs):
        print(f"  pair {i + 1}: full {full.median_ms:.1f} ms/iter, compact {compact.median_ms:.1f} ms/iter, "
              f"speed-up {full.median_ms / compact.median_ms:.2f}x (whole-run CPU time {full.cpu_s / compact.cpu_s:.2f}x); "
              f"val bpb full {full.val_bpb:.4f}, compact {compact.val_bpb:.4f}", flush=True)
    ratios = [f.median_ms / c.median_ms for f, c in pairs]
    print(f"speed-up compact/full (per pair): median {statistics.median(ratios):.2f}x, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}")
    deltas = [c.val_bpb - f.val_bpb for f, c in pairs]
    print(f"val bits per byte after {cfg.iters} iterations, compact - full: "
          + " ".join(f"{d:+.4f}" for d in deltas))


def main(argv):
    return run_command(VocabBenchConfig, argv, run, "benchmark_vocab.py --full_dir=F --compact_dir=C [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
