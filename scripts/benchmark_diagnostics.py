"""
What logging the diagnostics (diagnostics.py) at every evaluation costs, as a share of a run:

    OMP_NUM_THREADS=1 python scripts/benchmark_diagnostics.py config/baseline.py [--key=value ...]
    OMP_NUM_THREADS=1 python scripts/benchmark_diagnostics.py config/aggressive_centered.py --max_iters=300

Trains the config (through AdvancedGPT: config/baseline.py is the plain protocol, bit for bit)
into a temporary folder, timing every eval_diagnostics call, and prints their total time, the time
per evaluation, and that time over the rest of the run (training steps and loss evaluations):
the fraction by which logging the diagnostics lengthens the run.
"""

import sys
import tempfile
import time

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

from machine import machine_description  # noqa: E402
from configurator import run_command  # noqa: E402
from model_advanced_centering import AdvancedGPT, AdvancedGPTConfig, describe_centering  # noqa: E402
from train import train  # noqa: E402
from train_advanced_centered import CenteredTrainConfig  # noqa: E402


class TimedDiagnostics(AdvancedGPT):
    seconds = []

    def eval_diagnostics(self, idx):
        t0 = time.perf_counter()
        out = super().eval_diagnostics(idx)
        TimedDiagnostics.seconds.append(time.perf_counter() - t0)
        return out


TimedDiagnostics.__name__ = "AdvancedGPT"  # what its checkpoints are written as


def benchmark(cfg, argv):
    TimedDiagnostics.seconds = []
    with tempfile.TemporaryDirectory() as out_dir:
        cfg.out_dir = out_dir
        t0 = time.perf_counter()
        train(cfg, TimedDiagnostics, AdvancedGPTConfig, log=lambda *a: None)
        wall = time.perf_counter() - t0
    diag = sum(TimedDiagnostics.seconds)
    print(f"machine: {machine_description()}")
    print(f"config: {' '.join(argv)}; {describe_centering(cfg)}")
    print(f"run: {cfg.max_iters} iterations in {wall:.1f} s; {len(TimedDiagnostics.seconds)} evaluations logged "
          f"diagnostics in {diag:.2f} s ({1000 * diag / len(TimedDiagnostics.seconds):.0f} ms each): "
          f"{100 * diag / (wall - diag):.1f}% on top of the run without them")


def main(argv):
    return run_command(CenteredTrainConfig, argv, lambda cfg: benchmark(cfg, argv),
                       "benchmark_diagnostics.py [config.py ...] [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
