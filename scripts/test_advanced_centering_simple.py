"""
Smoke check of every variant in every centering mode: a tiny model trains a few iterations on
the CPU, then evaluates and samples. Prints a PASS/FAIL table; exits non-zero on any failure.

    python scripts/test_advanced_centering_simple.py [--data_dir=data/shakespeare_char]

Options are written --key=value (see --help). About a minute on 2 cores. Needs a prepared
dataset (python data/shakespeare_char/prepare.py).
"""

import math
import os
import sys
import tempfile
import time

import _repo_root  # noqa: F401  (the repository's modules become importable)
import torch

from configurator import ConfigError, load_config
from configurator import CommandLine
from experiments.cli import guarded
from experiments.plan import MODES, plan_runs, variant_names
from model_advanced_centering import AdvancedGPT, AdvancedGPTConfig
from train import train
from training import REPO_ROOT
from training.checkpoint import load_checkpoint, model_from_checkpoint
from train_advanced_centered import CenteredTrainConfig

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8",
        "--eval_interval=10", "--eval_windows=16", "--warmup_iters=2",
        "--device=cpu", "--compile=False", "--log_interval=1000"]
ITERS = 30


def check(run, data_dir, out_dir):
    """Train one tiny run, rebuild it from its checkpoint and sample; returns (ok, detail)."""
    cfg = load_config(CenteredTrainConfig, [*run.train_args(TINY), f"--data_dir={data_dir}", f"--out_dir={out_dir}"])
    summary = train(cfg, AdvancedGPT, AdvancedGPTConfig, log=lambda *a: None)
    loss = summary["final_val_loss"]
    if not math.isfinite(loss):
        return False, f"val loss {loss}"
    model = model_from_checkpoint(load_checkpoint(os.path.join(out_dir, "ckpt.pt"))).eval()
    tokens = model.generate(torch.zeros((1, 1), dtype=torch.long), 10, top_k=5)
    if tokens.shape != (1, 11):
        return False, f"generated shape {tuple(tokens.shape)}"
    return True, f"val loss {loss:.3f}"


def smoke_check(data_dir):
    if not os.path.isfile(os.path.join(data_dir, "meta.json")):
        raise ConfigError(f"no prepared dataset in {data_dir}: run python data/shakespeare_char/prepare.py")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    failures = 0
    print(f"{'variant':26s} {'mode':18s} result  detail")
    with tempfile.TemporaryDirectory() as tmp:
        for run in plan_runs(variant_names(), MODES, [1], [ITERS]):
            t0 = time.time()
            try:
                ok, detail = check(run, data_dir, os.path.join(tmp, run.run_id))
            except Exception as e:  # a smoke check reports every failure and goes on
                ok, detail = False, f"{type(e).__name__}: {e}"
            failures += not ok
            print(f"{run.variant:26s} {run.mode:18s} {'PASS' if ok else 'FAIL'}    {detail} ({time.time() - t0:.1f}s)")
    print(f"{'all passed' if not failures else f'{failures} FAILED'}")
    return 1 if failures else 0


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--data_dir", default=os.path.join(REPO_ROOT, "data", "shakespeare_char"),
                        help="a prepared dataset (folder with meta.json and the .bin splits)")
    args = parser.parse_args(argv)
    return guarded(lambda: smoke_check(args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
