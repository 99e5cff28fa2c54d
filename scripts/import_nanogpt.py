"""
Turn a run of upstream nanoGPT (its ckpt.pt, and the dataset folder it trained on) into a run of
this project:

    python scripts/import_nanogpt.py --in_dir=../nanoGPT/out-shakespeare-char \
        --data_dir=../nanoGPT/data/shakespeare_char --out_dir=out/nanogpt-char
    python sample.py --out_dir=out/nanogpt-char --start="ROMEO:"
    python train.py --out_dir=out/nanogpt-char --init_from=resume --max_iters=6000   # train on

What carries over: the weights (upstream's GPT is ours without the extension sites; the
"_orig_mod." prefix of a compiled model and the causal-mask buffers of PyTorch before 2.0 are
dropped), the model arguments, the AdamW state, the iteration count, and the settings both
projects share (learning rate and schedule, batch, dropout, ...; ours at their defaults for the
rest, e.g. seed 1337). The vocabulary comes from --data_dir's meta.pkl (characters); without one it
is GPT-2 BPE, as upstream's sample.py assumes. The token files there (train.bin, val.bin) become
a dataset of ours at --dataset_dir, default data/<upstream dataset>_nanogpt: a name of its own,
as both projects call their character Shakespeare shakespeare_char with different texts and
vocabularies. train.bin stays the training split; val.bin is cut in two halves, validation and
test. Without token files the import is for sampling only.

What does not: upstream keeps no batch sampler or random state, so our train.py starts both afresh
from the seed, and says so in one line; and upstream's best_val_loss is an estimate on random
windows, not our fixed validation windows, so the import starts with none (inf) and the first
evaluation of a resumed run sets it. The run folder gets ckpt.pt and best.pt (the same weights
until a resumed run does better).

--out_dir must not hold a run (ckpt.pt, best.pt or metrics.jsonl) unless --overwrite=True, which
replaces it; the upstream run's own folder is always refused.
"""

import dataclasses
import math
import os
import pickle
import shutil
import sys
from dataclasses import dataclass

import _repo_root  # noqa: F401  (the repository's modules become importable)

import numpy as np  # noqa: E402

from configurator import ConfigError, run_command  # noqa: E402
from data.text_sources import (SPLITS, existing_fingerprint, fingerprint_files, publish_dataset,  # noqa: E402
                               staged_path)
from model import GPT, GPTConfig  # noqa: E402
from train import TrainConfig  # noqa: E402
from training import REPO_ROOT, TrainingError  # noqa: E402
from training.checkpoint import load_model_state, make_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from training.metrics import METRICS_FILE  # noqa: E402
from training.run_folder import SESSION_KEYS, writing_model_into  # noqa: E402

UPSTREAM_KEYS = {"model", "model_args", "optimizer", "iter_num", "best_val_loss", "config"}  # its train.py writes these


@dataclass
class ImportConfig:
    in_dir: str = ""  # upstream nanoGPT's out_dir (its ckpt.pt)
    data_dir: str = ""  # the upstream dataset folder it trained on (meta.pkl; train.bin and val.bin)
    out_dir: str = ""  # the folder of the imported run (ckpt.pt and best.pt)
    dataset_dir: str = ""  # where the tokens become a dataset of ours; default data/<upstream dataset>_nanogpt
    overwrite: bool = False  # replace a run already in out_dir (ckpt.pt, best.pt, metrics.jsonl)

    def validate(self):
        if not self.in_dir or not self.data_dir or not self.out_dir:
            raise ConfigError("give --in_dir=FOLDER (upstream's run), --data_dir=FOLDER (its dataset) and "
                              "--out_dir=FOLDER")


def read_upstream(path):
    """Upstream's checkpoint dict; a one-line error for one of ours (a centered one: fold it first)."""
    ckpt = read_checkpoint(path)
    if isinstance(ckpt, dict) and "model_class" in ckpt:
        if ckpt["model_class"] == "AdvancedGPT":
            raise ConfigError(f"{path} is a centered checkpoint of this project, which upstream nanoGPT cannot "
                              f"read either: fold it first (python scripts/fold_centering.py --in_dir="
                              f"{os.path.dirname(path) or '.'} --out_dir=NEW_FOLDER)")
        raise ConfigError(f"{path} is already a checkpoint of this project (upstream nanoGPT reads it as it is): "
                          f"nothing to import")
    missing = UPSTREAM_KEYS - set(ckpt) if isinstance(ckpt, dict) else UPSTREAM_KEYS
    if missing:
        raise TrainingError(f"{path} lacks {sorted(missing)}: not a checkpoint of nanoGPT's train.py")
    return ckpt


def read_vocabulary(data_dir):
    """Our meta.json fields for upstream's vocabulary: meta.pkl's characters, else GPT-2 BPE."""
    path = os.path.join(data_dir, "meta.pkl")
    if not os.path.isfile(path):
        from gpt2_tokenizer import get_gpt2_encoding, token_byte_lengths
        print(f"no meta.pkl in {data_dir}: GPT-2 BPE, as upstream's sample.py assumes")
        enc = get_gpt2_encoding()
        return {"tokenizer": "gpt2", "vocab_size": enc.n_vocab, "token_bytes": token_byte_lengths(enc)}
    try:
        with open(path, "rb") as f:
            upstream = pickle.load(f)
        chars = [upstream["itos"][i] for i in range(upstream["vocab_size"])]
    except Exception as e:
        raise TrainingError(f"{path} is not a nanoGPT character vocabulary (vocab_size, itos): "
                            f"{type(e).__name__}: {e}") from None
    if any(upstream["stoi"].get(c) != i for i, c in enumerate(chars)):
        raise TrainingError(f"{path}: its stoi and itos disagree")
    return {"tokenizer": "char", "vocab_size": len(chars), "chars": chars,
            "token_bytes": [len(c.encode("utf-8")) for c in chars]}


def upstream_model(ckpt, path):
    """Our GPT with upstream's weights, and its model arguments."""
    unknown = set(ckpt["model_args"]) - {f.name for f in dataclasses.fields(GPTConfig)}
    if unknown:
        raise TrainingError(f"{path}: model arguments {sorted(unknown)} that this project's GPT does not have")
    args = {**ckpt["model_args"]}
    model = GPT(GPTConfig(**args))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}  # torch.compile's prefix
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith(".attn.bias")}  # causal-mask buffers
    load_model_state(model, state, path)
    return model, args


def run_config(upstream, model_args, dataset_dir, out_dir):
    """Our training config for the import: the settings both projects have, from upstream's."""
    shared = {f.name for f in dataclasses.fields(TrainConfig)} - SESSION_KEYS - {"dataset", "data_dir"}
    config = {**dataclasses.asdict(TrainConfig()), **{k: v for k, v in upstream.items() if k in shared}}
    config.update({k: v for k, v in model_args.items() if k in config and k != "vocab_size"})
    under_data = os.path.dirname(os.path.abspath(dataset_dir)) == os.path.join(REPO_ROOT, "data")
    config.update(dataset=os.path.basename(os.path.abspath(dataset_dir)), out_dir=out_dir,
                  data_dir="" if under_data else os.path.abspath(dataset_dir))
    try:
        TrainConfig(**config).validate()
    except (ConfigError, TypeError) as e:
        raise TrainingError(f"upstream's training settings do not make a run of ours: {e}") from None
    return config


def write_tokens(data_dir, dataset_dir, vocab):
    """Upstream's train.bin as our train split, its val.bin halved into val and test; meta.json
    (and meta.pkl) by publish_dataset. Returns meta.json's contents."""
    train_path, val_path = (os.path.join(data_dir, f"{s}.bin") for s in ("train", "val"))
    os.makedirs(dataset_dir, exist_ok=True)
    val = np.memmap(val_path, dtype=np.uint16, mode="r")
    staged = {s: staged_path(dataset_dir, s) for s in SPLITS}
    shutil.copyfile(train_path, staged["train"])
    val[:len(val) // 2].tofile(staged["val"])
    val[len(val) // 2:].tofile(staged["test"])
    counts = {f"{s}_tokens": os.path.getsize(p) // 2 for s, p in staged.items()}
    meta = {**vocab, **counts, "source": f"nanoGPT dataset {os.path.abspath(data_dir)}"}
    old = existing_fingerprint(dataset_dir)
    if old is not None and old != fingerprint_files(staged, meta):
        for path in staged.values():
            os.remove(path)
        raise ConfigError(f"{dataset_dir} already holds another dataset: give the import another --dataset_dir")
    return publish_dataset(dataset_dir, meta)


def imported_checkpoint(cfg, in_path):
    """Our checkpoint of upstream's run at in_path, its data copied into our dataset folder when
    upstream's data folder has its tokens. Returns the checkpoint and where its data went (or None)."""
    if not os.path.isdir(cfg.data_dir):
        raise ConfigError(f"--data_dir={cfg.data_dir}: no such folder")
    ckpt = read_upstream(in_path)
    model, model_args = upstream_model(ckpt, in_path)
    optimizer = model.configure_optimizers(0.0, 1.0, (0.9, 0.99), "cpu")  # the settings come from the state
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as e:
        raise TrainingError(f"{in_path}: its optimizer state does not fit the model: {e}") from None
    vocab = read_vocabulary(cfg.data_dir)
    if vocab["vocab_size"] > model.config.vocab_size:
        raise TrainingError(f"{in_path} has {model.config.vocab_size} token rows, fewer than the "
                            f"{vocab['vocab_size']} tokens of {cfg.data_dir}'s vocabulary: not its dataset")
    upstream_config = ckpt["config"]
    dataset_dir = cfg.dataset_dir or os.path.join(REPO_ROOT, "data", f"{upstream_config.get('dataset', 'nanogpt')}_nanogpt")
    config = run_config(upstream_config, model_args, dataset_dir, cfg.out_dir)
    if all(os.path.isfile(os.path.join(cfg.data_dir, f"{s}.bin")) for s in ("train", "val")):
        meta = write_tokens(cfg.data_dir, dataset_dir, vocab)
    else:
        meta, dataset_dir = {**vocab, "source": "nanoGPT meta.pkl"}, None
        print(f"no train.bin and val.bin in {cfg.data_dir}: imported for sampling only (resuming needs its data)")
    # best_val_loss inf: upstream's is an estimate on random windows, not our validation loss
    ours = make_checkpoint(model, model_args, optimizer, int(ckpt["iter_num"]), float("inf"), config, meta,
                           imported_from={"checkpoint": os.path.abspath(in_path), "iter_num": int(ckpt["iter_num"]),
                                          "best_val_loss": float(ckpt["best_val_loss"]),
                                          "dataset": upstream_config.get("dataset")})
    return ours, dataset_dir


def import_command(cfg):
    in_path = os.path.join(cfg.in_dir, "ckpt.pt")
    if os.path.realpath(cfg.in_dir) == os.path.realpath(cfg.out_dir):
        raise ConfigError(f"--out_dir={cfg.out_dir} is --in_dir: the import would overwrite the upstream run; "
                          f"choose another folder")
    with writing_model_into(cfg.out_dir, cfg.overwrite, "import into another --out_dir") as held:
        ours, dataset_dir = imported_checkpoint(cfg, in_path)
        for name in ("ckpt.pt", "best.pt"):  # first: an import that fails to write deletes nothing
            save_checkpoint(ours, os.path.join(cfg.out_dir, name))
        if METRICS_FILE in held:  # the replaced run's records would describe another model
            print(f"overwrite: deleting the previous run's {METRICS_FILE} in {cfg.out_dir}")
            os.remove(os.path.join(cfg.out_dir, METRICS_FILE))
    best = ours["imported_from"]["best_val_loss"]
    upstream_loss = f"{best:.4f}" if math.isfinite(best) else "none"
    print(f"imported nanoGPT's run at iteration {ours['iter_num']} (its val loss estimate {upstream_loss}) "
          f"into {cfg.out_dir}" + (f"; its data: {dataset_dir}" if dataset_dir else ""))


def main(argv):
    return run_command(ImportConfig, argv, import_command,
                       "import_nanogpt.py --in_dir=FOLDER --data_dir=FOLDER --out_dir=FOLDER "
                       "[--dataset_dir=FOLDER] [--overwrite=True]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
