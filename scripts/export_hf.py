"""
Export a checkpoint as a Hugging Face GPT-2 model folder (config.json, model.safetensors):

    python scripts/export_hf.py --in_dir=out/shakespeare-char-cpu --out_dir=out/hf
    python -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('out/hf')"

Our GPT is GPT-2's architecture, so the weights carry over by name; HF's Conv1D stores a linear
layer's weight transposed, and a model trained with bias=False gets zero biases. A centered
checkpoint (AdvancedGPT) is folded into a plain GPT first, as scripts/fold_centering.py does
(simple mode cannot be folded, so it is refused). No tokenizer is written: the vocabulary is the
dataset's (characters or GPT-2 BPE, see the checkpoint's dataset_meta).

The model gets a folder of its own: an --out_dir that holds a run (ckpt.pt, best.pt or
metrics.jsonl) or a model (config.json, model.safetensors) is refused, unless --overwrite=True,
which writes the model's files there (replacing an earlier export's) and deletes nothing.

Needs the optional package transformers (pip install transformers).
"""

import os
import sys
from dataclasses import dataclass

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

import torch  # noqa: E402

from configurator import ConfigError, run_command  # noqa: E402
from fold_centering import fold_checkpoint  # noqa: E402
from train import TrainingError, load_checkpoint, model_from_checkpoint, run_files_in  # noqa: E402

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_EOT = 50256  # <|endoftext|> in GPT-2 BPE
HF_FILES = ("config.json", "generation_config.json", "model.safetensors")  # what save_pretrained writes


@dataclass
class ExportConfig:
    in_dir: str = ""  # folder of the checkpoint
    out_dir: str = ""  # folder to write the Hugging Face model to
    checkpoint: str = "ckpt.pt"  # which checkpoint of in_dir (or best.pt)
    overwrite: bool = False  # write into an out_dir that holds a run or a model (replaces only the model's files)

    def validate(self):
        if not self.in_dir or not self.out_dir:
            raise ConfigError("give both --in_dir=FOLDER and --out_dir=FOLDER")


def to_hf(model, dataset_meta=None):
    """A transformers GPT2LMHeadModel with the weights of model (a plain model.GPT)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = model.config
    gpt2_vocab = (dataset_meta or {}).get("tokenizer") == "gpt2" and cfg.vocab_size > GPT2_EOT
    hf_config = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, activation_function="gelu",  # nn.GELU(): the exact (erf) GELU
        layer_norm_epsilon=1e-5, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        tie_word_embeddings=True, bos_token_id=GPT2_EOT if gpt2_vocab else None,
        eos_token_id=GPT2_EOT if gpt2_vocab else None)
    hf = GPT2LMHeadModel(hf_config)
    ours, hf_params = model.state_dict(), dict(hf.named_parameters())
    state = {}
    for name, target in hf.state_dict().items():
        if name in ours:
            state[name] = ours[name].t() if name.endswith(CONV1D_WEIGHTS) else ours[name]
        elif name not in hf_params:
            state[name] = target  # a buffer of HF's own (older versions keep the causal mask)
        elif name.endswith(".bias"):
            state[name] = torch.zeros_like(target)  # trained with bias=False
        else:
            raise TrainingError(f"no weight for the Hugging Face parameter {name}")
        if state[name].shape != target.shape:
            raise TrainingError(f"{name}: shape {tuple(state[name].shape)}, "
                                f"Hugging Face expects {tuple(target.shape)}")
    hf.load_state_dict(state)
    return hf.eval()


def check_export_dir(cfg):
    """Refuse an out_dir that holds a run or a model, unless cfg.overwrite."""
    held = run_files_in(cfg.out_dir)
    models = [name for name in HF_FILES if os.path.exists(os.path.join(cfg.out_dir, name))]
    if (held or models) and not cfg.overwrite:
        what = f"a run ({', '.join(held)})" if held else f"a model ({', '.join(models)})"
        raise ConfigError(f"{cfg.out_dir} already holds {what}: export to another --out_dir, or write the "
                          f"model's files there with --overwrite=True")


def export_command(cfg):
    check_export_dir(cfg)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise TrainingError("the Hugging Face export needs transformers: pip install transformers") from None
    path = os.path.join(cfg.in_dir, cfg.checkpoint)
    ckpt = load_checkpoint(path)
    compact = (ckpt.get("dataset_meta") or {}).get("gpt2_ids")
    if compact is not None:
        # GPT-2's head has no bias that could rule out the tokens the model never saw: their logits
        # would be 0 instead of -inf, so the exported model would not compute the same distribution
        raise TrainingError(f"{path} was trained on a compact vocabulary ({len(compact):,} of GPT-2's tokens); "
                            f"a Hugging Face GPT-2 cannot hold it exactly: not exported")
    if ckpt["model_class"] == "AdvancedGPT":
        ckpt = fold_checkpoint(ckpt, path)
        print(f"{ckpt['folded_from']['centering']}: folded into biases first")
    model = model_from_checkpoint(ckpt, path)
    to_hf(model, ckpt.get("dataset_meta")).save_pretrained(cfg.out_dir)
    print(f"wrote a Hugging Face GPT-2 model to {cfg.out_dir}")


def main(argv):
    return run_command(ExportConfig, argv, export_command,
                       "export_hf.py --in_dir=FOLDER --out_dir=FOLDER [--checkpoint=ckpt.pt] [--overwrite=True]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
