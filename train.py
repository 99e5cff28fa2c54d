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

The plumbing is one import away, a room a module: training/runtime.py (processes, device,
precision), training/batches.py (token data, the batch stream), training/checkpoint.py (the
checkpoint format), training/run_folder.py (a run's folder, resuming), training/metrics.py
(metrics.jsonl's records).
"""

import dataclasses
import importlib.util
import math
import os
import re
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from configurator import ConfigError, run_command
from files import FileLock
from model import GPT, GPTConfig
from training import TrainingDiverged, TrainingError
from training.batches import BatchSampler, TokenData, dataset_dir, local_micro_steps, rank_share
from training.checkpoint import (check_same_dataset, load_checkpoint, load_model_state, make_checkpoint,
                                 model_args_from, restore_training_state, save_checkpoint)
from training.metrics import MetricsLog
from training.run_folder import (RUN_LOCK, check_out_dir, clear_out_dir, open_run, remove_if_unused,
                                 take_run_lock)
from training.runtime import (DTYPES, check_sizes, peak_memory_mb, pick_device, resolve_dtype, rng_state,
                              setup_runtime, wrap_model)


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
        check_positive(self, "eval_interval", "log_interval", "eval_windows", "train_eval_windows", "batch_size",
                       "gradient_accumulation_steps", "block_size", "vocab_multiple")
        check_model_shape(self)
        if self.n_embd < 2:  # (its anisotropy diagnostics measure across dimensions)
            raise ConfigError(f"n_embd must be at least 2, got {self.n_embd}")
        if min(self.batch_size, self.eval_windows) * self.block_size < 2:  # the diagnostics' probe batch
            raise ConfigError("min(batch_size, eval_windows) x block_size must be at least 2 tokens")
        if self.max_iters < 0 or self.warmup_iters < 0 or self.lr_decay_iters < 0:
            raise ConfigError("max_iters, warmup_iters and lr_decay_iters must not be negative")
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


def check_positive(cfg, *keys):
    for key in keys:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(cfg, key)}")


def check_model_shape(cfg):
    """Layers, heads and width of a config (a trainer's or a benchmark's) that make a GPT."""
    check_positive(cfg, "n_layer", "n_head", "n_embd")
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")


def check_seed(seed):
    """A seed every rank can add its rank to and torch still takes (its generators take [0, 2**64))."""
    if not 0 <= seed < 2**62:
        raise ConfigError(f"seed must be in [0, 2**62), got {seed}")


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
    check_seed(cfg.seed)
    if cfg.peak_flops <= 0:
        raise ConfigError(f"peak_flops must be positive, got {cfg.peak_flops}")
    if not cfg.out_dir.strip():
        raise ConfigError("out_dir must not be empty: give --out_dir=FOLDER")
    if cfg.wandb_log and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb_log=True needs the wandb package: pip install wandb (or --wandb_log=False)")


def preflight(cfg, device=True):
    """What would stop a run at its start, checked without building anything (a sweep does this
    for every planned run before the first starts): the device is there (device=False: it is
    another machine's, a Slurm job's), the dtype runs on it, the dataset is prepared and each
    split holds a block."""
    if device:
        resolve_dtype(cfg.dtype, pick_device(cfg.device).split(":")[0])
    TokenData(dataset_dir(cfg), cfg.block_size)


# ----------------------------------------------------------------------------------------------
# Schedule and evaluation

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


def build_model(cfg, ckpt, data, model_cls, model_config_cls, rt):
    """The model a run trains, on rt.device: a new run's from the config; a resumed run's from its
    checkpoint (its arguments and weights, and only on the dataset it was trained on)."""
    if ckpt is not None:
        check_same_dataset(ckpt, data, os.path.join(cfg.out_dir, "ckpt.pt"))
        model_args = dict(ckpt["model_args"])
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
        load_model_state(model, ckpt["model"], os.path.join(cfg.out_dir, "ckpt.pt"))
    return model.to(rt.device), model_args


def _train(cfg, owner, model_cls, model_config_cls, log, on_step, announce):
    ckpt_path, best_path = os.path.join(cfg.out_dir, "ckpt.pt"), os.path.join(cfg.out_dir, "best.pt")
    cfg, ckpt, changes = open_run(cfg, model_config_cls, model_cls)  # resume place 1: what continues
    replaced = check_out_dir(cfg)  # refuses early; deletes nothing
    rt = setup_runtime(cfg)
    if rt.master and not cfg.eval_only:  # evaluation only reads; under DDP rank 0 holds it for all
        take_run_lock(owner, cfg.out_dir)
    say = log if rt.master else (lambda *a, **k: None)
    torch.manual_seed(cfg.seed + rt.rank)  # dropout differs per rank; data sampling does not use it
    data = TokenData(dataset_dir(cfg), cfg.block_size)
    micro_steps = local_micro_steps(cfg.gradient_accumulation_steps, rt.world_size)  # per rank
    tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size
    sampler = BatchSampler(cfg.seed, data.max_offset("train"), cfg.batch_size, cfg.gradient_accumulation_steps)
    if not data.has_test and not cfg.eval_only:
        say(f"note: {data.data_dir} has no test split (test.bin): re-run its prepare.py with --force to "
            f"get one; this run writes no test record")

    model, model_args = build_model(cfg, ckpt, data, model_cls, model_config_cls, rt)  # resume place 2: the model
    if announce is not None and rt.master:  # after every check of the model and data: a refusal stays one line
        announce(cfg)
    scaler = torch.amp.GradScaler(rt.device_type, enabled=(rt.ptdtype == torch.float16))
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), rt.device_type)
    iter_num, best_val_loss, last_eval_iter = 0, float("inf"), None
    if ckpt is not None:  # resume place 2: and the training state (the checkpoint holds this iteration's eval)
        iter_num, best_val_loss, last_eval_iter = ckpt["iter_num"], ckpt["best_val_loss"], ckpt["iter_num"]
        restore_training_state(ckpt, ckpt_path, cfg, optimizer, scaler, sampler, rt, say)
        ckpt = None  # free memory
    # a fixed probe batch, the same on every rank: the first evaluation windows of the train split
    probe_batch = data.windows("train", data.eval_offsets("train", cfg.eval_windows)[:cfg.batch_size])[0].to(rt.device)
    if cfg.init_from == "scratch":
        model.init_from_batch(probe_batch)
    raw_model = model
    if cfg.compile:
        say("compiling the model...")
    model = wrap_model(model, cfg.compile, rt)  # what the loop calls; raw_model is what it saves

    # every check that can fail has passed (runtime, data, model): only now is the old run deleted
    if cfg.eval_only and cfg.overwrite:
        say("note: --eval_only=True only reads the run: --overwrite=True deletes nothing")
    elif not cfg.eval_only:
        clear_out_dir(cfg.out_dir, replaced, rt, say)
    metrics = MetricsLog(cfg.out_dir, rt.master and not cfg.eval_only)  # evaluation alone records nothing
    if cfg.init_from == "resume":  # resume place 3: the records past the checkpoint go, the changes are said
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
        best_val_loss = min(best_val_loss, val_loss)
        save_latest = cfg.always_save_checkpoint or final or improved  # always something to resume from
        if improved or save_latest:
            rng = [rng_state(rt)] * rt.world_size
            if rt.ddp:  # collective: every rank takes part
                dist.all_gather_object(rng, rng_state(rt))
            state = make_checkpoint(raw_model, model_args, optimizer, iter_num, best_val_loss, dataclasses.asdict(cfg),
                                    data.meta, scaler=scaler.state_dict(), sampler=sampler.state_dict(), rng=rng)
            if rt.master:
                save_checkpoint(state, *[p for p, due in ((best_path, improved), (ckpt_path, save_latest)) if due])
        return val_loss

    if cfg.eval_only:
        return {"iters": iter_num, "final_val_loss": run_eval(), "best_val_loss": best_val_loss}

    step_times, last_val_loss = [], None
    step_start = time.perf_counter()  # a step's time runs from the end of the previous one: all of
    # an iteration's work (batching, logging) is counted, as nanoGPT counts it
    while iter_num < cfg.max_iters:
        if iter_num % cfg.eval_interval == 0 and iter_num != last_eval_iter:
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
            # said in the run's own records too: under torchrun every rank's exit 3 comes back as 1
            metrics.write({"type": "diverged", "iter": iter_num, "loss": str(step_loss)})
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
            mfu = raw_model.estimate_mfu(cfg.batch_size * micro_steps, dt, cfg.peak_flops)  # this rank's share
            say(f"iter {iter_num}: loss {step_loss:.4f}, lr {lr:.2e}, {dt * 1000:.2f} ms, "
                f"{tokens_per_iter / dt:,.0f} tok/s")
            metrics.write({"type": "train", "iter": iter_num, "loss": step_loss, "lr": lr,
                           "step_ms": dt * 1000, "tokens_per_s": tokens_per_iter / dt, "mfu": mfu})
            if cfg.wandb_log:
                wandb.log({"iter": iter_num, "train/loss": step_loss, "lr": lr})

    if last_eval_iter != iter_num:
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
