"""A run of upstream nanoGPT (its ckpt.pt and its dataset folder) made a run of ours (the command
line, and what carries over: scripts/import_nanogpt.py). Upstream's GPT is ours without the
extension sites, so its weights, model arguments and AdamW state load as they are; its token files
become a dataset of ours with a test split (val.bin halved)."""

import dataclasses
import math
import os
import pickle
import shutil
from dataclasses import dataclass

import numpy as np

from configurator import ConfigError
from data.text_sources import (SPLITS, char_vocabulary, existing_fingerprint, fingerprint_files, publish_dataset, staged_path,
                               writing_dataset)
from model import GPT, GPTConfig
from train import TrainConfig
from training import REPO_ROOT, TrainingError
from training.checkpoint import load_model_state, make_checkpoint, read_checkpoint, save_checkpoint
from training.metrics import METRICS_FILE
from training.run_folder import SESSION_KEYS, writing_model_into

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
        agree = all(upstream["stoi"].get(c) == i for i, c in enumerate(chars))
    except Exception as e:
        raise TrainingError(f"{path} is not a nanoGPT character vocabulary (vocab_size, itos, stoi): "
                            f"{type(e).__name__}: {e}") from None
    if not agree:
        raise TrainingError(f"{path}: its stoi and itos disagree")
    return char_vocabulary(chars)


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
    for path in (train_path, val_path):  # a source that cannot be read is named as such, not as the destination
        try:
            open(path, "rb").close()
        except OSError as e:
            raise TrainingError(f"cannot read upstream's {path}: {e.strerror or e}") from None
    with writing_dataset(dataset_dir):  # a full disk, or a file where the folder goes: one line
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
    rows = model.config.vocab_size
    # upstream sizes a character model to its meta.pkl exactly, a GPT-2 one to 50304 (50257 from gpt2)
    if rows < vocab["vocab_size"] or (vocab["tokenizer"] == "char" and rows != vocab["vocab_size"]):
        raise TrainingError(f"{in_path} has {rows} token rows, but {cfg.data_dir}'s vocabulary has "
                            f"{vocab['vocab_size']} tokens ({vocab['tokenizer']}): not its dataset")
    upstream_config = ckpt["config"]
    dataset_dir = cfg.dataset_dir or os.path.join(REPO_ROOT, "data", f"{upstream_config.get('dataset', 'nanogpt')}_nanogpt")
    config = run_config(upstream_config, model_args, dataset_dir, cfg.out_dir)
    if all(os.path.isfile(os.path.join(cfg.data_dir, f"{s}.bin")) for s in ("train", "val")):
        meta = write_tokens(cfg.data_dir, dataset_dir, vocab)
    else:
        meta, dataset_dir = {**vocab, "source": "nanoGPT meta.pkl"}, None
        print(f"no train.bin and val.bin in {cfg.data_dir}: imported for sampling only (resuming or evaluating it needs its data)")
    # best_val_loss inf: upstream's is an estimate on random windows, not our validation loss
    ours = make_checkpoint(model, model_args, optimizer, int(ckpt["iter_num"]), float("inf"), config, meta,
                           imported_from={"checkpoint": os.path.abspath(in_path), "iter_num": int(ckpt["iter_num"]),
                                          "best_val_loss": float(ckpt["best_val_loss"]),
                                          "dataset": upstream_config.get("dataset")})
    return ours, dataset_dir


def import_run(cfg):
    """The import of upstream's run at cfg.in_dir into cfg.out_dir (an ImportConfig)."""
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
