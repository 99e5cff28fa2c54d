"""
Smoke check of every variant in every centering mode: a tiny model trains a few iterations on
the CPU, then evaluates and samples. Prints a PASS/FAIL table; exits non-zero on any failure.

    python scripts/test_advanced_centering_simple.py [--data_dir=data/shakespeare_char]

About a minute on 2 cores. Needs a prepared dataset (python data/shakespeare_char/prepare.py).
"""

import argparse
import math
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from configurator import load_config  # noqa: E402
from advanced_centering_experiments import ALL_VARIANTS as VARIANTS  # noqa: E402
from model_advanced_centering import CENTERING_MODES, AdvancedGPT, AdvancedGPTConfig  # noqa: E402
from train import load_checkpoint, model_from_checkpoint, train  # noqa: E402
from train_advanced_centered import CenteredTrainConfig  # noqa: E402

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8",
        "--max_iters=30", "--eval_interval=10", "--eval_windows=16", "--warmup_iters=2",
        "--device=cpu", "--compile=False", "--log_interval=1000"]


def check(variant, mode, data_dir, out_dir):
    """Train one tiny run, rebuild it from its checkpoint and sample; returns (ok, detail)."""
    cfg = load_config(CenteredTrainConfig, [os.path.join(REPO_ROOT, "config", f"{variant}.py"), *TINY,
                                            f"--centering_mode={mode}", f"--data_dir={data_dir}",
                                            f"--out_dir={out_dir}"])
    summary = train(cfg, AdvancedGPT, AdvancedGPTConfig, log=lambda *a: None)
    loss = summary["final_val_loss"]
    if not math.isfinite(loss):
        return False, f"val loss {loss}"
    model = model_from_checkpoint(load_checkpoint(os.path.join(out_dir, "ckpt.pt"))).eval()
    tokens = model.generate(torch.zeros((1, 1), dtype=torch.long), 10, top_k=5)
    if tokens.shape != (1, 11):
        return False, f"generated shape {tuple(tokens.shape)}"
    return True, f"val loss {loss:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(REPO_ROOT, "data", "shakespeare_char"))
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.data_dir, "meta.json")):
        print(f"error: no prepared dataset in {args.data_dir}: run python data/shakespeare_char/prepare.py",
              file=sys.stderr)
        return 2
    torch.set_num_threads(min(2, torch.get_num_threads()))
    failures = 0
    print(f"{'variant':26s} {'mode':18s} result  detail")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            for mode in (["adaptive"] if variant == "baseline" else CENTERING_MODES):
                t0 = time.time()
                try:
                    ok, detail = check(variant, mode, args.data_dir, os.path.join(tmp, f"{variant}-{mode}"))
                except Exception as e:  # a smoke check reports every failure and goes on
                    ok, detail = False, f"{type(e).__name__}: {e}"
                failures += not ok
                shown_mode = "-" if variant == "baseline" else mode
                print(f"{variant:26s} {shown_mode:18s} {'PASS' if ok else 'FAIL'}    {detail} ({time.time() - t0:.1f}s)")
    print(f"{'all passed' if not failures else f'{failures} FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
