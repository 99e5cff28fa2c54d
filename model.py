"""
A GPT language model in one file: token + position embeddings, a stack of pre-LayerNorm
transformer blocks (causal self-attention through scaled_dot_product_attention, GELU MLP), a final
LayerNorm and a language-model head tied to the token embedding.

Extension points: every place a subclass may want to transform a representation holds a small
sub-module ("site") that is `nn.Identity()` here. The sites are

    embeddings   (B, T, n_embd)  token + position embedding, before dropout
    q, k, v      (B, T, n_embd)  after the qkv projection, before the split into heads
    attn_out     (B, T, n_embd)  attention output (heads merged), before its projection
    residual     (B, T, n_embd)  residual stream after each block
    mlp          (B, T, 4*n_embd) MLP hidden activation, after the GELU

A subclass overrides `GPT.make_site(name, dim, layer)` to put its own module there; nothing in
`forward` needs to be copied. `nn.Identity` has no parameters and returns its input, so the plain
model is unchanged by the sites.

Generation keeps a key/value cache (KVCache): each new token attends over the stored keys and
values of the tokens before it instead of recomputing them. That is exact only if every site
treats each position on its own; a subclass whose sites mix positions (a mean over the batch)
says so by returning False from `supports_kv_cache()`. Past block_size tokens the window slides,
cached or not, so both give the same tokens; a faster approximation that restarts the cache from
the last half window is an option (see `GPT.generate`).
"""

import inspect
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

SITE_NAMES = ("embeddings", "q", "k", "v", "attn_out", "residual", "mlp")


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms


class LayerNorm(nn.Module):
    """LayerNorm whose bias can be switched off (nn.LayerNorm before torch 2.1 could not)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class KVCache:
    """The keys and values of the tokens a model has seen so far, for generation: per layer a
    buffer (B, n_head, max_len, head_size), filled from the left. GPT.forward(idx, kv_cache=cache)
    treats idx as the tokens that follow the cached ones, and appends their keys and values."""

    def __init__(self, n_layer, max_len):
        self.max_len = max_len
        self.keys, self.values = [None] * n_layer, [None] * n_layer
        self.lengths = [0] * n_layer

    def __len__(self):
        return self.lengths[0]

    def update(self, layer, k, v):
        """Append the new tokens' k, v (B, n_head, T_new, head_size) to a layer's cache; return the
        layer's keys and values so far, each (B, n_head, T_seen + T_new, head_size)."""
        if self.keys[layer] is None:  # allocated once: appending never copies the cache
            B, H, _, D = k.shape
            self.keys[layer] = k.new_empty(B, H, self.max_len, D)
            self.values[layer] = v.new_empty(B, H, self.max_len, D)
        start, end = self.lengths[layer], self.lengths[layer] + k.size(2)
        if end > self.max_len:
            raise ValueError(f"key/value cache is full ({self.max_len} tokens)")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CausalSelfAttention(nn.Module):

    def __init__(self, config, make_site, layer):
        super().__init__()
        if config.n_embd % config.n_head != 0:
            raise ValueError(f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})")
        self.layer = layer
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.q_site = make_site("q", config.n_embd, layer)
        self.k_site = make_site("k", config.n_embd, layer)
        self.v_site = make_site("v", config.n_embd, layer)
        self.attn_out_site = make_site("attn_out", config.n_embd, layer)

    def forward(self, x, kv_cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = self.q_site(q), self.k_site(k), self.v_site(v)  # each (B, T, C)
        # (B, T, C) -> (B, n_head, T, head_size)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        mask, causal = None, True
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)  # (B, n_head, past + T, head_size)
            past = k.size(2) - T
            if past > 0:
                # is_causal aligns the mask to the top left, wrong when q is shorter than k: query
                # i (position past + i) sees keys 0..past + i. A single new token sees them all.
                causal = False
                if T > 1:
                    mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # merge heads
        y = self.attn_out_site(y)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config, make_site, layer):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.hidden_site = make_site("mlp", 4 * config.n_embd, layer)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.hidden_site(self.gelu(self.c_fc(x)))
        return self.dropout(self.c_proj(x))


class Block(nn.Module):

    def __init__(self, config, make_site, layer):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, make_site, layer)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, make_site, layer)
        self.residual_site = make_site("residual", config.n_embd, layer)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return self.residual_site(x)


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError("vocab_size and block_size must be positive")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            embeddings_site=self.make_site("embeddings", config.n_embd, None),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, self.make_site, i) for i in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output projection is the token embedding matrix.
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), one per sub-layer that adds
        # into the residual stream, so its variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def make_site(self, name, dim, layer):
        """Module applied at an extension site (see module docstring). layer is None for embeddings."""
        return nn.Identity()

    def sites(self):
        """(name, layer, module) for every site, in forward order."""
        yield "embeddings", None, self.transformer.embeddings_site
        for i, block in enumerate(self.transformer.h):
            yield "q", i, block.attn.q_site
            yield "k", i, block.attn.k_site
            yield "v", i, block.attn.v_site
            yield "attn_out", i, block.attn.attn_out_site
            yield "mlp", i, block.mlp.hidden_site
            yield "residual", i, block.residual_site

    # Hooks the training loop calls; the plain GPT needs none of them.
    def init_from_batch(self, idx):
        """Data-dependent initialisation, called once before the first step of a fresh run with
        the same batch on every process."""

    def after_optimizer_step(self):
        """Called after every optimizer step (on every process, in step)."""

    def eval_diagnostics(self, idx):
        """Figures to log at each evaluation, computed on the batch idx (B, T): the anisotropy
        diagnostics of diagnostics.py at every site (one evaluation-mode probe pass)."""
        import diagnostics  # on use: building and running a model needs only torch
        return diagnostics.eval_diagnostics(self, idx)

    def get_num_params(self, non_embedding=True):
        """Parameter count. The position embedding is left out by default; the token embedding is
        counted because it is also the (tied) output layer."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, all_logits=False, kv_cache=None):
        """idx: (B, T) token ids. With targets (B, T), returns logits (B, T, vocab) and the mean
        cross-entropy (targets of -1 are ignored). Without, returns the logits of the last position
        only, (B, 1, vocab), unless all_logits=True. With a KVCache, idx continues the tokens the
        cache holds (its positions start after them), and their keys and values are added to it."""
        B, T = idx.size()
        past = 0 if kv_cache is None else len(kv_cache)
        if past + T > self.config.block_size:
            seen = f" after {past} cached tokens" if past else ""
            raise ValueError(f"sequence of length {T}{seen} exceeds block_size {self.config.block_size}")
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        x = self.transformer.drop(self.transformer.embeddings_site(x))
        for block in self.transformer.h:
            x = block(x, kv_cache)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
            return logits, loss
        if not all_logits:
            x = x[:, [-1], :]  # only the last position is needed to sample the next token
        return self.lm_head(x), None

    def crop_block_size(self, block_size):
        """Shrink the context window (e.g. to fine-tune a model at a smaller block size)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"block_size must be in 1..{self.config.block_size}, got {block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW with weight decay on matrices and embeddings (2-D and up) only: biases, LayerNorm
        gains and any 1-D parameter a subclass adds are not decayed."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops=312e12):
        """Model FLOPs utilisation: achieved FLOP/s over peak_flops (default: A100 bf16 dense).
        FLOPs per token follow the PaLM paper's estimate, 6N + 12 L H Q T."""
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        flops_per_token = 6 * self.get_num_params() + 12 * L * H * Q * T
        flops_per_iter = flops_per_token * T * fwdbwd_per_iter
        return flops_per_iter / dt / peak_flops

    def supports_kv_cache(self):
        """Whether generation may use a KVCache: true when the output at a position depends on
        that position and earlier ones only, token by token (a subclass whose sites take a mean
        over the batch returns False)."""
        return True

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, use_cache=True,
                 window="slide"):
        """Extend idx (B, T) by max_new_tokens sampled tokens (top_k=1: greedy). Call model.eval() first.

        The model takes at most block_size tokens: once the sequence is longer, each step sees its
        last block_size tokens (nanoGPT's sliding window). With use_cache (the default, where
        supports_kv_cache() allows it; otherwise a note is printed once and the cache is off), the
        prompt is run once and every later step runs only the newest token against the cached
        keys and values, as long as the sequence fits in the window. Past it the cache cannot
        slide: position embeddings are absolute, so dropping the oldest token moves every other
        one to a new position and changes every cached key and value. window says what happens:
          - "slide" (the default): every step runs the whole window, as without the cache. The
            tokens are the uncached path's (the same logits up to float rounding), and past the
            window the speed is the uncached path's too;
          - "restart": when the cache is full it is rebuilt from the last block_size // 2 tokens
            (one prefill of half a window, at positions 0 onwards), and single-token steps go on
            until it is full again. Faster, but each token is conditioned on between
            block_size // 2 and block_size previous tokens instead of block_size, so long
            continuations, greedy ones included, differ from the sliding window after the first
            window edge.
        A prompt longer than block_size is cropped to its last block_size tokens on every path."""
        if window not in ("slide", "restart"):
            raise ValueError(f"window must be 'slide' or 'restart', got {window!r}")
        if use_cache and not self.supports_kv_cache():
            if not getattr(self, "_kv_cache_note_shown", False):
                print(f"note: {type(self).__name__} in this mode mixes positions (e.g. centering with batch "
                      f"statistics), so a key/value cache would change its outputs: generating without it",
                      file=sys.stderr)
                self._kv_cache_note_shown = True
            use_cache = False
        block_size, cache = self.config.block_size, None
        for _ in range(max_new_tokens):
            sliding = window == "slide" and idx.size(1) > block_size  # every position moves: nothing to reuse
            if not use_cache or sliding:
                logits, _ = self(idx[:, -block_size:])
            elif cache is None or len(cache) == block_size:  # the prompt, or (restart) the window is full
                keep = block_size if cache is None else max(1, block_size // 2)
                cache = KVCache(self.config.n_layer, block_size)
                logits, _ = self(idx[:, -keep:], kv_cache=cache)
            else:
                logits, _ = self(idx[:, -1:], kv_cache=cache)
            logits = logits[:, -1, :] / max(temperature, 1e-8)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
