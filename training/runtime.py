"""Runtime: the processes (one, or torchrun's DDP), the device, the precision, memory and random state."""

import math
import os
import resource
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import ConfigError
from cpu_runtime import retain_freed_memory
from training.batches import check_step_sharing

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        index = requested.partition(":")[2]
        if requested.startswith("cuda:") and not (index.isdigit() and int(index) < torch.cuda.device_count()):
            raise ConfigError(f"device '{requested}': this machine has cuda:0 to cuda:{torch.cuda.device_count() - 1}")
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


def peak_memory_mb(rt):
    if rt.device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rng_state(rt):
    state = {"cpu": torch.get_rng_state()}
    if rt.device_type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def wrap_model(model, compile_model, rt):
    """The model as the loop calls it: torch.compile'd when asked, inside DDP under torchrun."""
    if compile_model:
        # static shapes: else the evaluation's shorter last batch at iteration 0 makes the training graph
        # dynamic in a fresh run, and a resumed run (no evaluation first) compiles another, static one
        model = torch.compile(model, dynamic=False)
    if rt.ddp:
        # buffers are kept in sync by the modules that own them (all-reduced), not broadcast from rank 0
        # (torch's deprecation warning for this argument itself says to keep it until it has a successor)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
            model = DDP(model, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None, broadcast_buffers=False)
    return model
