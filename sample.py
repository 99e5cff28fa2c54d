"""
Sample text from a trained checkpoint:

    python sample.py --out_dir=out/shakespeare-char-cpu --start="ROMEO:" --num_samples=2

--start takes text, or FILE:path to read the prompt from a file. Tokens are decoded with the
vocabulary the checkpoint was trained on (characters, or GPT-2 BPE).
"""

import os
import sys
from dataclasses import dataclass

import torch

from configurator import ConfigError, run_command
from train import TrainConfig, check_device, check_seed
from training import REPO_ROOT
from training.batches import read_meta
from training.checkpoint import load_checkpoint, model_from_checkpoint, vocabulary_difference
from training.runtime import pick_device


@dataclass
class SampleConfig:
    out_dir: str = TrainConfig.out_dir  # the run folder: train.py's default, or a config's out_dir
    checkpoint: str = "ckpt.pt"  # or best.pt: the checkpoint with the best validation loss
    start: str = "\n"  # prompt text, or FILE:path
    num_samples: int = 3  # samples to write, one after another
    max_new_tokens: int = 500  # tokens generated per sample, after the prompt
    temperature: float = 0.8  # < 1 sharpens the distribution, > 1 flattens it
    top_k: int = 200  # keep only the k most likely tokens; 0 keeps all; 1 is greedy
    seed: int = 1337  # of the sampling: the same seed, the same text
    device: str = "auto"  # auto (cuda if there is one, else mps, else cpu), cpu, cuda, cuda:N or mps
    use_kv_cache: bool = True  # reuse earlier keys and values (faster; the same tokens with window=slide)
    window: str = "slide"  # past block_size: slide (as uncached and nanoGPT) or restart (faster cache, other text)

    def validate(self):
        if self.num_samples <= 0 or self.max_new_tokens < 0 or self.top_k < 0:
            raise ConfigError("num_samples must be positive; max_new_tokens and top_k not negative")
        if not self.temperature > 0 or self.temperature == float("inf"):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature}")
        if self.window not in ("slide", "restart"):
            raise ConfigError(f"window must be slide or restart, got '{self.window}'")
        if not self.out_dir.strip():
            raise ConfigError("out_dir must not be empty: give --out_dir=FOLDER of a run")
        check_seed(self.seed)
        check_device(self.device)


def make_codec(meta):
    """encode(str) -> list[int] and decode(list[int]) -> str for a dataset's vocabulary."""
    if meta.get("tokenizer") == "char":
        chars = meta["chars"]
        stoi = {c: i for i, c in enumerate(chars)}

        def encode(text):
            unknown = sorted(set(text) - set(stoi))
            if unknown:
                raise ConfigError(f"the prompt has characters outside the vocabulary: {''.join(unknown)!r}")
            return [stoi[c] for c in text]

        return encode, lambda ids: "".join(chars[i] for i in ids if i < len(chars))
    from gpt2_tokenizer import gpt2_codec
    return gpt2_codec(meta)  # GPT-2's ids, or a compact vocabulary's


def check_dataset(ckpt, path):
    """Prompts are encoded and samples decoded with the vocabulary the checkpoint carries. Fails in
    one line when it carries none, or another one than the dataset of its fingerprint (one of the
    two was edited: samples would show the wrong characters); notes when its training data folder
    now holds another dataset, or one whose meta.json is damaged."""
    meta = ckpt.get("dataset_meta", {})
    if "tokenizer" not in meta or (meta["tokenizer"] == "char" and "chars" not in meta):
        raise ConfigError(f"{path} carries no vocabulary (dataset_meta): it cannot be sampled as text")
    config = ckpt.get("config", {})
    data_dir = config.get("data_dir") or os.path.join(REPO_ROOT, "data", config.get("dataset", ""))
    if meta.get("fingerprint") and os.path.isfile(os.path.join(data_dir, "meta.json")):
        try:
            data_meta = read_meta(os.path.join(data_dir, "meta.json"))
        except ConfigError as e:  # a damaged dataset: the checkpoint's own vocabulary still decodes
            print(f"note: cannot check the dataset {path} was trained on: {e}; sampling uses the checkpoint's "
                  f"own vocabulary", file=sys.stderr)
            return meta
        now = data_meta.get("fingerprint")
        differ = vocabulary_difference(meta, data_meta)
        if now == meta["fingerprint"] and differ:
            raise ConfigError(f"{path} carries another vocabulary than {data_dir}, the dataset it was trained on "
                              f"(its {', '.join(differ)} differ): one of them was edited, and samples would show the "
                              f"wrong characters; check that dataset (its prepare script, with --force, restores it)")
        if now and now != meta["fingerprint"]:
            print(f"note: {data_dir} now holds another dataset than {path} was trained on "
                  f"(fingerprint {meta['fingerprint'][:12]}, now {now[:12]}); sampling uses the "
                  f"checkpoint's own vocabulary", file=sys.stderr)
    return meta


def sample(cfg, log=print):
    """Generate cfg.num_samples continuations; prints them."""
    path = os.path.join(cfg.out_dir, cfg.checkpoint)
    ckpt = load_checkpoint(path)
    meta = check_dataset(ckpt, path)
    model = model_from_checkpoint(ckpt, path)
    device = pick_device(cfg.device)
    model.eval().to(device)
    encode, decode = make_codec(meta)
    prompt = cfg.start
    if prompt.startswith("FILE:"):
        try:
            with open(prompt[5:], encoding="utf-8") as f:
                prompt = f.read()
        except (OSError, UnicodeDecodeError) as e:  # missing, or not UTF-8 text
            raise ConfigError(f"cannot read the prompt file {prompt[5:]}: {e}") from None
    ids = encode(prompt)
    if not ids:
        raise ConfigError("the prompt is empty: give --start some text")
    x = torch.tensor(ids, dtype=torch.long, device=device)[None, :]
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = []
    for _ in range(cfg.num_samples):
        y = model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature,
                           top_k=cfg.top_k or None, generator=generator,
                           use_cache=cfg.use_kv_cache, window=cfg.window)
        samples.append(decode(y[0].tolist()))
        log(samples[-1])
        log("---------------")
    return samples


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return run_command(SampleConfig, argv, sample, "sample.py [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main())
