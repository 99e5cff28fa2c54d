"""
How precise is a validation loss? Evaluates a checkpoint on every non-overlapping window of the
validation split (the exact figure), and on many random sets of --windows windows (how much an
estimate from that many random windows, nanoGPT-style, moves around).

    python scripts/eval_noise.py --out_dir=out/shakespeare-char-cpu [--windows=240] [--trials=200]

Options are written --key=value (see --help).
"""

import os
import sys

import _repo_root  # noqa: F401  (the repository's modules become importable)
import numpy as np
import torch

from configurator import CommandLine, at_least
from experiments.cli import guarded
from training import REPO_ROOT
from training.batches import TokenData
from training.checkpoint import check_records_its_data, check_same_dataset, load_checkpoint, model_from_checkpoint


@torch.no_grad()
def window_losses(model, data, offsets, batch_size=64):
    """Mean loss of each window (N,)."""
    out = []
    for start in range(0, len(offsets), batch_size):
        x, y = data.windows("val", offsets[start:start + batch_size])
        logits, _ = model(x, all_logits=True)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
        out.append(loss.mean(1))
    return torch.cat(out).numpy()


def measure(args):
    path = os.path.join(args.out_dir, args.checkpoint)
    ckpt = load_checkpoint(path)
    check_records_its_data(ckpt, path)  # before its data folder is looked for: it may never have had one
    model = model_from_checkpoint(ckpt).eval()
    cfg = ckpt["config"]
    data = TokenData(args.data_dir or cfg["data_dir"] or os.path.join(REPO_ROOT, "data", cfg["dataset"]),
                     model.config.block_size)
    check_same_dataset(ckpt, data, path)  # another dataset's tokens would give a loss of no meaning
    block = model.config.block_size
    exact = window_losses(model, data, np.arange(0, data.max_offset("val") + 1, block)).mean()
    rng = np.random.default_rng(0)
    pool = rng.integers(0, data.max_offset("val") + 1, size=args.windows * args.trials)
    losses = window_losses(model, data, pool).reshape(args.trials, args.windows).mean(1)
    print(f"val loss on all non-overlapping windows: {exact:.4f}")
    print(f"estimates from {args.windows} random windows ({args.trials} trials): mean {losses.mean():.4f}, "
          f"std {losses.std():.4f}, min {losses.min():.4f}, max {losses.max():.4f}")
    return 0


def main(argv=None):
    parser = CommandLine(__doc__)
    parser.add_argument("--out_dir", required=True, help="the run's folder")
    parser.add_argument("--checkpoint", default="ckpt.pt", help="checkpoint file in out_dir")
    parser.add_argument("--data_dir", default=None, help="default: the dataset the run was trained on")
    parser.add_argument("--windows", type=at_least(1), default=240, help="windows per random estimate")
    parser.add_argument("--trials", type=at_least(1), default=200, help="number of random estimates")
    args = parser.parse_args(argv)
    return guarded(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
