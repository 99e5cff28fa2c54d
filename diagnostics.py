"""
Anisotropy diagnostics of a GPT's representations, per extension site (model.py) and layer,
before and after the site's module (for a centered site: before and after centering), and the
attention each layer pays to the first position. GPT.eval_diagnostics logs them at every
evaluation as flat keys of the eval records in metrics.jsonl:

    diag/<site>/<layer>/<metric>_before   what enters the site (embeddings: layer 0)
    diag/<site>/<layer>/<metric>_after    what leaves it (equal to _before where the site is nn.Identity)
    diag/attention/<layer>/first_mass     attention mass on position 0 (first_mass_max_head: the
                                          head that puts the most there)

Metrics of a representation, taken over the N = B * T token vectors x_i in R^n of the probe batch:
    isoscore          IsoScore (Rudman et al. 2022): 1 when the variance is spread evenly over all n
                      directions, 0 when it lies on one line; (k - 1) / (n - 1) for k directions used
                      evenly. From the covariance: invariant to a mean shift, so centering by a
                      vector shared by all tokens leaves it unchanged (before == after).
    var_top1, var_top5  share of the variance in the top 1 / top 5 principal directions (Mu &
                      Viswanath 2018); mean-shift invariant as well.
    cosine            mean cosine similarity over all pairs of distinct tokens (moves with the mean:
                      centering lowers it by construction).
    max_abs, median_abs, max_median_ratio   largest and median |x_ij| over all entries, and their
                      ratio (massive activations, Sun et al. 2024; outlier dimensions, Timkey & van
                      Schijndel 2021).
first_mass (attention sinks, Xiao et al. 2023): the softmax weight a query puts on position 0,
averaged over heads, sequences and query positions 1..T-1 (position 0 can only see itself),
computed from the q and k the model actually uses (after their sites), with the causal mask and
scaling of its scaled_dot_product_attention. Uniform attention would give the mean over t of
1 / (t + 1) (0.059 for T = 64); sinks sit in a few heads, hence also first_mass_max_head, the
largest per-head mean.

IsoScore follows the paper's algorithm step by step; it agrees with the authors' `isoscore` package
(2.0.1) to 6 digits, which is not used: a single 2023 release that copies its input with
torch.tensor, builds a CPU tensor next to the input (fails on CUDA), and decomposes the full n x n
covariance even when N < n.

These are finite-sample estimates on one probe batch: with N tokens not much larger than n (the
MLP's 4 * n_embd especially) even an isotropic cloud scores below 1, so compare runs of one shape
and probe batch, not absolute values. The median is torch's (the lower middle value for an even
count). Cost control: at most MAX_PROBE_TOKENS tokens (whole sequences from the start of the
batch); per representation one float32 eigvalsh of the n x n covariance (or of the N x N Gram
matrix when N < n), done once for a centered site whose output is its input shifted by one vector
(then before and after have the same covariance); the pairwise cosine is exact in O(N n).

The probe is an evaluation-mode forward pass with forward hooks on the site modules (SiteRecorder);
the model's forward is not changed. In evaluation mode adaptive centering subtracts its running
mean, so "after" is what evaluation sees; simple mode subtracts the mean of the probed sequences. experiments.plots.plot_diagnostics draws every metric over training per variant.
"""

import functools
import math

import torch

MAX_PROBE_TOKENS = 4096
TOP_K = (1, 5)
MEAN_SHIFT_INVARIANT = ("isoscore", "var_top1", "var_top5")
KEY_PREFIX = "diag"


def diag_key(site, layer, metric):
    return f"{KEY_PREFIX}/{site}/{layer}/{metric}"


def parse_diag_key(key):
    """(site, layer, metric) of a key diag_key made, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != KEY_PREFIX or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2]), parts[3]


# ----------------------------------------------------------------------------------------------
# Metrics of one point cloud

def principal_variances(points):
    """Variances of points (..., n) along their principal directions: the eigenvalues of the
    sample covariance, largest first, n of them (float64 out; the eigensolver runs in float32,
    2-3 times faster on a CPU and plenty for shares of the total variance)."""
    x = points.reshape(-1, points.shape[-1]).double()
    count, dim = x.shape
    if count < 2:
        raise ValueError("principal variances need at least two points")
    x = (x - x.mean(0)).float()
    # the nonzero eigenvalues of x^T x (n x n) and x x^T (N x N) are the same: take the smaller
    gram = x.T @ x if dim <= count else x @ x.T
    try:
        eigenvalues = torch.linalg.eigvalsh(gram)
    except torch.linalg.LinAlgError:  # float32 can fail to converge on an ill-conditioned matrix
        eigenvalues = torch.linalg.eigvalsh(gram.double())
    eigenvalues = eigenvalues.double().flip(0).clamp(min=0) / (count - 1)
    return torch.cat([eigenvalues, eigenvalues.new_zeros(dim - eigenvalues.numel())])


def isoscore_from_variances(variances):
    """IsoScore (Rudman et al. 2022, Algorithm 1) from the principal variances of a point cloud in
    R^n: normalise the variance vector to length sqrt(n), measure its distance to the isotropic
    diagonal (1, ..., 1), turn that into the fraction of dimensions used isotropically, rescale
    to [0, 1]. NaN when every point is the same (no variance)."""
    n = variances.numel()
    if n < 2:
        raise ValueError("IsoScore needs at least two dimensions")
    norm = variances.norm()
    if norm == 0:
        return variances.new_tensor(float("nan"))
    root_n = math.sqrt(n)
    normalized = variances * (root_n / norm)
    isotropy_defect = (normalized - 1).norm() / math.sqrt(2 * (n - root_n))
    fraction_used = (n - isotropy_defect ** 2 * (n - root_n)) ** 2 / n ** 2
    return (n * fraction_used - 1) / (n - 1)


def isoscore(points):
    """IsoScore of a point cloud (N, n): 1 isotropic, 0 on a line."""
    return isoscore_from_variances(principal_variances(points))


def top_variance_share(variances, k):
    """Share of the total variance in the k largest principal variances (sorted largest first)."""
    return variances[:k].sum() / variances.sum()


def mean_pairwise_cosine(points):
    """Mean of cos(x_i, x_j) over pairs i != j of the rows of points (..., n); O(N n)."""
    u = torch.nn.functional.normalize(points.reshape(-1, points.shape[-1]).float(), dim=-1)
    count = u.shape[0]
    # sum over i != j of u_i . u_j = |sum_i u_i|^2 - N
    return (u.sum(0).square().sum() - count) / (count * (count - 1))


def representation_metrics(points, variances=None):
    """Every per-representation metric of points (..., n) as 0-d tensors, by metric name.
    variances: principal_variances(points), where already known."""
    if variances is None:
        variances = principal_variances(points)
    magnitudes = points.detach().abs().float().flatten()
    max_abs, median_abs = magnitudes.max(), magnitudes.median()
    metrics = {"isoscore": isoscore_from_variances(variances)}
    for k in TOP_K:
        metrics[f"var_top{k}"] = top_variance_share(variances, k)
    metrics.update(cosine=mean_pairwise_cosine(points), max_abs=max_abs, median_abs=median_abs,
                   max_median_ratio=max_abs / median_abs)
    return metrics


def is_shifted_copy(before, after, rtol=1e-5):
    """Whether after = before - c with one vector c for every token, up to float rounding (what
    centering does): then after has before's covariance and principal variances."""
    difference = (before - after).reshape(-1, before.shape[-1]).float()
    spread = (difference - difference[:1]).abs().max()
    scale = torch.maximum(before.abs().max(), after.abs().max()).float()
    return bool(spread <= rtol * scale)


def first_position_attention(q, k, n_head):
    """Per head (n_head,): the mean causal softmax attention weight on position 0, from the
    (B, T, C) queries and keys as the sites leave them (heads side by side), over sequences and
    query positions >= 1."""
    B, T, C = q.shape
    if T < 2:
        raise ValueError("attention on the first position needs sequences of at least 2 tokens")
    q = q.float().view(B, T, n_head, C // n_head).transpose(1, 2)
    k = k.float().view(B, T, n_head, C // n_head).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // n_head)  # (B, n_head, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    log_weight_first = scores[..., 0] - torch.logsumexp(scores, dim=-1)  # (B, n_head, T)
    return log_weight_first[..., 1:].exp().mean(dim=(0, 2))


# ----------------------------------------------------------------------------------------------
# The probe: what enters and leaves every site of a model.GPT

class SiteRecorder:
    """Forward hooks on every site of a model (model.sites()) while the `with` block runs. Each
    forward call's input and output of a site are kept; several calls (a prefill and steps with
    a KVCache) are joined along the positions, so representations() is the same whether or not
    the tokens came through a cache."""

    def __init__(self, model):
        self.model = model
        self.inputs, self.outputs, self.changed = {}, {}, {}

    def __enter__(self):
        self.handles = [module.register_forward_hook(functools.partial(self._record, (name, layer or 0)))
                        for name, layer, module in self.model.sites()]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False

    def _record(self, key, module, args, output):
        self.inputs.setdefault(key, []).append(args[0].detach())
        self.outputs.setdefault(key, []).append(output.detach())
        self.changed[key] = self.changed.get(key, False) or output is not args[0]

    def representations(self):
        """(site, layer) -> (before, after, changed): tensors (B, T, dim); changed is False where
        the site returned its input unchanged (nn.Identity), and then after is before."""
        def join(chunks):
            return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)

        out = {}
        for key, inputs in self.inputs.items():
            before = join(inputs)
            after = join(self.outputs[key]) if self.changed[key] else before
            out[key] = (before, after, self.changed[key])
        return out


@torch.no_grad()
def probe(model, idx, max_tokens=MAX_PROBE_TOKENS):
    """A SiteRecorder filled by one evaluation-mode forward pass on the first sequences of idx
    (B, T) (at least one, at most max_tokens tokens); the train/eval state is restored after."""
    idx = idx[:max(1, max_tokens // idx.size(1))]
    was_training = model.training
    model.eval()
    try:
        with SiteRecorder(model) as recorder:
            model(idx)
    finally:
        model.train(was_training)
    return recorder


def site_diagnostics(recorder, n_head):
    """The flat diag/... keys (module docstring) of what a SiteRecorder saw, as floats."""
    values = {}
    representations = recorder.representations()
    for (site, layer), (before, after, changed) in representations.items():
        variances = principal_variances(before)
        metrics_before = representation_metrics(before, variances)
        metrics_after = metrics_before
        if changed:  # a centered site: its spectrum is computed again only if it is not a mere shift
            metrics_after = representation_metrics(after, variances if is_shifted_copy(before, after) else None)
        for name in metrics_before:
            values[diag_key(site, layer, f"{name}_before")] = metrics_before[name]
            values[diag_key(site, layer, f"{name}_after")] = metrics_after[name]
    for layer in sorted(layer for site, layer in representations if site == "q"):
        q, k = representations[("q", layer)][1], representations[("k", layer)][1]
        if q.size(1) > 1:  # a single position attends only to itself
            per_head = first_position_attention(q, k, n_head)
            values[diag_key("attention", layer, "first_mass")] = per_head.mean()
            values[diag_key("attention", layer, "first_mass_max_head")] = per_head.max()
    # one transfer for all of them (on a GPU, .item() per value would wait once per value)
    return dict(zip(values, torch.stack([v.double() for v in values.values()]).tolist())) if values else {}


def eval_diagnostics(model, idx, max_tokens=MAX_PROBE_TOKENS):
    """The diagnostics of a model.GPT (or subclass) on the probe batch idx (B, T)."""
    return site_diagnostics(probe(model, idx, max_tokens), model.config.n_head)
