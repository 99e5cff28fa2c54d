"""
Generation speed (tokens/s, batch 1, greedy, one-token prompt) with and without the key/value
cache, and of a folded centered model against the baseline:

    OMP_NUM_THREADS=1 python scripts/benchmark_sampling.py [--checkpoint=out/run/ckpt.pt] [--key=value ...]

The model is a random-init GPT of config/train_shakespeare_char.py's shape (6 layers, 384 wide,
block_size 256) unless a checkpoint is given. Three measurements, each path taking its turn
repeats times (the order rotated), medians reported:
  1. max_new_tokens (default 500): uncached; cached with window=slide (the default: past
     block_size every step runs the whole window, as uncached, so the tokens are the same); and
     cached with window=restart (a full cache is rebuilt from the last block_size // 2 tokens and
     single-token steps go on: faster, other tokens). Each line says how many leading greedy
     tokens agree with the uncached path.
  2. block_size - 1 new tokens, all inside the window, where every path is the same model: the
     gain of the cache itself.
  3. cached generation of the same length with the baseline, with a centered model (embeddings,
     q/k and v centered, momentum mode, warmed up), and with that model folded into a plain GPT
     (fold_centering): the folded model should run at the baseline's speed (and at that of a
     baseline with biases, as the folded model has them).
"""

import statistics
import sys
import time
from dataclasses import dataclass

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)

import torch  # noqa: E402

from machine import machine_description  # noqa: E402
from configurator import ConfigError, run_command  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from model_advanced_centering import AdvancedGPT, AdvancedGPTConfig, fold_centering  # noqa: E402
from train import check_model_shape, check_positive, check_seed  # noqa: E402
from training.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402


@dataclass
class BenchConfig:
    checkpoint: str = ""  # a checkpoint file to time instead of a random-init model
    max_new_tokens: int = 500  # tokens generated per timed run
    block_size: int = 256  # context of the random-init model (past it, the window slides)
    n_layer: int = 6  # the random-init model's shape: nanoGPT's Shakespeare GPU model by default
    n_head: int = 6  # attention heads (n_embd must divide by it)
    n_embd: int = 384  # embedding width
    vocab_size: int = 65  # token rows (65: Shakespeare's characters)
    bias: bool = False  # biases in the linear layers and layer norms
    repeats: int = 3  # timed runs per path or model, taken in turns
    seed: int = 1337  # of the random-init weights and of the sampling

    def validate(self):
        if min(self.max_new_tokens, self.block_size, self.repeats) <= 1:
            raise ConfigError("max_new_tokens, block_size and repeats must be at least 2")
        check_model_shape(self)
        check_positive(self, "vocab_size")
        check_seed(self.seed)


def timed_generate(model, new_tokens, use_cache, window="slide"):
    """(tokens/s, generated ids) for greedy generation from a one-token prompt."""
    prompt = torch.zeros((1, 1), dtype=torch.long)
    t0 = time.perf_counter()
    out = model.generate(prompt, new_tokens, top_k=1, use_cache=use_cache, window=window)
    return new_tokens / (time.perf_counter() - t0), out


PATHS = {"uncached": (False, "slide"), "cached, window=slide (default)": (True, "slide"),
         "cached, window=restart": (True, "restart")}


def cache_speedup(model, new_tokens, label, repeats):
    """Each path of PATHS repeats times, in turns (the order rotated each round)."""
    model.generate(torch.zeros((1, 1), dtype=torch.long), 5)  # warm-up (allocator, kernels)
    names, speeds, outputs = list(PATHS), {name: [] for name in PATHS}, {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            speed, outputs[name] = timed_generate(model, new_tokens, *PATHS[name])
            speeds[name].append(speed)
    slow = statistics.median(speeds["uncached"])
    print(f"{label}, median of {repeats} runs taken in turns:")
    for name in names:
        differ = (outputs[name][0, 1:] != outputs["uncached"][0, 1:]).nonzero()  # new tokens only
        same = new_tokens if len(differ) == 0 else differ[0].item()
        agree = "all" if same == new_tokens else f"the first {same}"
        fast = statistics.median(speeds[name])
        print(f"  {name:<32} {fast:8,.1f} tok/s  {fast / slow:5.1f}x uncached  (greedy tokens as uncached: "
              f"{agree} of {new_tokens})")


def centered_and_folded(shape, seed):
    """A centered model with its running means filled from random batches, and its fold."""
    torch.manual_seed(seed)
    model = AdvancedGPT(AdvancedGPTConfig(**shape, center_embeddings=True, center_qk=True, center_v=True,
                                          centering_mode="momentum"))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randint(0, shape["vocab_size"], (4, shape["block_size"])))
            model.after_optimizer_step()
    return model.eval(), fold_centering(model).eval()


def main(argv):
    return run_command(BenchConfig, argv, benchmark, "benchmark_sampling.py [--key=value ...]")


def benchmark(cfg):
    if cfg.checkpoint:
        ckpt = load_checkpoint(cfg.checkpoint)
        model = model_from_checkpoint(ckpt, cfg.checkpoint).eval()
        source = cfg.checkpoint
    else:
        torch.manual_seed(cfg.seed)
        model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0, bias=cfg.bias)).eval()
        source = "random init"
    mc = model.config
    print(f"machine: {machine_description()}")
    print(f"model: {type(model).__name__} ({source}), {mc.n_layer} layers, {mc.n_embd} wide, {mc.n_head} heads, "
          f"block_size {mc.block_size}, vocab {mc.vocab_size}, {model.get_num_params() / 1e6:.2f}M parameters; "
          f"batch 1, greedy, one-token prompt")
    print(f"window edge: uncached and window=slide run the last {mc.block_size} tokens at every step; "
          f"window=restart rebuilds a full cache from the last {mc.block_size // 2} tokens")
    cache_speedup(model, cfg.max_new_tokens, f"{cfg.max_new_tokens} new tokens", cfg.repeats)
    window = mc.block_size - 1
    cache_speedup(model, window, f"{window} new tokens (inside the window)", cfg.repeats)

    shape = dict(block_size=mc.block_size, vocab_size=mc.vocab_size, n_layer=mc.n_layer, n_head=mc.n_head,
                 n_embd=mc.n_embd, dropout=0.0, bias=mc.bias)
    baseline = GPT(GPTConfig(**shape)).eval() if cfg.checkpoint else model
    centered, folded = centered_and_folded(shape, cfg.seed)
    models = {"baseline": baseline, "folded centered": folded, "centered (not folded)": centered}
    if not mc.bias:  # the folded model has biases: time a baseline with them too
        models["baseline, bias=True"] = GPT(GPTConfig(**{**shape, "bias": True})).eval()
    speeds = {name: [] for name in models}
    for m in models.values():
        m.generate(torch.zeros((1, 1), dtype=torch.long), 5)
    for _ in range(cfg.repeats):  # in turns, so drifts of a shared machine fall on all alike
        for name, m in models.items():
            speeds[name].append(timed_generate(m, window, use_cache=True)[0])
    base = statistics.median(speeds["baseline"])
    print(f"cached, {window} new tokens, median of {cfg.repeats} runs taken in turns:")
    for name, runs in speeds.items():
        print(f"  {name:<22} {statistics.median(runs):8,.1f} tok/s  {statistics.median(runs) / base:.2f}x baseline")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
