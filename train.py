"""
The training loop, written once. Single process:

    python train.py config/train_shakespeare_char_cpu.py

Several processes (GPUs with nccl, or CPU processes with gloo):

    torchrun --standalone --nproc_per_node=2 train.py config/train_shakespeare_char_cpu.py --device=cpu

Global batch: every optimizer step consumes batch_size * gradient_accumulation_steps sequences of
block_size tokens, whatever the number of processes. The micro-batches of a step are drawn from
one seeded stream that every rank replays; with W processes each rank takes its own
gradient_accumulation_steps / W of them (or, when that does not divide, batch_size / W rows of
every micro-batch), and DDP averages the gradients. So 1 process and W processes see the same
batches and follow the same loss curve (up to float rounding).

Other scripts reuse this loop: `train(config, model_cls, model_config_cls)` trains any subclass of
model.GPT, and `main(argv, ...)` is the command line around it.
"""

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import resource
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError, UserError, given_keys, run_command
from cpu_runtime import retain_freed_memory
from data.text_sources import dataset_fingerprint
from files import FileLock, LockHeld, append_jsonl, ensure_writable_folder, read_jsonl, rewrite_jsonl, write_atomically
from model import GPT, GPTConfig

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = "out/train"  # the run's folder: checkpoints and metrics.jsonl (each trainer has its own default)
    eval_interval: int = 250  # evaluate (and checkpoint) every this many iterations
    log_interval: int = 10  # print and record the training loss every this many iterations
    eval_windows: int = 200  # fixed validation windows of block_size tokens, the same at every eval
    # validation decides; fewer train windows than eval_windows: evaluation is a large share of a short run
    train_eval_windows: int = 100  # fixed train-split windows for the train-loss figure (a diagnostic)
    eval_only: bool = False  # evaluate once and exit, writing and deleting nothing (a run in out_dir: its ckpt.pt)
    # (with False, a resumed run replays the iterations since its last checkpoint, exactly)
    always_save_checkpoint: bool = True  # ckpt.pt at every eval; False: only at improving evals and the end
    init_from: str = "scratch"  # 'scratch' or 'resume' (from out_dir/ckpt.pt)
    overwrite: bool = False  # let a fresh run replace the run already in out_dir (its checkpoints and metrics)
    seed: int = 1337  # seeds the batches, the initialization and dropout
    # logging
    wandb_log: bool = False  # also log to Weights & Biases (needs the wandb package)
    wandb_project: str = "centering"  # wandb project name
    wandb_run_name: str = "run"  # wandb run name
    # data
    dataset: str = "shakespeare_char"  # folder name under data/ (prepared by its prepare.py)
    data_dir: str = ""  # default: data/<dataset> in the repository
    batch_size: int = 12  # sequences per micro-step per process
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step, over all processes
    block_size: int = 256  # context length in tokens
    vocab_multiple: int = 1  # pad the vocabulary up to a multiple of this (64 helps GPUs)
    # model
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block
    n_embd: int = 384  # width of the residual stream (a multiple of n_head)
    dropout: float = 0.0  # dropout probability, in [0, 1)
    bias: bool = False  # biases in the linear layers and LayerNorms
    # AdamW
    learning_rate: float = 1e-3  # peak learning rate (after warmup)
    max_iters: int = 5000  # optimizer steps in all
    weight_decay: float = 0.1  # AdamW weight decay of the 2-D weights (0 turns it off)
    beta1: float = 0.9  # AdamW beta1, in [0, 1)
    beta2: float = 0.99  # AdamW beta2, in [0, 1)
    grad_clip: float = 1.0  # 0 disables clipping
    # learning rate schedule: linear warmup, cosine decay to min_lr, then constant
    decay_lr: bool = True  # False: learning_rate throughout, no warmup or decay
    warmup_iters: int = 100  # iterations of linear warmup
    lr_decay_iters: int = 0  # 0 means max_iters
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    # system
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    dtype: str = "auto"  # auto: bfloat16 on CUDA where supported, else float16 (CUDA), float32 (CPU)
    compile: bool = False  # torch.compile the model
    peak_flops: float = 312e12  # for MFU: the accelerator's dense bf16 peak (A100: 312e12)

    def validate(self):
        positive = ["eval_interval", "log_interval", "eval_windows", "train_eval_windows", "batch_size",
                    "gradient_accumulation_steps", "block_size", "vocab_multiple", "n_layer",
                    "n_head", "n_embd"]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if self.max_iters < 0 or self.warmup_iters < 0 or self.lr_decay_iters < 0:
            raise ConfigError("max_iters, warmup_iters and lr_decay_iters must not be negative")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init_from not in ("scratch", "resume"):
            raise ConfigError(f"init_from must be 'scratch' or 'resume', got '{self.init_from}'")
        if self.dtype not in ("auto", *DTYPES):
            raise ConfigError(f"dtype must be one of auto, {', '.join(DTYPES)}; got '{self.dtype}'")
        check_device(self.device)
        check_ranges(self)

    def batch_statistics_reason(self):
        """Why the model's forward pass depends on the whole micro-batch (a batch mean), or None.
        Such a micro-batch cannot be split between processes without changing the computation."""
        return None


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device):
    if not DEVICE.fullmatch(device):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got '{device}'")


def check_ranges(cfg):
    """Ranges of the optimizer, schedule and output keys: a careless value fails here, in one line,
    before anything trains (a negative min_lr would train "in reverse", a beta of 1.5 diverge)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning_rate must be positive, got {cfg.learning_rate}")
    if cfg.min_lr < 0 or (cfg.decay_lr and cfg.min_lr > cfg.learning_rate):
        raise ConfigError(f"min_lr must be in [0, learning_rate={cfg.learning_rate}], got {cfg.min_lr}")
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ConfigError(f"{key} must be in [0, 1), got {getattr(cfg, key)}")
    for key in ("weight_decay", "grad_clip"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must not be negative (0 turns it off), got {getattr(cfg, key)}")
    if not 0 <= cfg.seed < 2**62:
        raise ConfigError(f"seed must be in [0, 2**62), got {cfg.seed}")
    if cfg.peak_flops <= 0:
        raise ConfigError(f"peak_flops must be positive, got {cfg.peak_flops}")
    if not cfg.out_dir.strip():
        raise ConfigError("out_dir must not be empty: give --out_dir=FOLDER")
    if cfg.wandb_log and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb_log=True needs the wandb package: pip install wandb (or --wandb_log=False)")


class TrainingError(UserError):
    """A problem the user can fix (missing data, bad checkpoint): reported in one line."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""
    status = 3


# ----------------------------------------------------------------------------------------------
# Runtime: processes, device, precision

@dataclass
class Runtime:
    device: str
    device_type: str
    ptdtype: torch.dtype
    autocast: object
    ddp: bool
    rank: int
    local_rank: int
    world_size: int

    @property
    def master(self):
        return self.rank == 0


def pick_device(requested):
    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but CUDA is not available")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' was requested but MPS is not available")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(requested, device_type):
    """The dtype a run trains in: 'auto' is bfloat16 (or float16) on CUDA, float32 elsewhere."""
    if requested == "auto":
        if device_type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if requested == "float16" and device_type != "cuda":
        raise ConfigError("dtype float16 needs CUDA; use float32 or bfloat16")
    return requested


def preflight(cfg, device=True):
    """What would stop a run at its start, checked without building anything (a sweep does this
    for every planned run before the first starts): the device is there (device=False: it is
    another machine's, a Slurm job's), the dtype runs on it, the dataset is prepared and each
    split holds a block."""
    if device:
        resolve_dtype(cfg.dtype, pick_device(cfg.device).split(":")[0])
    TokenData(cfg.data_dir or os.path.join(REPO_ROOT, "data", cfg.dataset), cfg.block_size)


def memory_bytes(device_type):
    """The memory a run on this device can have at most: the GPU's, else this machine's RAM."""
    if device_type == "cuda":
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return math.inf


def training_bytes(n_layer, n_embd, block_size, vocab_size, micro_batch):
    """A lower bound of a training step's memory, so that only sizes that cannot run are refused:
    weights, gradients and AdamW's two moments in float32 (16 bytes a parameter), and of the
    activations kept for the backward pass only the residual stream, attention output and MLP
    hidden (8 C values a token and layer) and the logits, at 2 bytes a value (bfloat16; no
    attention matrix, which flash attention does not keep)."""
    params = 12 * n_layer * n_embd ** 2 + (vocab_size + block_size) * n_embd
    tokens = micro_batch * block_size
    return 16 * params + 2 * tokens * (8 * n_layer * n_embd + vocab_size)


def check_sizes(cfg, model_args, data, rt):
    """Refuse, in one line, sizes that cannot run: more evaluation windows than the split has
    starts, or a model and batch whose training needs more memory than the device has."""
    for split, key in (("val", "eval_windows"), ("train", "train_eval_windows")):
        starts = data.max_offset(split) + 1
        if getattr(cfg, key) > starts:
            raise ConfigError(f"{key}={getattr(cfg, key)} is more than the {starts:,} windows the {split} split has")
    need = training_bytes(model_args["n_layer"], model_args["n_embd"], model_args["block_size"], model_args["vocab_size"],
                          cfg.batch_size)
    need += 8 * cfg.batch_size * cfg.gradient_accumulation_steps  # a step's window offsets, drawn at once
    have = memory_bytes(rt.device_type)
    if need > have:
        raise ConfigError(f"this model and batch need at least {need / 2 ** 30:,.1f} GiB to train, and the "
                          f"{rt.device_type} has {have / 2 ** 30:,.1f} GiB: make n_layer, n_embd, block_size or "
                          f"batch_size smaller (gradient_accumulation_steps keeps the tokens per step)")


def setup_runtime(cfg):
    ddp = int(os.environ.get("RANK", -1)) != -1  # launched by torchrun
    device = pick_device(cfg.device)
    device_type = device.split(":")[0]
    rank, local_rank, world_size = 0, 0, 1
    if ddp:
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        if device_type == "cuda":
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        if rank != 0:
            warnings.simplefilter("ignore")  # every process runs the same code: rank 0 warns for all
    check_step_sharing(cfg.gradient_accumulation_steps, cfg.batch_size, world_size, cfg.batch_statistics_reason())
    dtype = resolve_dtype(cfg.dtype, device_type)
    if device_type == "cpu":
        retain_freed_memory()  # no page faults on every step's activations (cpu_runtime.py)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ptdtype = DTYPES[dtype]
    autocast = (nullcontext() if ptdtype == torch.float32
                else torch.amp.autocast(device_type=device_type, dtype=ptdtype))
    return Runtime(device, device_type, ptdtype, autocast, ddp, rank, local_rank, world_size)


# ----------------------------------------------------------------------------------------------
# Data

def read_meta(path):
    """A dataset's meta.json, checked: a JSON object with a positive integer vocab_size."""
    again = "re-run the prepare script that made the dataset (with --force)"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid JSON ({str(e).splitlines()[0]}): {again}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} holds a {type(meta).__name__}, not the JSON object a dataset's meta is: {again}")
    vocab = meta.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise ConfigError(f"{path} lacks a positive integer vocab_size (has {vocab!r}): {again}")
    return meta


class TokenData:
    """train.bin / val.bin / test.bin (uint16 token ids) and meta.json of a prepared dataset. The
    test split is optional (datasets prepared before it existed have none): has_test says."""

    def __init__(self, data_dir, block_size):
        self.data_dir = data_dir
        self.block_size = block_size
        meta_path = os.path.join(data_dir, "meta.json")
        if not os.path.isfile(meta_path):
            raise ConfigError(f"no prepared dataset in {data_dir} (meta.json missing): run "
                                f"python data/<dataset>/prepare.py first")
        self.meta = read_meta(meta_path)
        self.vocab_size = self.meta["vocab_size"]
        self.token_bytes = np.asarray(self.meta.get("token_bytes", [1] * self.vocab_size), dtype=np.int64)
        self.has_test = os.path.isfile(self._path("test"))
        self.lengths = {}
        for split in ("train", "val", "test") if self.has_test else ("train", "val"):
            path = self._path(split)
            if not os.path.isfile(path):
                raise ConfigError(f"{path} is missing: prepare the dataset first")
            size = os.path.getsize(path)
            if size % 2:
                raise ConfigError(f"{path} holds {size:,} bytes, an odd number: not whole uint16 tokens (a file cut "
                                  f"short or not a token file); re-run the prepare script that made it (with --force)")
            n = size // 2
            if n < block_size + 2:
                raise ConfigError(f"{path} holds {n} tokens, too few for block_size {block_size}")
            self.lengths[split] = n
        self.fingerprint = self.meta.get("fingerprint")  # None for datasets prepared before it existed
        if self.fingerprint:
            self.check_fingerprint()

    def check_fingerprint(self):
        """The fingerprint recomputed from the files must be the one meta.json recorded: a token file
        cut or replaced, or an edited vocabulary, would otherwise train (and label a checkpoint)
        under the old identity. A full hash is cheap enough: measured on shakespeare_char's 4.3M
        tokens (9.6 MB) on a busy 2-core CPU, 14-30 ms (50 ms from a cold page cache), under 0.25% of
        the shortest protocol run (150 iterations, 22 s) and 0.05% of a 1000-iteration one (100 s)."""
        actual = dataset_fingerprint(self.data_dir, self.meta)
        if actual != self.fingerprint:
            raise ConfigError(f"{self.data_dir} does not match its meta.json (fingerprint {self.fingerprint[:12]}, "
                              f"the files now give {actual[:12]}): its token files or vocabulary changed since it "
                              f"was prepared; re-run the prepare script that made it (with --force)")

    def _path(self, split):
        return os.path.join(self.data_dir, f"{split}.bin")

    def windows(self, split, offsets):
        """Token windows starting at offsets (N,) -> inputs x and targets y, each (N, block_size)."""
        # a fresh memmap per call: a long-lived one keeps every page it touched mapped
        data = np.memmap(self._path(split), dtype=np.uint16, mode="r")
        rows = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(self.block_size + 1)
        chunk = torch.from_numpy(data[rows].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def max_offset(self, split):
        return self.lengths[split] - self.block_size - 1

    def eval_offsets(self, split, count):
        """count window starts spread evenly over the split: fixed for a dataset and block size."""
        return np.linspace(0, self.max_offset(split), num=count).round().astype(np.int64)

    def tiling_offsets(self, split):
        """Starts of every non-overlapping window of the split: each token after the first is a
        target exactly once, except the fewer than block_size left over at the end."""
        return np.arange((self.lengths[split] - 1) // self.block_size, dtype=np.int64) * self.block_size


class BatchSampler:
    """The stream of training windows: one seeded generator that every rank replays in full, so
    the sequence of global batches depends on the seed only, not on the number of processes."""

    def __init__(self, seed, max_offset, batch_size, micro_steps):
        self.generator = torch.Generator().manual_seed(seed)
        self.max_offset = max_offset
        self.batch_size = batch_size
        self.micro_steps = micro_steps

    def next_step(self):
        """Window offsets of one optimizer step: (micro_steps, batch_size)."""
        n = self.micro_steps * self.batch_size
        offsets = torch.randint(0, self.max_offset + 1, (n,), generator=self.generator)
        return offsets.view(self.micro_steps, self.batch_size).numpy()

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def check_step_sharing(micro_steps, batch_size, world_size, batch_statistics=None):
    """W processes share a step's micro_steps x batch_size windows by whole micro-steps, or else by
    an equal slice of every micro-batch: one of the two must divide by W. A model that takes batch
    statistics (batch_statistics says why) needs whole micro-steps."""
    if micro_steps % world_size == 0 or (batch_size % world_size == 0 and batch_statistics is None):
        return
    more_steps = -(-micro_steps // world_size) * world_size
    if batch_statistics is not None:
        raise ConfigError(f"{world_size} processes cannot share steps of gradient_accumulation_steps="
                          f"{micro_steps}: add --gradient_accumulation_steps={more_steps} ({batch_statistics}, "
                          f"so a micro-batch cannot be split between processes)")
    fewer_rows = max(world_size, batch_size - batch_size % world_size)
    raise ConfigError(f"{world_size} processes cannot share steps of gradient_accumulation_steps="
                      f"{micro_steps} x batch_size={batch_size}: add --gradient_accumulation_steps="
                      f"{more_steps} or --batch_size={fewer_rows} (a multiple of {world_size})")


def local_micro_steps(micro_steps, world_size):
    """How many micro-steps of a step each process runs (see rank_share; check_step_sharing has
    made sure that the rows of a micro-batch are split only where the model allows it)."""
    return micro_steps // world_size if micro_steps % world_size == 0 else micro_steps


def rank_share(step_offsets, rank, world_size):
    """This process's part of one step's windows (micro_steps, batch_size): whole micro-steps when
    they divide among the processes, else the same slice of every micro-batch. Either way the
    global batch, and so the loss curve, does not depend on the number of processes."""
    micro_steps, batch_size = step_offsets.shape
    if micro_steps % world_size == 0:
        k = micro_steps // world_size
        return step_offsets[rank * k:(rank + 1) * k]
    k = batch_size // world_size
    return step_offsets[:, rank * k:(rank + 1) * k]


# ----------------------------------------------------------------------------------------------
# Checkpoints

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
    missing = {"model", "model_args", "model_class"} - set(ckpt) if isinstance(ckpt, dict) else {"model"}
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


# ----------------------------------------------------------------------------------------------
# Evaluation, schedule, metrics

def get_lr(it, cfg):
    """Learning rate for optimizer step it (0-based)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


@torch.no_grad()
def evaluate(model, data, split, count, batch_size, rt, offsets=None):
    """Mean loss (nats/token) and bits per byte (per UTF-8 byte of the text) on the fixed evaluation
    windows of a split, or on the windows starting at offsets when given. Under DDP each rank takes
    every world_size-th window and the sums are reduced."""
    model.eval()
    offsets = (data.eval_offsets(split, count) if offsets is None else offsets)[rt.rank::rt.world_size]
    loss_sum = torch.zeros((), dtype=torch.float64, device=rt.device)
    tokens, nbytes = 0, 0
    for start in range(0, len(offsets), batch_size):
        x, y = data.windows(split, offsets[start:start + batch_size])
        nbytes += int(data.token_bytes[y.numpy()].sum())
        tokens += y.numel()
        x, y = x.to(rt.device), y.to(rt.device)
        with rt.autocast:
            _, loss = model(x, y)
        loss_sum += loss.double() * y.numel()
    totals = torch.tensor([tokens, nbytes], dtype=torch.float64, device=rt.device)
    if rt.ddp:
        dist.all_reduce(loss_sum)
        dist.all_reduce(totals)
    model.train()
    loss = (loss_sum / totals[0]).item()
    bits_per_byte = (loss_sum / math.log(2) / totals[1]).item()
    return loss, bits_per_byte


class MetricsLog:
    """metrics.jsonl in out_dir: one JSON object per line, appended as training goes (files.py: a
    write cut short leaves at most a torn last line, which the next read or append drops)."""

    def __init__(self, out_dir, enabled):
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.enabled = enabled

    def truncate_after(self, iter_num):
        """On resume: drop records a crashed run wrote past its last checkpoint, and the test
        record of an earlier end of the run (the resumed run writes its own)."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        kept = [r for r in read_jsonl(self.path) if r.get("iter", 0) <= iter_num and r.get("type") != "test"]
        rewrite_jsonl(self.path, kept)

    def write(self, record):
        if self.enabled:
            append_jsonl(self.path, record)


def peak_memory_mb(rt):
    if rt.device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def model_args_from(cfg, model_config_cls, vocab_size):
    args = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(model_config_cls) if hasattr(cfg, f.name)}
    args["vocab_size"] = vocab_size
    return args


def rng_state(rt):
    state = {"cpu": torch.get_rng_state()}
    if rt.device_type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def final_test_record(model, data, best_path, batch_size, rt):
    """The run's reported result: the best checkpoint (chosen on validation loss) evaluated exactly
    on the whole test split, every non-overlapping window. Loads the best weights into model."""
    if rt.ddp:
        dist.barrier()  # rank 0 wrote best.pt
    best = load_checkpoint(best_path)
    load_model_state(model, best["model"], best_path)
    offsets = data.tiling_offsets("test")
    loss, bits_per_byte = evaluate(model, data, "test", None, batch_size, rt, offsets=offsets)
    return {"type": "test", "iter": best["iter_num"], "test_loss": loss, "test_bpb": bits_per_byte,
            "test_tokens": len(offsets) * data.block_size}


# ----------------------------------------------------------------------------------------------
# Run folders and resuming: nothing a user made is silently replaced or mislabelled

RUN_FILES = ("ckpt.pt", "best.pt", "metrics.jsonl")  # a folder with any of these holds a run
RUN_LOCK = "train.lock"  # held (files.FileLock) by the one trainer of a run folder while it runs
TEMPORARY_FILE = re.compile(r"\.tmp\.(\d+)$")  # files.write_atomically's, ending in the writer's PID


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def stale_temporary_files(out_dir):
    """Temporary files whose writer no longer runs (it died in the middle of a write)."""
    if not os.path.isdir(out_dir):
        return []
    stale = []
    for name in sorted(os.listdir(out_dir)):
        match = TEMPORARY_FILE.search(name)
        if match and not process_alive(int(match.group(1))):
            stale.append(os.path.join(out_dir, name))
    return stale


def run_files_in(folder):
    """The RUN_FILES that folder holds: any at all means it holds a run, which every command that
    writes a checkpoint or a model there must not replace unasked."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(folder, name))]


def check_out_dir(cfg):
    """Refuse a fresh run into a folder that holds a run, unless cfg.overwrite; make sure the folder
    exists and is writable. Returns the run files the fresh run replaces: clear_out_dir deletes
    them once every other check has passed, so a run that cannot start deletes nothing."""
    if cfg.eval_only:
        return []  # evaluation writes nothing: the folder is only read, if it exists at all
    held = run_files_in(cfg.out_dir)
    if cfg.init_from == "scratch" and held and not cfg.overwrite:
        raise ConfigError(f"{cfg.out_dir} already holds a run ({', '.join(held)}): continue it with "
                          f"--init_from=resume, replace it with --overwrite=True, or choose another --out_dir")
    ensure_writable_folder(cfg.out_dir, "--out_dir")
    return held if cfg.init_from == "scratch" else []


def clear_out_dir(out_dir, replaced, rt, say):
    """Delete the replaced run's files (and nothing else) and stale temporary files: rank 0 does,
    just before the run writes its first record; under DDP the other ranks wait until it has."""
    if rt.master:
        doomed = stale_temporary_files(out_dir)
        if replaced:
            doomed += [os.path.join(out_dir, name) for name in replaced]
            say(f"overwrite: deleting the previous run's {', '.join(replaced)} in {out_dir}")
        for path in doomed:
            os.remove(path)
    if rt.ddp:
        dist.barrier()


def load_resumable_checkpoint(path, model_cls):
    metrics_path = os.path.join(os.path.dirname(path), "metrics.jsonl")
    if not os.path.exists(path) and os.path.exists(metrics_path):
        raise ConfigError(f"no checkpoint at {path}: the run stopped before its first checkpoint; "
                            f"start it again with --init_from=scratch --overwrite=True")
    ckpt = load_checkpoint(path)
    # sampler, rng and scaler may be missing (a nanoGPT import, a fold): train() starts them afresh
    missing = {"optimizer", "iter_num", "best_val_loss"} - set(ckpt)
    if missing:
        raise TrainingError(f"{path} cannot be resumed: it lacks the training state "
                            f"{sorted(missing)} (an inference-only checkpoint?)")
    if ckpt["model_class"] != model_cls.__name__:
        raise TrainingError(f"{path} holds a {ckpt['model_class']}, not a {model_cls.__name__}")
    return ckpt


# Keys of the command line that describe this session, not the run: never taken from the checkpoint.
SESSION_KEYS = {"out_dir", "init_from", "overwrite", "eval_only", "device", "dtype", "compile",
                "peak_flops", "wandb_log", "wandb_project", "wandb_run_name"}
# Keys that define the model, the centering or the data stream besides the model's own arguments.
FIXED_ON_RESUME = {"seed", "vocab_multiple"}


def resume_config(cfg, ckpt, model_config_cls, path):
    """The configuration a resumed run trains with: the checkpoint's, with the keys the user gave
    applied. A given key that defines the model or centering (the model's arguments) or the data
    stream (seed, vocab_multiple) must equal the saved value: else one ConfigError names them all.
    Returns (config, {key: (saved, new)} for the applied changes)."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    saved = {k: v for k, v in ckpt.get("config", {}).items() if k in fields}
    saved.update({k: v for k, v in ckpt["model_args"].items() if k in fields})
    given = given_keys(cfg)
    given = fields if given is None else set(given) | SESSION_KEYS
    fixed = FIXED_ON_RESUME | {f.name for f in dataclasses.fields(model_config_cls)}
    differs = sorted(k for k in given & set(saved) if saved[k] != getattr(cfg, k))
    conflicts = [f"{k} is {saved[k]!r} in the checkpoint, {getattr(cfg, k)!r} now" for k in differs if k in fixed]
    if conflicts:
        raise ConfigError(f"cannot resume {path} as a different model or data stream: {'; '.join(conflicts)} "
                          f"(drop these overrides, or start a new run in another --out_dir)")
    resumed = dataclasses.replace(cfg, **{k: v for k, v in saved.items() if k not in given})
    if hasattr(resumed, "validate"):
        resumed.validate()
    changes = {k: (saved[k], getattr(cfg, k)) for k in differs if k not in ("init_from", "overwrite", "eval_only")}
    return resumed, changes


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


# ----------------------------------------------------------------------------------------------
# The loop

def train(cfg, model_cls=GPT, model_config_cls=GPTConfig, log=print, on_step=None, announce=None):
    """Train (or resume) as cfg says; returns a summary dict. Raises TrainingError, ConfigError
    and TrainingDiverged for the command line to report. on_step(cfg, iter_num, model, loss, lr),
    if given, is called on every process after each backward pass, with the unscaled, unclipped
    gradients in place (for detailed logging). announce(cfg), if given, is called once (rank 0)
    with the configuration that actually trains (on resume: the checkpoint's, with overrides).
    The run folder has one trainer at a time: its lock (RUN_LOCK) is held for the run's whole life,
    and a second trainer on the folder is refused before it changes anything."""
    owner = FileLock(os.path.join(cfg.out_dir, RUN_LOCK))  # taken once the folder is checked
    existed = os.path.isdir(cfg.out_dir)
    try:
        return _train(cfg, owner, model_cls, model_config_cls, log, on_step, announce)
    finally:
        owner.release()
        if not existed:
            remove_if_unused(cfg.out_dir)  # a start that failed leaves no empty run folder behind


def remove_if_unused(folder):
    """Delete a folder this start made when it holds nothing but the trainer's lock file."""
    try:
        names = os.listdir(folder)
        if set(names) <= {RUN_LOCK}:
            for name in names:
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
    except OSError:
        pass  # gone already, or someone else's files appeared: leave it


def _train(cfg, owner, model_cls, model_config_cls, log, on_step, announce):
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    best_path = os.path.join(cfg.out_dir, "best.pt")
    ckpt, changes = None, {}
    if cfg.overwrite and cfg.init_from == "resume" and not cfg.eval_only:
        raise ConfigError("--overwrite=True would delete the run that --init_from=resume continues: give one of them")
    # evaluation only reads: in a folder that holds a run it evaluates the run's checkpoint
    evaluates_run = cfg.eval_only and (cfg.init_from == "resume" or bool(run_files_in(cfg.out_dir)))
    if evaluates_run and not os.path.exists(ckpt_path):
        raise TrainingError(f"no checkpoint at {ckpt_path} to evaluate (the run stopped before its first one)")
    if cfg.init_from == "resume" or evaluates_run:
        ckpt = load_resumable_checkpoint(ckpt_path, model_cls)
        cfg, changes = resume_config(cfg, ckpt, model_config_cls, ckpt_path)
        cfg = dataclasses.replace(cfg, init_from="resume")  # the model starts from the checkpoint
    replaced = check_out_dir(cfg)  # refuses early; deletes nothing
    rt = setup_runtime(cfg)
    if rt.master and not cfg.eval_only:  # evaluation only reads; under DDP rank 0 holds it for all
        try:
            owner.acquire()
        except LockHeld as e:
            raise TrainingError(f"another trainer is running in {cfg.out_dir} (pid {e.holder}): wait for it to end, "
                                f"or stop it first (two trainers would interleave one run's records)") from None
    say = log if rt.master else (lambda *a, **k: None)
    torch.manual_seed(cfg.seed + rt.rank)  # dropout differs per rank; data sampling does not use it
    data = TokenData(cfg.data_dir or os.path.join(REPO_ROOT, "data", cfg.dataset), cfg.block_size)
    if ckpt is not None and not same_dataset(ckpt.get("dataset_meta", {}), data):
        saved = ckpt.get("dataset_meta", {}).get("fingerprint") or "no fingerprint"
        vocabulary = vocabulary_difference(ckpt.get("dataset_meta", {}), data.meta)
        differ = f"its {', '.join(vocabulary)} differ" if vocabulary else f"now {(data.fingerprint or 'none')[:12]}"
        raise ConfigError(f"{ckpt_path} was trained on another dataset than {data.data_dir} holds "
                          f"(fingerprint {saved[:12]}, {differ}): resume it on "
                          f"its own data (--data_dir=...), or re-prepare that data as it was")
    if announce is not None and rt.master:
        announce(cfg)
    micro_steps = local_micro_steps(cfg.gradient_accumulation_steps, rt.world_size)  # per rank
    tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size
    sampler = BatchSampler(cfg.seed, data.max_offset("train"), cfg.batch_size, cfg.gradient_accumulation_steps)
    if not data.has_test and not cfg.eval_only:
        say(f"note: {data.data_dir} has no test split (test.bin): re-run its prepare.py with --force to "
            f"get one; this run writes no test record")

    iter_num, best_val_loss = 0, float("inf")
    if ckpt is not None:
        model_args = dict(ckpt["model_args"])
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    else:
        padded = -(-data.vocab_size // cfg.vocab_multiple) * cfg.vocab_multiple
        model_args = model_args_from(cfg, model_config_cls, padded)
    check_sizes(cfg, model_args, data, rt)  # before building: a model of 10^8 layers never finishes being made
    try:
        model = model_cls(model_config_cls(**model_args))
    except (TypeError, ValueError) as e:
        raise TrainingError(f"cannot build the model: {e}") from None
    if model.config.vocab_size < data.vocab_size:
        raise TrainingError(f"model vocab_size {model.config.vocab_size} < dataset's {data.vocab_size}")
    if ckpt is not None:
        load_model_state(model, ckpt["model"], ckpt_path)
    model.to(rt.device)

    scaler = torch.amp.GradScaler(rt.device_type, enabled=(rt.ptdtype == torch.float16))
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate,
                                           (cfg.beta1, cfg.beta2), rt.device_type)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng")
        if "sampler" in ckpt and rng is not None:
            sampler.load_state_dict(ckpt["sampler"])
        elif not cfg.eval_only:
            say(f"note: {ckpt_path} carries no batch sampler or random state (a nanoGPT import or a fold): "
                f"batches and dropout start afresh from seed {cfg.seed}, not where its training left off")
        if rng is not None and len(rng) == rt.world_size:
            set_rng_state(rng[rt.rank])
        elif rng is not None:
            say(f"note: checkpoint was written by {len(rng)} processes, now {rt.world_size}: "
                f"dropout randomness restarts from the seed")
        ckpt = None  # free memory

    # a fixed probe batch, the same on every rank: the first evaluation windows of the train split
    probe_offsets = data.eval_offsets("train", cfg.eval_windows)[:cfg.batch_size]
    probe_batch = data.windows("train", probe_offsets)[0].to(rt.device)
    if cfg.init_from == "scratch":
        model.init_from_batch(probe_batch)
    raw_model = model
    if cfg.compile:
        say("compiling the model...")
        model = torch.compile(model)
    if rt.ddp:
        # buffers are kept in sync by the modules that own them (all-reduced), not broadcast from rank 0
        # (torch's deprecation warning for this argument itself says to keep it until it has a successor)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
            model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None,
                        broadcast_buffers=False)

    # every check that can fail has passed (runtime, data, model): only now is the old run deleted
    if cfg.eval_only:
        if cfg.overwrite:
            say("note: --eval_only=True only reads the run: --overwrite=True deletes nothing")
    else:
        clear_out_dir(cfg.out_dir, replaced, rt, say)
    metrics = MetricsLog(cfg.out_dir, rt.master and not cfg.eval_only)  # evaluation alone records nothing
    start_iter = iter_num
    if cfg.init_from == "resume":
        metrics.truncate_after(iter_num)
        doing = "evaluating" if cfg.eval_only else "resuming"
        say(f"{doing} from {ckpt_path} at iteration {iter_num}")
        if changes:
            say(f"{doing} with " + ", ".join(f"{k}={new!r} (was {old!r})" for k, (old, new) in changes.items()))
            metrics.write({"type": "resume", "iter": iter_num, "changed": {k: list(v) for k, v in changes.items()}})
    if cfg.wandb_log and rt.master:
        import wandb
        wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=dataclasses.asdict(cfg))
    say(f"{raw_model.get_num_params() / 1e6:.2f}M parameters; {tokens_per_iter:,} tokens per iteration; "
        f"device {rt.device}, {str(rt.ptdtype).replace('torch.', '')}, {rt.world_size} process(es)")

    def checkpoint_state():
        rng = [rng_state(rt)]
        if rt.ddp:
            rng = [None] * rt.world_size
            dist.all_gather_object(rng, rng_state(rt))
        return {
            "model": raw_model.state_dict(), "model_args": model_args,
            "model_class": model_cls.__name__, "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "iter_num": iter_num, "best_val_loss": best_val_loss,
            "config": dataclasses.asdict(cfg), "sampler": sampler.state_dict(), "rng": rng,
            "dataset_meta": {k: v for k, v in data.meta.items() if k != "token_bytes"},
        }

    def run_eval(final=False):
        nonlocal best_val_loss
        train_loss, _ = evaluate(model, data, "train", cfg.train_eval_windows, cfg.batch_size, rt)
        val_loss, val_bpb = evaluate(model, data, "val", cfg.eval_windows, cfg.batch_size, rt)
        record = {"type": "eval", "iter": iter_num, "train_loss": train_loss, "val_loss": val_loss,
                  "val_bpb": val_bpb, "lr": get_lr(max(iter_num - 1, 0), cfg)}
        if rt.master:  # only rank 0 writes the record: the others need not compute it
            record.update(raw_model.eval_diagnostics(probe_batch))
        say(f"step {iter_num}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, val {val_bpb:.4f} bits/byte")
        metrics.write(record)
        if cfg.wandb_log and rt.master:
            wandb.log({"iter": iter_num, "train/loss": train_loss, "val/loss": val_loss, "val/bpb": val_bpb})
        if cfg.eval_only:
            return val_loss  # evaluation writes no checkpoint
        improved = val_loss < best_val_loss
        if improved:
            best_val_loss = val_loss
        save_latest = cfg.always_save_checkpoint or final or improved  # always something to resume from
        if improved or save_latest:
            state = checkpoint_state()  # collective under DDP: every rank takes part
            if rt.master:
                save_checkpoint(state, *[p for p, due in ((best_path, improved), (ckpt_path, save_latest)) if due])
        return val_loss

    if cfg.eval_only:
        val_loss = run_eval()
        return {"iters": iter_num, "final_val_loss": val_loss, "best_val_loss": best_val_loss}

    step_times, last_eval_iter, last_val_loss = [], None, None
    step_start = time.perf_counter()  # a step's time runs from the end of the previous one: all of
    # an iteration's work (batching, logging) is counted, as nanoGPT counts it
    while iter_num < cfg.max_iters:
        if iter_num % cfg.eval_interval == 0 and not (iter_num == start_iter and cfg.init_from == "resume"):
            last_val_loss, last_eval_iter = run_eval(), iter_num
            step_start = time.perf_counter()  # evaluation is not part of any step's time
        lr = get_lr(iter_num, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        offsets = rank_share(sampler.next_step(), rt.rank, rt.world_size)
        loss_sum = torch.zeros((), device=rt.device)
        for micro in range(micro_steps):
            x, y = data.windows("train", offsets[micro])
            if rt.device_type == "cuda":
                x, y = x.pin_memory().to(rt.device, non_blocking=True), y.pin_memory().to(rt.device, non_blocking=True)
            else:
                x, y = x.to(rt.device), y.to(rt.device)
            last = micro == micro_steps - 1
            with model.no_sync() if rt.ddp and not last else nullcontext():
                with rt.autocast:
                    _, loss = model(x, y)
                loss_sum += loss.detach().float()
                scaler.scale(loss / micro_steps).backward()
        if rt.ddp:
            dist.all_reduce(loss_sum)
        step_loss = loss_sum.item() / (micro_steps * rt.world_size)  # mean over the global batch
        if not math.isfinite(step_loss):
            raise TrainingDiverged(f"loss is {step_loss} at iteration {iter_num}; stopping "
                                   f"(the last good checkpoint, if any, is {ckpt_path})")
        if cfg.grad_clip > 0 or on_step is not None:
            scaler.unscale_(optimizer)
        if on_step is not None:
            on_step(cfg, iter_num, raw_model, step_loss, lr)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        raw_model.after_optimizer_step()
        iter_num += 1
        now = time.perf_counter()
        dt, step_start = now - step_start, now
        step_times.append(dt)

        if iter_num % cfg.log_interval == 0 and rt.master:
            mfu = raw_model.estimate_mfu(cfg.batch_size * cfg.gradient_accumulation_steps, dt, cfg.peak_flops)
            say(f"iter {iter_num}: loss {step_loss:.4f}, lr {lr:.2e}, {dt * 1000:.2f} ms, "
                f"{tokens_per_iter / dt:,.0f} tok/s")
            metrics.write({"type": "train", "iter": iter_num, "loss": step_loss, "lr": lr,
                           "step_ms": dt * 1000, "tokens_per_s": tokens_per_iter / dt, "mfu": mfu})
            if cfg.wandb_log:
                wandb.log({"iter": iter_num, "train/loss": step_loss, "lr": lr})

    if last_eval_iter != iter_num and not (iter_num == start_iter and cfg.init_from == "resume"):
        last_val_loss = run_eval(final=True)
    summary = {"iters": iter_num, "final_val_loss": last_val_loss, "best_val_loss": best_val_loss,
               "step_times": step_times, "tokens_per_iter": tokens_per_iter,
               "peak_memory_mb": peak_memory_mb(rt), "out_dir": cfg.out_dir}
    if data.has_test:
        record = final_test_record(raw_model, data, best_path, cfg.batch_size, rt)
        metrics.write(record)
        say(f"test (best checkpoint, iteration {record['iter']}): loss {record['test_loss']:.4f}, "
            f"{record['test_bpb']:.4f} bits/byte over {record['test_tokens']:,} tokens")
        if cfg.wandb_log and rt.master:
            wandb.log({"test/loss": record["test_loss"], "test/bpb": record["test_bpb"]})
        summary.update(test_loss=record["test_loss"], test_bpb=record["test_bpb"])
    return summary


def main(argv=None, config_cls=TrainConfig, model_cls=GPT, model_config_cls=GPTConfig, announce=None,
         on_step=None):
    """Command line: parse the config, train, and turn errors into one line and an exit status
    (2: bad configuration, 1: other user-fixable problem, 3: the loss diverged)."""

    def run(cfg):
        try:
            summary = train(cfg, model_cls, model_config_cls, on_step=on_step, announce=announce)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        if int(os.environ.get("RANK", 0)) != 0:
            return  # under torchrun, one process reports
        if summary.get("best_val_loss") is not None and math.isfinite(summary["best_val_loss"]):
            test = f", test loss {summary['test_loss']:.4f}" if "test_loss" in summary else ""
            print(f"done: {summary['iters']} iterations, best val loss {summary['best_val_loss']:.4f}{test}")

    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C stops training, also in a run a sweep started in the background (which inherits
    # SIGINT ignored): the sweep stops its runs with SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_command(config_cls, argv, run, f"{os.path.basename(sys.argv[0])} [config.py ...] [--key=value ...]")


if __name__ == "__main__":
    sys.exit(main())
