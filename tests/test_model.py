import torch
import torch.nn as nn

from model import GPT, GPTConfig

CFG = dict(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)


def expected_params(c):
    """Parameters of the model written out by hand from its architecture."""
    C, V, T, L = c["n_embd"], c["vocab_size"], c["block_size"], c["n_layer"]
    ln = 2 * C  # gain and bias
    attn = C * 3 * C + 3 * C + C * C + C
    mlp = C * 4 * C + 4 * C + 4 * C * C + C
    return V * C + T * C + L * (2 * ln + attn + mlp) + ln  # lm_head is tied to wte


def test_shapes_and_parameter_count():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    idx = torch.randint(0, 50, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 50) and loss.ndim == 0
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 50) and loss is None
    assert model(idx, all_logits=True)[0].shape == (3, 16, 50)
    total = expected_params(CFG)
    assert model.get_num_params(non_embedding=False) == total
    assert model.get_num_params() == total - 16 * 32
    assert model.lm_head.weight is model.transformer.wte.weight


def test_no_bias_variant_has_no_biases():
    model = GPT(GPTConfig(**{**CFG, "bias": False}))
    assert not [n for n, _ in model.named_parameters() if n.endswith(".bias")]


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    idx, targets = torch.randint(0, 50, (2, 8, 16))
    _, loss = model(idx, targets)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.3


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG))
    x = torch.randint(0, 50, (4, 16))
    y = torch.roll(x, -1, dims=1)
    opt = model.configure_optimizers(0.0, 3e-3, (0.9, 0.95), "cpu")
    first = None
    for _ in range(100):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_sites_are_identity_and_enumerated():
    model = GPT(GPTConfig(**CFG))
    sites = list(model.sites())
    assert len(sites) == 1 + 6 * CFG["n_layer"]
    assert all(isinstance(m, nn.Identity) for _, _, m in sites)


def test_subclass_site_is_applied_without_copying_forward():
    class Zeroed(GPT):
        def make_site(self, name, dim, layer):
            return Scale(0.0) if name == "embeddings" else nn.Identity()

    class Scale(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x):
            return x * self.s

    torch.manual_seed(0)
    model = Zeroed(GPTConfig(**CFG))
    a = torch.randint(0, 50, (1, 16))
    b = torch.randint(0, 50, (1, 16))
    # with the embeddings zeroed, the output no longer depends on the tokens
    assert torch.allclose(model(a, all_logits=True)[0], model(b, all_logits=True)[0])


def test_causal_logits_do_not_see_the_future():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG)).eval()
    a = torch.randint(0, 50, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 50
    la, lb = model(a, all_logits=True)[0], model(b, all_logits=True)[0]
    assert torch.equal(la[0, :10], lb[0, :10])
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_optimizer_decays_only_matrices():
    model = GPT(GPTConfig(**CFG))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_generate_and_crop_block_size():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CFG)).eval()
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), 40, top_k=5)
    assert out.shape == (2, 41)  # longer than block_size: the context slides
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape == (8, 32)
    assert model(torch.zeros((1, 8), dtype=torch.long))[0].shape == (1, 1, 50)


def test_mfu_is_positive_and_scales_with_speed():
    model = GPT(GPTConfig(**CFG))
    assert 0 < model.estimate_mfu(4, 0.01) < model.estimate_mfu(4, 0.005)
