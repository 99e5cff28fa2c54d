"""
Train a GPT with vector centering (model_advanced_centering.py) through the loop of train.py:

    python train_advanced_centered.py config/embeddings_centered.py --centering_mode=momentum
    torchrun --standalone --nproc_per_node=2 train_advanced_centered.py config/qk_value_centered.py \
        --device=cpu --gradient_accumulation_steps=2

(adaptive mode centers with the mean of each micro-batch: every process needs whole micro-batches.)

Every key of train.py is accepted, plus the centering keys: center_embeddings, center_qk,
center_v, center_attn_out, center_residual, center_mlp (placements, booleans), centering_mode
(simple, adaptive, learnable_center, momentum) and centering_momentum.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass

import train
from configurator import ConfigError
from model_advanced_centering import (PLACEMENTS, AdvancedGPT, AdvancedGPTConfig, CenteringOptions,
                                      describe_centering, fold_centering, leak_warning)
from training import TrainingError
from training.checkpoint import make_checkpoint, model_from_checkpoint


@dataclass
class CenteredTrainConfig(CenteringOptions, train.TrainConfig):
    out_dir: str = "out/train_centered"  # the run's folder (not train.py's default: the two never share a run)

    def validate(self):
        super().validate()
        error = self.centering_errors()
        if error:
            raise ConfigError(error)

    def batch_statistics_reason(self):
        if leak_warning(self) is None:
            return None
        return f"centering_mode '{self.centering_mode}' centers with the mean of each micro-batch"

    @staticmethod
    def unknown_key_hint(key):
        if key.startswith("center"):
            return f"valid placements: {', '.join(PLACEMENTS)}"
        return None


def announce(cfg):
    # the banner points to what each variant measured under the tuned protocol (RESULTS.md)
    print(f"{describe_centering(cfg)} (what each variant measured: RESULTS.md)")
    warning = leak_warning(cfg)
    if warning:
        print(warning, file=sys.stderr)


def fold_checkpoint(ckpt, path="checkpoint"):
    """The checkpoint dict of the plain GPT equivalent to an AdvancedGPT checkpoint (every center
    folded into a bias; scripts/fold_centering.py writes it, scripts/export_hf.py exports it)."""
    if ckpt["model_class"] != "AdvancedGPT":
        raise TrainingError(f"{path} holds a {ckpt['model_class']}, not a centered model (AdvancedGPT): "
                            f"nothing to fold")
    model = model_from_checkpoint(ckpt, path)
    try:
        folded = fold_centering(model)
    except ValueError as e:
        raise TrainingError(f"{path}: {e}") from None
    config = {**dataclasses.asdict(train.TrainConfig()), **ckpt.get("config", {})}
    optimizer = folded.configure_optimizers(config["weight_decay"], config["learning_rate"],
                                            (config["beta1"], config["beta2"]), "cpu")
    # the optimizer, iteration and best loss: what upstream nanoGPT's --init_from=resume reads besides the model
    return make_checkpoint(folded, dataclasses.asdict(folded.config), optimizer, ckpt.get("iter_num", 0),
                           ckpt.get("best_val_loss", float("inf")), ckpt.get("config", {}), ckpt.get("dataset_meta", {}),
                           folded_from={"checkpoint": os.path.abspath(path), "centering": describe_centering(model.config),
                                        "iter_num": ckpt.get("iter_num"), "best_val_loss": ckpt.get("best_val_loss")})


def main(argv=None, on_step=None, config_cls=CenteredTrainConfig):
    return train.main(argv, config_cls, AdvancedGPT, AdvancedGPTConfig, announce, on_step)


if __name__ == "__main__":
    sys.exit(main())
