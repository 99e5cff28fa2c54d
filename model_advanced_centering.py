"""
A GPT whose representations can be centered: a mean vector mu is subtracted, x -> x - mu, at any
of the extension sites of model.GPT.

Placements (AdvancedGPTConfig flag -> site, shape of x):
    center_embeddings  token + position embedding          (B, T, n_embd)
    center_qk          queries and keys, before the heads split  (B, T, n_embd) each
    center_v           values, before the heads split       (B, T, n_embd)
    center_attn_out    attention output, before its projection (B, T, n_embd)
    center_residual    residual stream after every block    (B, T, n_embd)
    center_mlp         MLP hidden activation after the GELU (B, T, 4 * n_embd)
For q, k and v the center is one vector of size n_embd: the per-head centers side by side.

Modes (centering_mode) say what mu is. "Batch mean" is the mean of x over every dimension but
the last (batch and positions) in the current forward call.
    simple            mu = batch mean, in training and in evaluation.
    adaptive          BatchNorm without the variance: training uses the batch mean (gradients
                      flow through it) and updates a running mean; evaluation uses the running mean.
    learnable_center  mu is a parameter (not weight-decayed), set to the batch mean of a fixed
                      probe batch before the first step so training starts centered, then learned.
    momentum          mu is the running mean, in training and in evaluation; it is updated after
                      the optimizer step, so a step never sees statistics of its own batch.
Running mean: an exponential moving average of batch means, updated once per optimizer step with
the mean of that step's micro-batch means over all processes (all-reduced under DDP, so every
rank holds the same value and the number of processes does not matter):
    ema <- (1 - m) * ema + m * step_mean,   m = centering_momentum
and read with Adam's bias correction, ema / (1 - (1 - m)^n) after n updates (zero before any).

Causality. With learnable_center, momentum, and adaptive in evaluation, mu is a constant vector,
so the prediction at position t depends on tokens <= t only. simple (always) and adaptive in
training take mu from the whole batch: position t then sees later tokens of its own sequence and
the other sequences of the batch, a leak the validation loss of such a model can exploit.

Generation and folding. Where mu is a fixed vector (learnable_center, momentum, adaptive in
evaluation) every position is centered on its own, so a key/value cache is exact, and the
centering can be folded into the biases of a plain GPT (fold_centering). simple has no fixed
vector: generation runs without the cache, and folding refuses it.

Keys: q . (k - mu) = q . k - q . mu, and the last term is the same for every key a query
attends to, so softmax cancels it: centering the keys alone changes nothing in the forward pass
when mu is shared by all keys (it is, in every mode). center_qk acts through the queries.
"""

import dataclasses
import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

import diagnostics
from model import GPT, GPTConfig

CENTERING_MODES = ("simple", "adaptive", "learnable_center", "momentum")
PLACEMENTS = {  # config flag -> the model.GPT sites it centers
    "center_embeddings": ("embeddings",),
    "center_qk": ("q", "k"),
    "center_v": ("v",),
    "center_attn_out": ("attn_out",),
    "center_residual": ("residual",),
    "center_mlp": ("mlp",),
}
BATCH_STATISTICS_MODES = ("simple", "adaptive")  # modes whose training forward mixes the batch


@dataclass
class CenteringOptions:
    """Where and how to center; shared by the model config and the training config."""
    center_embeddings: bool = False  # center the token + position embedding
    center_qk: bool = False  # center the queries and keys (acts through the queries)
    center_v: bool = False  # center the values
    center_attn_out: bool = False  # center the attention output, before its projection
    center_residual: bool = False  # center the residual stream after every block
    center_mlp: bool = False  # center the MLP hidden activation after the GELU
    centering_mode: str = "adaptive"  # simple, adaptive, learnable_center or momentum (model_advanced_centering.py)
    centering_momentum: float = 0.1  # m in (0, 1] of the running mean: ema <- (1 - m) * ema + m * step mean

    def centered_sites(self):
        return {site for flag, sites in PLACEMENTS.items() if getattr(self, flag) for site in sites}

    def centering_errors(self):
        """What is wrong with the options, as a one-line message, or None."""
        if self.centering_mode not in CENTERING_MODES:
            return f"unknown centering_mode '{self.centering_mode}'; valid modes: {', '.join(CENTERING_MODES)}"
        if not 0.0 < self.centering_momentum <= 1.0:
            return f"centering_momentum must be in (0, 1], got {self.centering_momentum}"
        return None


@dataclass
class AdvancedGPTConfig(CenteringOptions, GPTConfig):
    def __post_init__(self):
        error = self.centering_errors()
        if error:
            raise ValueError(error)


class VectorCentering(nn.Module):
    """x (..., dim) -> x - mu, with mu as the mode says (see the module docstring)."""

    def __init__(self, dim, mode="adaptive", momentum=0.1):
        super().__init__()
        if mode not in CENTERING_MODES:
            raise ValueError(f"centering mode must be one of {', '.join(CENTERING_MODES)}; got '{mode}'")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"centering momentum must be in (0, 1], got {momentum}")
        self.dim, self.mode, self.momentum = dim, mode, momentum
        if mode == "learnable_center":
            self.center = nn.Parameter(torch.zeros(dim))
        if mode in ("adaptive", "momentum"):
            self.register_buffer("running_mean", torch.zeros(dim))
            self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
            # batch means of the current optimizer step, summed until after_optimizer_step
            self.register_buffer("step_sum", torch.zeros(dim))
            self.register_buffer("step_count", torch.zeros(()))

    def extra_repr(self):
        return f"dim={self.dim}, mode={self.mode}, momentum={self.momentum}"

    @staticmethod
    def batch_mean(x):
        return x.float().mean(dim=tuple(range(x.dim() - 1)))

    def running_center(self):
        """The bias-corrected running mean (zeros before the first update)."""
        correction = 1.0 - (1.0 - self.momentum) ** self.num_updates.clamp(min=1).float()
        return torch.where(self.num_updates > 0, self.running_mean / correction, 0.0)

    def center_for(self, x):
        if self.mode == "learnable_center":
            return self.center
        if self.mode == "simple":
            return self.batch_mean(x)
        if not self.training:
            return self.running_center()
        batch_mean = self.batch_mean(x if self.mode == "adaptive" else x.detach())
        with torch.no_grad():  # collected for the running mean, folded in after the step
            self.step_sum += batch_mean.detach()
            self.step_count += 1
        return batch_mean if self.mode == "adaptive" else self.running_center()

    def forward(self, x):
        return x - self.center_for(x).to(x.dtype)

    def is_per_token(self):
        """Whether mu is a fixed vector here, not taken from the batch: then each position is
        centered on its own, and a key/value cache is exact."""
        return self.mode in ("learnable_center", "momentum") or (self.mode == "adaptive" and not self.training)

    def fixed_center(self):
        """The vector evaluation subtracts (dim,); simple mode has none."""
        if self.mode == "simple":
            raise ValueError("centering_mode 'simple' subtracts the mean of each batch, not a fixed vector")
        return self.center.detach() if self.mode == "learnable_center" else self.running_center()

    @torch.no_grad()
    def apply_step_statistics(self, step_sum, step_count):
        """Fold one optimizer step's (all-reduced) batch means into the running mean."""
        if step_count > 0:
            self.running_mean.mul_(1.0 - self.momentum).add_(step_sum / step_count, alpha=self.momentum)
            self.num_updates += 1
        self.step_sum.zero_()
        self.step_count.zero_()


class AdvancedGPT(GPT):
    """model.GPT with VectorCentering modules at the sites its config selects."""

    def make_site(self, name, dim, layer):
        if name in self.config.centered_sites():
            return VectorCentering(dim, self.config.centering_mode, self.config.centering_momentum)
        return nn.Identity()

    def centerings(self):
        """(name, layer, module) for every VectorCentering, in forward order."""
        return [(n, i, m) for n, i, m in self.sites() if isinstance(m, VectorCentering)]

    def supports_kv_cache(self):
        """Only while every center is a fixed vector: never in simple mode, adaptive in evaluation."""
        return all(m.is_per_token() for _, _, m in self.centerings())

    @torch.no_grad()
    def probe(self, idx, hook):
        """One evaluation-mode forward pass on idx with hook(name, module, args) called before
        every VectorCentering; the hooks are removed and the train/eval state restored after."""
        handles = [m.register_forward_pre_hook(functools.partial(hook, name))
                   for name, _, m in self.centerings()]
        was_training = self.training
        self.eval()
        try:
            self(idx)
        finally:
            for h in handles:
                h.remove()
            self.train(was_training)

    def init_from_batch(self, idx):
        """learnable_center: set each center to the batch mean it sees on idx, in forward order,
        so that every site starts centered given the (already centered) sites before it."""

        def set_center(name, module, args):
            if module.mode == "learnable_center":
                module.center.copy_(module.batch_mean(args[0]))

        if self.config.centering_mode == "learnable_center":
            self.probe(idx, set_center)

    @torch.no_grad()
    def after_optimizer_step(self):
        running = [m for _, _, m in self.centerings() if m.mode in ("adaptive", "momentum")]
        if not running:
            return
        # one all-reduce for every module's step statistics together
        flat = torch.cat([torch.cat([m.step_sum, m.step_count.view(1)]) for m in running])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flat)
        offset = 0
        for m in running:
            m.apply_step_statistics(flat[offset:offset + m.dim], flat[offset + m.dim])
            offset += m.dim + 1

    def eval_diagnostics(self, idx):
        """The diagnostics of every site (diagnostics.py; before and after centering at the centered
        ones) and, per placement averaged over its layers, the norm of the center in use
        ("center_norm/<site>") and the mean pairwise cosine before centering ("cosine/<site>")."""
        recorder = diagnostics.probe(self, idx)
        out = diagnostics.site_diagnostics(recorder, self.config.n_head)
        representations = recorder.representations()
        norms, cosines = {}, {}
        for name, layer, module in self.centerings():
            before, after, _ = representations[(name, layer or 0)]
            # after = before - mu at every token, so mu is their mean difference
            norms.setdefault(name, []).append((before - after).reshape(-1, module.dim).float().mean(0).norm())
            cosines.setdefault(name, []).append(out[diagnostics.diag_key(name, layer or 0, "cosine_before")])
        for name in norms:
            out[f"center_norm/{name}"] = torch.stack(norms[name]).mean().item()
            out[f"cosine/{name}"] = sum(cosines[name]) / len(cosines[name])
        return out


@torch.no_grad()
def fold_centering(model):
    """A plain GPT (bias=True) whose outputs equal model's in evaluation mode: each fixed center
    mu is moved into the bias of the layer that makes or takes the centered vector.
        embeddings   wpe -= mu                  (every position gets the same shift)
        q, k, v      c_attn.bias -= [mu_q, mu_k, mu_v]
        attn_out     attn.c_proj.bias -= W mu   (W (y - mu) + b = W y + (b - W mu))
        mlp          mlp.c_proj.bias -= W mu
        residual     mlp.c_proj.bias -= mu      (the block's last addition to the stream)
    Biases the centered model lacks (bias=False) start at zero. Raises ValueError for simple
    mode, whose center is a batch mean."""
    cfg = model.config
    if cfg.centering_mode == "simple" and model.centerings():
        raise ValueError("centering_mode 'simple' centers with the mean of each batch: there is no fixed "
                         "vector to fold (only learnable_center, momentum and adaptive can be folded)")
    device = model.transformer.wte.weight.device
    base_args = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(GPTConfig)}
    folded = GPT(GPTConfig(**{**base_args, "bias": True})).to(device)
    source = model.state_dict()
    for name, tensor in folded.state_dict().items():  # these share storage with folded's weights
        if name in source:
            tensor.copy_(source[name])
        else:
            tensor.zero_()  # a bias the centered model does not have

    def center(site, dim):
        if isinstance(site, VectorCentering):
            return site.fixed_center().float()
        return torch.zeros(dim, device=device)

    C = cfg.n_embd
    folded.transformer.wpe.weight -= center(model.transformer.embeddings_site, C)
    for block, out in zip(model.transformer.h, folded.transformer.h):
        attn, mlp = block.attn, block.mlp
        out.attn.c_attn.bias -= torch.cat([center(attn.q_site, C), center(attn.k_site, C), center(attn.v_site, C)])
        out.attn.c_proj.bias -= out.attn.c_proj.weight @ center(attn.attn_out_site, C)
        out.mlp.c_proj.bias -= out.mlp.c_proj.weight @ center(mlp.hidden_site, 4 * C)
        out.mlp.c_proj.bias -= center(block.residual_site, C)
    return folded.train(model.training)


def describe_centering(cfg):
    """One line saying which centering is in force."""
    on = [flag[len("center_"):] for flag in PLACEMENTS if getattr(cfg, flag)]
    if not on:
        return "centering: none (baseline)"
    return (f"centering: {', '.join(on)}; mode {cfg.centering_mode}"
            + (f", momentum {cfg.centering_momentum}" if cfg.centering_mode in ("adaptive", "momentum") else ""))


def leak_warning(cfg):
    """The warning to print when a run's centering uses batch statistics, else None."""
    if not any(getattr(cfg, flag) for flag in PLACEMENTS) or cfg.centering_mode not in BATCH_STATISTICS_MODES:
        return None
    when = "in training and evaluation" if cfg.centering_mode == "simple" else "in training"
    return (f"warning: centering_mode '{cfg.centering_mode}' centers with batch statistics {when}: "
            f"position t sees later tokens and other sequences through the batch mean (not causal)")
