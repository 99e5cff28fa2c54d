"""
The checkpoint format, defined once. A checkpoint is a dict saved with torch.save (ckpt.pt: the
latest state, best.pt: the best validation loss so far). Its keys:

    model          the model's state_dict
    model_args     the keyword arguments of the model's config class (GPTConfig, AdvancedGPTConfig)
    model_class    the model's class name: a key of MODEL_CLASSES
    optimizer      AdamW's state_dict
    iter_num       optimizer steps taken
    best_val_loss  the best validation loss of the run so far (inf: none measured by this project)
    config         the training configuration (dataclasses.asdict of TrainConfig or a subclass)
    dataset_meta   the dataset's meta.json, less token_bytes: its vocabulary and fingerprint
    checksum       sha256 of all the rest (content_checksum)

and, written by train.py to resume exactly, or by the commands that make a checkpoint from
another one, to say where it came from (each optional):

    scaler         the float16 GradScaler's state_dict
    sampler        the BatchSampler's state (batches.py)
    rng            one random state per process (runtime.rng_state)
    folded_from    train_advanced_centered.fold_checkpoint: the centered checkpoint it was folded from
    imported_from  scripts/import_nanogpt.py: upstream nanoGPT's checkpoint it was imported from

Upstream nanoGPT's sample.py and train.py --init_from=resume read ours: they take model,
model_args, optimizer, iter_num, best_val_loss and config and ignore the rest.
"""

import dataclasses
import hashlib
import os

import torch

from configurator import ConfigError
from files import write_atomically
from training import TrainingError
from training.metrics import METRICS_FILE
from training.runtime import set_rng_state

MODEL_KEYS = ("model", "model_args", "model_class")  # what rebuilds the model
TRAINING_KEYS = ("optimizer", "iter_num", "best_val_loss")  # what resumes its training


# A checkpoint is a dict saved with torch.save, which carries under CHECKSUM the sha256 of the rest
# of its content: torch.load does not notice bytes flipped inside a tensor, which would then load,
# sample nonsense, or make a resumed run "diverge". Checkpoints written before it have none.
CHECKSUM = "checksum"


def content_checksum(obj):
    """sha256 (hex) of a checkpoint's content as torch.load gives it back: every tensor's dtype,
    shape and bytes and every other value, in order. Measured on the CPU model (experiment_base:
    0.81M parameters, a 9.7 MB file with the optimizer state) on a busy 2-core CPU: 20 ms, on a
    save of 67 ms (once per evaluation, for best.pt and ckpt.pt together) and a load of 48 ms;
    0.2% of a 1000-iteration run."""
    digest = hashlib.sha256()

    def add(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            digest.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            digest.update(f"dict {len(x)};".encode())
            for k, v in x.items():
                add(k)
                add(v)
        elif isinstance(x, (list, tuple)):
            digest.update(f"{type(x).__name__} {len(x)};".encode())
            for v in x:
                add(v)
        else:
            digest.update(f"{type(x).__name__} {x!r};".encode())

    add(obj)
    return digest.hexdigest()


def make_checkpoint(model, model_args, optimizer, iter_num, best_val_loss, config, dataset_meta, **extra):
    """The dict of a checkpoint (the keys above; extra: the optional ones)."""
    return {"model": model.state_dict(), "model_args": dict(model_args), "model_class": type(model).__name__,
            "optimizer": optimizer.state_dict(), "iter_num": iter_num, "best_val_loss": best_val_loss,
            "config": config, "dataset_meta": {k: v for k, v in dataset_meta.items() if k != "token_bytes"},
            **extra}


def save_checkpoint(obj, *paths):
    """Write obj to each path atomically (files.write_atomically): a crash at any point leaves the
    previous file as it was. The content's checksum goes in with it, computed once for all paths."""
    obj = {**obj, CHECKSUM: content_checksum(obj)}
    for path in paths:
        write_atomically(path, lambda f: torch.save(obj, f))


def read_checkpoint(path, map_location="cpu"):
    """What a checkpoint file holds (ours, or upstream nanoGPT's), tensors and plain values only."""
    if not os.path.isfile(path):
        raise ConfigError(f"no checkpoint at {path}")  # a path that names none: a bad value
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ConfigError(f"checkpoint {path} is unreadable (truncated or corrupt): "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def load_checkpoint(path, map_location="cpu"):
    """The checkpoint at path, its checksum verified (when it has one): a damaged file is one
    ConfigError (exit 2) that says it is corrupt, never a model that loads and then misbehaves."""
    ckpt = read_checkpoint(path, map_location)
    missing = set(MODEL_KEYS) - set(ckpt) if isinstance(ckpt, dict) else {"model"}
    if missing == {"model_class"}:  # upstream nanoGPT's train.py writes model and model_args, no class
        raise TrainingError(f"checkpoint {path} is upstream nanoGPT's: import it first with python "
                            f"scripts/import_nanogpt.py --in_dir={os.path.dirname(path) or '.'} "
                            f"--data_dir=ITS_DATA_FOLDER --out_dir=NEW_FOLDER")
    if missing:
        raise TrainingError(f"checkpoint {path} lacks {sorted(missing)}: not a checkpoint of this project")
    saved = ckpt.pop(CHECKSUM, None)
    if saved is not None and content_checksum(ckpt) != saved:
        raise ConfigError(f"checkpoint {path} is corrupt: its content does not match the checksum written with "
                          f"it (bytes changed on disk); use another checkpoint of the run, or train it again")
    return ckpt


def load_model_state(model, state, path):
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise TrainingError(f"checkpoint {path} does not match the model: {first}") from None


# Checkpoints name their model class; a class defined outside model.py is imported on demand.
MODEL_CLASSES = {  # class name -> (module, config class name)
    "GPT": ("model", "GPTConfig"),
    "AdvancedGPT": ("model_advanced_centering", "AdvancedGPTConfig"),
}


def model_from_checkpoint(ckpt, path="checkpoint"):
    """Rebuild the model a checkpoint holds (its class, config and weights)."""
    if ckpt["model_class"] not in MODEL_CLASSES:
        raise TrainingError(f"{path} holds an unknown model class '{ckpt['model_class']}'")
    module_name, config_name = MODEL_CLASSES[ckpt["model_class"]]
    module = __import__(module_name)
    model_cls, config_cls = getattr(module, ckpt["model_class"]), getattr(module, config_name)
    try:
        model = model_cls(config_cls(**ckpt["model_args"]))
    except (TypeError, ValueError) as e:
        raise TrainingError(f"{path}: cannot build the model from its arguments: {e}") from None
    load_model_state(model, ckpt["model"], path)
    return model


def model_args_from(cfg, model_config_cls, vocab_size):
    args = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(model_config_cls) if hasattr(cfg, f.name)}
    args["vocab_size"] = vocab_size
    return args


def load_resumable_checkpoint(path, model_cls):
    metrics_path = os.path.join(os.path.dirname(path), METRICS_FILE)
    if not os.path.exists(path) and os.path.exists(metrics_path):
        raise ConfigError(f"no checkpoint at {path}: the run stopped before its first checkpoint; "
                            f"start it again with --init_from=scratch --overwrite=True")
    ckpt = load_checkpoint(path)
    missing = set(TRAINING_KEYS) - set(ckpt)
    if missing:
        raise TrainingError(f"{path} cannot be resumed: it lacks the training state "
                            f"{sorted(missing)} (an inference-only checkpoint?)")
    if ckpt["model_class"] != model_cls.__name__:
        raise TrainingError(f"{path} holds a {ckpt['model_class']}, not a {model_cls.__name__}")
    check_records_its_data(ckpt, path)
    return ckpt


VOCABULARY_KEYS = ("tokenizer", "vocab_size", "chars", "gpt2_ids")  # what the token ids mean


def vocabulary_difference(saved_meta, meta):
    """The vocabulary keys on which a checkpoint's dataset_meta and a dataset's meta differ ([] if none)."""
    return [k for k in VOCABULARY_KEYS if saved_meta.get(k) != meta.get(k)]


def same_dataset(saved_meta, data):
    """Whether data is the dataset a checkpoint was trained on: the same vocabulary, and the same
    fingerprint, or where one side predates fingerprints, the same split sizes."""
    if vocabulary_difference(saved_meta, data.meta):
        return False  # a checkpoint that carries another vocabulary would decode its samples wrongly
    if saved_meta.get("fingerprint") and data.fingerprint:
        return saved_meta["fingerprint"] == data.fingerprint
    sizes = lambda meta: [meta.get(k) for k in ("train_tokens", "val_tokens")]
    return sizes(saved_meta) == sizes(data.meta)


def check_records_its_data(ckpt, path):
    """Refuse to resume (or evaluate) a nanoGPT import that records no data to check a dataset
    against: imported without its token files, it has only a vocabulary (no counts, no fingerprint)."""
    saved_meta = ckpt.get("dataset_meta", {})
    if ckpt.get("imported_from") and not saved_meta.get("fingerprint") and saved_meta.get("train_tokens") is None:
        raise ConfigError(f"{path} records no data, only a vocabulary (a nanoGPT run imported for sampling only): "
                          f"to resume or evaluate it, import it again with a --data_dir that holds its train.bin "
                          f"and val.bin (--overwrite=True replaces this import)")


def check_same_dataset(ckpt, data, path):
    """Refuse to resume (or evaluate) a checkpoint on another dataset than it was trained on."""
    saved_meta = ckpt.get("dataset_meta", {})
    if same_dataset(saved_meta, data):
        return
    saved = saved_meta.get("fingerprint") or "no fingerprint"
    vocabulary = vocabulary_difference(saved_meta, data.meta)
    differ = f"its {', '.join(vocabulary)} differ" if vocabulary else f"now {(data.fingerprint or 'none')[:12]}"
    raise ConfigError(f"{path} was trained on another dataset than {data.data_dir} holds "
                      f"(fingerprint {saved[:12]}, {differ}): give it "
                      f"its own data (--data_dir=...), or re-prepare that data as it was")


def restore_training_state(ckpt, path, cfg, optimizer, scaler, sampler, rt, say):
    """Put the training state of a resumed checkpoint back: the optimizer, and where the checkpoint
    has them (a nanoGPT import or a fold has not) the scaler, the batch stream and the random state."""
    optimizer.load_state_dict(ckpt["optimizer"])
    if "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng")
    if "sampler" in ckpt and rng is not None:
        sampler.load_state_dict(ckpt["sampler"])
    elif not cfg.eval_only:
        say(f"note: {path} carries no batch sampler or random state (a nanoGPT import or a fold): "
            f"batches and dropout start afresh from seed {cfg.seed}, not where its training left off")
    if rng is not None and len(rng) == rt.world_size:
        set_rng_state(rng[rt.rank])
    elif rng is not None:
        say(f"note: checkpoint was written by {len(rng)} processes, now {rt.world_size}: "
            f"dropout randomness restarts from the seed")
