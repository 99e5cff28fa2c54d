"""
Turn a trained centered checkpoint (AdvancedGPT) into an equivalent plain GPT checkpoint, with
every center folded into a bias (see fold_centering in model_advanced_centering.py):

    python scripts/fold_centering.py --in_dir=out/embeddings_centered --out_dir=out/embeddings_folded
    python sample.py --out_dir=out/embeddings_folded

The folded model gives the same logits as the centered one in evaluation, with no centering
modules left. It has bias=True (zero biases where the centered model had none). The checkpoint
keeps the training "config" and "dataset_meta" (so sample.py can decode), the iteration count and
best validation loss, and gets a fresh optimizer state (AdamW with no moments yet; the centered
model's do not fit the folded parameters): upstream nanoGPT's sample.py and train.py
--init_from=resume read it as they read a plain checkpoint of ours, and our train.py fine-tunes it
(--init_from=resume, with fresh batches). simple mode cannot be folded. A centered checkpoint
itself is nothing upstream nanoGPT can read: fold it first.

The folded model gets a folder of its own: an --out_dir that holds a run (ckpt.pt, best.pt or
metrics.jsonl) is refused, unless --overwrite=True, which replaces that run (its three files) with
the folded checkpoint. The folder of the centered run itself (--in_dir) is always refused.
"""

import os
import sys
from dataclasses import dataclass

import _repo_root  # noqa: F401  (the repository's modules become importable)
from configurator import ConfigError, run_command
from training.checkpoint import load_checkpoint, save_checkpoint
from training.run_folder import writing_model_into
from train_advanced_centered import fold_checkpoint


@dataclass
class FoldConfig:
    in_dir: str = ""  # folder of the centered checkpoint
    out_dir: str = ""  # folder to write the folded checkpoint to, as ckpt.pt
    checkpoint: str = "ckpt.pt"  # which checkpoint of in_dir (or best.pt)
    overwrite: bool = False  # replace a run already in out_dir (ckpt.pt, best.pt, metrics.jsonl) with the fold

    def validate(self):
        if not self.in_dir or not self.out_dir:
            raise ConfigError("give both --in_dir=FOLDER and --out_dir=FOLDER")


def fold_command(cfg):
    in_path = os.path.join(cfg.in_dir, cfg.checkpoint)
    out_path = os.path.join(cfg.out_dir, "ckpt.pt")
    # the centered run's folder: its ckpt.pt is what resumes it, whichever checkpoint is folded
    if os.path.realpath(cfg.in_dir) == os.path.realpath(cfg.out_dir):
        raise ConfigError(f"--out_dir={cfg.out_dir} is --in_dir: the folded ckpt.pt would overwrite the centered "
                          f"run it is folded from; choose another folder")
    with writing_model_into(cfg.out_dir, cfg.overwrite, "write the folded checkpoint to another --out_dir") as held:
        folded = fold_checkpoint(load_checkpoint(in_path), in_path)
        save_checkpoint(folded, out_path)  # first: a fold that fails to write deletes nothing
        others = [name for name in held if name != "ckpt.pt"]
        if others:  # the replaced run's files would otherwise describe another model than ckpt.pt
            print(f"overwrite: deleting the previous run's {', '.join(others)} in {cfg.out_dir}")
            for name in others:
                os.remove(os.path.join(cfg.out_dir, name))
    print(f"{folded['folded_from']['centering']}: folded into a plain GPT, {out_path}")


def main(argv):
    return run_command(FoldConfig, argv, fold_command,
                       "fold_centering.py --in_dir=FOLDER --out_dir=FOLDER [--checkpoint=ckpt.pt] [--overwrite=True]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
