"""
Training with detailed per-iteration logging, for any config (plain or centered):

    python scripts/train_with_logging.py config/embeddings_centered.py [--key=value ...]

Every iteration appends one JSON line to out_dir/detailed.jsonl: loss, learning rate, the
gradient norm overall and per layer (embeddings, each block, final LayerNorm) before clipping,
and for every centering placement the norm of the center vector in use (averaged over layers).
The usual metrics.jsonl and checkpoints are written as by train_advanced_centered.py, to
out/train_with_logging unless --out_dir= says otherwise (never into the config's own folder).
Options are the training keys, written --key=value (see --help).
"""

import os
import sys
from dataclasses import dataclass

import _repo_root  # noqa: F401  (the repository's modules become importable)
import torch

import train_advanced_centered
from configurator import sets_key
from files import append_jsonl, read_jsonl, rewrite_jsonl
from model_advanced_centering import VectorCentering


def layer_of(name):
    """Parameter name -> the layer it belongs to: 'embeddings', 'block3', 'ln_f'."""
    parts = name.split(".")
    if parts[:2] == ["transformer", "h"]:
        return f"block{parts[2]}"
    if parts[-2] in ("wte", "wpe") or parts[:2] == ["lm_head", "weight"] or parts[1] == "embeddings_site":
        return "embeddings"
    return parts[1] if parts[0] == "transformer" else parts[0]


@torch.no_grad()
def gradient_norms(model):
    squares = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            key = layer_of(name)
            squares[key] = squares.get(key, 0.0) + p.grad.float().square().sum().item()
    total = sum(squares.values()) ** 0.5
    return total, {k: v ** 0.5 for k, v in squares.items()}


@torch.no_grad()
def center_norms(model):
    """Norm of the center each placement subtracts in evaluation (the batch-mean modes, whose
    center changes with every batch, are left out), averaged over layers."""
    norms = {}
    for name, _, module in model.sites():
        if isinstance(module, VectorCentering) and module.mode != "simple":
            center = module.center if module.mode == "learnable_center" else module.running_center()
            norms.setdefault(name, []).append(center.norm().item())
    return {name: sum(v) / len(v) for name, v in norms.items()}


_first_logged_iter = []  # the first iteration this process logs, once known


def drop_records_from(path, iter_num):
    """Keep only the records before iter_num: on a fresh start (0) none of a replaced run's, on
    resume none that a killed run wrote past its checkpoint."""
    rewrite_jsonl(path, [r for r in read_jsonl(path) if r["iter"] < iter_num])


def log_step(cfg, iter_num, model, loss, lr):
    if int(os.environ.get("RANK", 0)) != 0:
        return
    path = os.path.join(cfg.out_dir, "detailed.jsonl")
    if not _first_logged_iter:
        _first_logged_iter.append(iter_num)
        drop_records_from(path, iter_num)
    total, per_layer = gradient_norms(model)
    record = {"iter": iter_num, "loss": loss, "lr": lr, "grad_norm": total,
              "grad_norm_by_layer": per_layer, "center_norm": center_norms(model)}
    append_jsonl(path, record)


DEFAULT_OUT_DIR = os.path.join("out", "train_with_logging")


@dataclass
class LoggingTrainConfig(train_advanced_centered.CenteredTrainConfig):
    out_dir: str = DEFAULT_OUT_DIR  # the run's folder, with detailed.jsonl (a config's out_dir is not used)


def main(argv):
    if not sets_key(argv, "out_dir"):
        argv = [*argv, f"--out_dir={DEFAULT_OUT_DIR}"]  # over a config file's out_dir too
    return train_advanced_centered.main(argv, on_step=log_step, config_cls=LoggingTrainConfig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
