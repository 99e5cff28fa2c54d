"""Inference: key/value-cache generation, folding centering into biases, Hugging Face export."""

import dataclasses
import os
import sys

import pytest
import torch

import sample as sample_module
from conftest import BASE, centered_model, run_main, warm_up, write_char_dataset
from model import GPT, GPTConfig, KVCache
from model_advanced_centering import PLACEMENTS, AdvancedGPT, AdvancedGPTConfig, fold_centering
from sample import SampleConfig, sample
from train import train
from files import FileLock
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.run_folder import RUN_LOCK
from train_advanced_centered import CenteredTrainConfig

import export_hf  # the scripts folder is on sys.path (conftest.py)
import fold_centering as fold_script

PER_TOKEN_MODES = ("adaptive", "momentum", "learnable_center")
CHAR_META = {"tokenizer": "char", "vocab_size": 40, "chars": [chr(ord("0") + i) for i in range(40)]}





def all_models():
    yield "baseline", lambda: GPT(GPTConfig(**BASE))
    for placement in PLACEMENTS:
        for mode in PER_TOKEN_MODES:
            yield f"{placement}-{mode}", lambda p=placement, m=mode: warm_up(centered_model(m, **{p: True}))


MODELS = dict(all_models())


def incremental_logits(model, idx, prefill):
    """Logits at every position of idx (B, T), from a prefill of its first tokens, then a chunk of
    two tokens (a query block shorter than the keys), then one token at a time."""
    cache = KVCache(model.config.n_layer, model.config.block_size)
    out = [model(idx[:, :prefill], all_logits=True, kv_cache=cache)[0]]
    out.append(model(idx[:, prefill:prefill + 2], all_logits=True, kv_cache=cache)[0])
    for t in range(prefill + 2, idx.size(1)):
        out.append(model(idx[:, t:t + 1], all_logits=True, kv_cache=cache)[0])
    return torch.cat(out, dim=1)


def greedy_with_logits(model, prompt, new_tokens, use_cache=True, window="slide"):
    """model.generate(prompt, new_tokens, top_k=1), and the logits each step sampled from
    (B, new_tokens, vocab), read by a hook on the model's forward."""
    steps = []
    hook = model.register_forward_hook(lambda module, args, out: steps.append(out[0][:, -1]))
    try:
        idx = model.generate(prompt, new_tokens, top_k=1, use_cache=use_cache, window=window)
    finally:
        hook.remove()
    return idx, torch.stack(steps, dim=1)


@torch.no_grad()
def half_window_reference(model, prompt, new_tokens):
    """greedy_with_logits under the cached path's window policy, from plain uncached forwards: the
    context is the tokens since the last restart point; it starts as the last block_size tokens of
    the prompt and, whenever it would exceed block_size, restarts at the last block_size // 2."""
    block_size, idx, steps = model.config.block_size, prompt, []
    start = max(0, prompt.size(1) - block_size)
    for _ in range(new_tokens):
        if idx.size(1) - start > block_size:
            start = idx.size(1) - block_size // 2
        steps.append(model(idx[:, start:])[0][:, -1])
        idx = torch.cat((idx, steps[-1].argmax(dim=-1, keepdim=True)), dim=1)
    return idx, torch.stack(steps, dim=1)


def assert_same_generation(a, b):
    (idx_a, logits_a), (idx_b, logits_b) = a, b
    assert torch.equal(idx_a, idx_b)
    assert torch.allclose(logits_a, logits_b, atol=1e-5), (logits_a - logits_b).abs().max()


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_generation_matches_uncached_within_the_window(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    assert model.supports_kv_cache()
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        full = model(idx, all_logits=True)[0]
        assert torch.allclose(incremental_logits(model, idx, prefill=5), full, atol=1e-5)
    prompt = idx[:, :3]  # 3 + 13 tokens: the whole result fits in block_size 16
    assert_same_generation(greedy_with_logits(model, prompt, 13),
                           greedy_with_logits(model, prompt, 13, use_cache=False))


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_generation_past_the_window_slides_like_the_uncached_path(name):
    """The default: past block_size every step sees the last block_size tokens, cached or not."""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    for prompt in (torch.randint(0, 40, (2, 3)), torch.randint(0, 40, (1, 20))):  # the second: longer than the window
        # 3 + 40 tokens with block_size 16: 27 steps past the window edge
        assert_same_generation(greedy_with_logits(model, prompt, 40),
                               greedy_with_logits(model, prompt, 40, use_cache=False))
    torch.manual_seed(1)  # sampled, not greedy: the same random draws on both paths
    prompt = torch.randint(0, 40, (2, 3))
    runs = [model.generate(prompt, 40, top_k=10, generator=torch.Generator().manual_seed(5), use_cache=c)
            for c in (True, False)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_restart_window_rebuilds_the_cache_from_half_a_window(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    prompt = torch.randint(0, 40, (2, 3))
    # 43 tokens with block_size 16: the cache is rebuilt from the last 8 tokens at lengths 17, 26, 35
    cached = greedy_with_logits(model, prompt, 40, window="restart")
    assert_same_generation(cached, half_window_reference(model, prompt, 40))
    # the sliding window parts from it at the first window edge (step 14)
    sliding_logits = greedy_with_logits(model, prompt, 40, use_cache=False)[1]
    assert torch.allclose(cached[1][:, :14], sliding_logits[:, :14], atol=1e-5)
    assert not torch.allclose(cached[1][:, 14], sliding_logits[:, 14], atol=1e-3)
    # a prompt longer than the window: both paths start from its last 16 tokens
    long_prompt = torch.randint(0, 40, (1, 20))
    cached = greedy_with_logits(model, long_prompt, 10, window="restart")
    assert cached[0].shape == (1, 30) and torch.equal(cached[0][:, :20], long_prompt)
    assert torch.allclose(cached[1][:, 0], greedy_with_logits(model, long_prompt, 1, use_cache=False)[1][:, 0],
                          atol=1e-5)
    assert_same_generation(cached, half_window_reference(model, long_prompt, 10))
    with pytest.raises(ValueError, match="window must be 'slide' or 'restart'"):
        model.generate(prompt, 1, window="half")


def test_cache_overflow_is_an_error():
    model = GPT(GPTConfig(**BASE)).eval()
    cache = KVCache(2, 16)
    model(torch.zeros((1, 10), dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="after 10 cached tokens exceeds block_size 16"):
        model(torch.zeros((1, 7), dtype=torch.long), kv_cache=cache)


def test_batch_statistics_fall_back_to_uncached_with_one_note(capsys):
    model = warm_up(centered_model("simple", center_embeddings=True, center_mlp=True))
    assert not model.supports_kv_cache()
    prompt = torch.randint(0, 40, (2, 3))
    a = model.generate(prompt, 20, top_k=1)
    b = model.generate(prompt, 20, top_k=1)
    assert torch.equal(a, model.generate(prompt, 20, top_k=1, use_cache=False)) and torch.equal(a, b)
    err = capsys.readouterr().err
    assert err.count("generating without it") == 1, err
    adaptive = warm_up(centered_model("adaptive", center_v=True))
    assert adaptive.supports_kv_cache() and not adaptive.train().supports_kv_cache()


@pytest.mark.parametrize("placement", list(PLACEMENTS) + ["all"])
@pytest.mark.parametrize("mode", PER_TOKEN_MODES)
def test_folded_model_gives_the_centered_logits(placement, mode):
    flags = {flag: True for flag in PLACEMENTS} if placement == "all" else {placement: True}
    model = warm_up(centered_model(mode, bias=placement != "all", **flags))  # bias=False: biases created
    folded = fold_centering(model).eval()
    assert type(folded) is GPT and folded.config.bias
    assert not any(n.endswith(("running_mean", "center")) for n in folded.state_dict())
    assert max(m.fixed_center().norm() for _, _, m in model.centerings()) > 1e-2  # a real shift
    idx = torch.randint(0, 40, (3, 16))
    with torch.no_grad():
        assert torch.allclose(folded(idx, all_logits=True)[0], model(idx, all_logits=True)[0], atol=1e-5)


def test_fold_refuses_simple_mode():
    with pytest.raises(ValueError, match="simple"):
        fold_centering(centered_model("simple", center_embeddings=True))


def write_checkpoint(model, folder):
    """A checkpoint as train.py writes it, minus the training state."""
    ckpt = {"model": model.state_dict(), "model_args": dataclasses.asdict(model.config),
            "model_class": type(model).__name__, "config": {}, "dataset_meta": CHAR_META}
    save_checkpoint(ckpt, os.path.join(folder, "ckpt.pt"))
    return folder


def test_fold_script_and_sampling_from_the_folded_checkpoint(tiny_config, tmp_path, capsys):
    flags = dict(center_embeddings=True, center_qk=True, center_v=True, center_mlp=True,
                 center_residual=True, center_attn_out=True, centering_mode="momentum", bias=False)
    cfg = CenteredTrainConfig(**{**dataclasses.asdict(tiny_config), **flags, "max_iters": 6, "eval_interval": 6})
    train(cfg, AdvancedGPT, AdvancedGPTConfig, log=lambda *a: None)
    folded_dir = str(tmp_path / "folded")
    status, _, err = run_main(fold_script.main, [f"--in_dir={cfg.out_dir}", f"--out_dir={folded_dir}"], capsys)
    assert status == 0, err
    centered_ckpt = load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))
    ckpt = load_checkpoint(os.path.join(folded_dir, "ckpt.pt"))
    assert ckpt["model_class"] == "GPT" and ckpt["model_args"]["bias"] is True
    assert set(ckpt["model_args"]) == {f.name for f in dataclasses.fields(GPTConfig)}
    assert ckpt["dataset_meta"] == centered_ckpt["dataset_meta"] and ckpt["config"] == centered_ckpt["config"]
    centered, folded = model_from_checkpoint(centered_ckpt).eval(), model_from_checkpoint(ckpt).eval()
    idx = torch.randint(0, centered.config.vocab_size, (2, 16))
    with torch.no_grad():
        assert torch.allclose(centered(idx, all_logits=True)[0], folded(idx, all_logits=True)[0], atol=1e-5)

    status, out, err = run_main(sample_module.main, [f"--out_dir={folded_dir}", "--num_samples=1",
                                                     "--max_new_tokens=30", "--device=cpu", "--start=ROMEO:"], capsys)
    assert status == 0 and out.startswith("ROMEO:"), err
    # greedy sampling past the window (a one-token prompt + 40 > block_size 16): the same text
    # with and without the cache; the restart window's agrees within the first window
    greedy = SampleConfig(out_dir=folded_dir, num_samples=1, max_new_tokens=40, top_k=1, device="cpu")
    quiet = lambda *a: None  # noqa: E731
    text = sample(greedy, quiet)
    assert text == sample(dataclasses.replace(greedy, use_kv_cache=False), quiet)
    restart = sample(dataclasses.replace(greedy, window="restart"), quiet)
    assert restart[0][:16] == text[0][:16]


def test_sample_generates_with_the_window_it_is_given(tmp_path):
    """sample.py's --window reaches the model: on a model whose greedy text depends on its context
    (weights of unit variance), slide and restart part after the first window, and each is the
    model's own generation with that window."""
    torch.manual_seed(1)
    model = GPT(GPTConfig(**BASE)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.0)
    folder = write_checkpoint(model, str(tmp_path / "run"))
    greedy = SampleConfig(out_dir=folder, start="0", num_samples=1, max_new_tokens=40, top_k=1, device="cpu")
    encode, decode = sample_module.make_codec(CHAR_META)
    texts = {}
    for window in ("slide", "restart"):
        texts[window] = sample(dataclasses.replace(greedy, window=window), lambda *a: None)[0]
        with torch.no_grad():
            ids = model.generate(torch.tensor([encode("0")]), 40, top_k=1, window=window)
        assert texts[window] == decode(ids[0].tolist())
    assert texts["slide"][:BASE["block_size"]] == texts["restart"][:BASE["block_size"]]
    assert texts["slide"] != texts["restart"]


@pytest.mark.parametrize("case,message", [("plain", "not a centered model"), ("simple", "'simple'"),
                                          ("same_dir", "would overwrite"), ("missing", "no checkpoint at")])
def test_fold_script_errors_are_one_line(case, message, tmp_path, capsys):
    model = GPT(GPTConfig(**BASE)) if case == "plain" else centered_model("simple", center_v=True)
    in_dir = write_checkpoint(model, str(tmp_path / "in")) if case != "missing" else str(tmp_path / "none")
    out_dir = in_dir if case == "same_dir" else str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        fold_script.main([f"--in_dir={in_dir}", f"--out_dir={out_dir}"])
    err = capsys.readouterr().err
    assert exit_info.value.code in (1, 2) and err.count("\n") == 1 and message in err, err


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_fold_never_replaces_a_run_unasked(tmp_path, capsys):
    """The folded ckpt.pt gets a folder of its own: never the centered run's (whichever of its
    checkpoints is folded), another run's only with --overwrite=True, which replaces that run."""
    centered = write_checkpoint(centered_model("momentum", center_v=True), str(tmp_path / "centered"))
    save_checkpoint(load_checkpoint(os.path.join(centered, "ckpt.pt")), os.path.join(centered, "best.pt"))
    other = write_checkpoint(GPT(GPTConfig(**BASE)), str(tmp_path / "other"))
    with open(os.path.join(other, "metrics.jsonl"), "w") as f:
        f.write('{"type": "eval", "iter": 0, "val_loss": 3.0}\n')
    before = {folder: folder_bytes(folder) for folder in (centered, other)}
    fold = lambda out_dir, *extra: run_main(fold_script.main, [f"--in_dir={centered}", "--checkpoint=best.pt",
                                                               f"--out_dir={out_dir}", *extra], capsys)
    for out_dir, extra, message in ((centered, [], "is --in_dir"), (centered, ["--overwrite=True"], "is --in_dir"),
                                    (other, [], f"{other} already holds a run (ckpt.pt, metrics.jsonl)")):
        status, _, err = fold(out_dir, *extra)
        assert status == 2 and err.count("\n") == 1 and message in err, err
    with FileLock(os.path.join(other, RUN_LOCK)):  # a trainer runs there: even --overwrite=True waits for it
        status, _, err = fold(other, "--overwrite=True")
    assert status == 1 and err.count("\n") == 1 and "another process (a trainer, a fold or an import) is writing in" in err, err
    with open(tmp_path / "a_file", "w") as f:
        f.write("mine")
    for out_dir in (tmp_path / "a_file", tmp_path / "a_file" / "below"):  # a file where the folder would go
        status, _, err = fold(out_dir)
        assert status == 2 and err.count("\n") == 1 and "--out_dir" in err, err
    assert (tmp_path / "a_file").read_text() == "mine"
    assert {folder: folder_bytes(folder) for folder in (centered, other)} == {
        folder: {**files, RUN_LOCK: b""} if folder == other else files for folder, files in before.items()}

    status, out, err = fold(other, "--overwrite=True")
    assert status == 0 and "deleting the previous run's metrics.jsonl" in out, err
    assert sorted(os.listdir(other)) == ["ckpt.pt", RUN_LOCK]  # the folded model alone, no other run's metrics
    assert load_checkpoint(os.path.join(other, "ckpt.pt"))["folded_from"]["checkpoint"].endswith("best.pt")
    assert folder_bytes(centered) == before[centered]


def test_hf_export_never_writes_into_a_run_or_a_model_unasked(tmp_path, capsys):
    in_dir = write_checkpoint(GPT(GPTConfig(**BASE)), str(tmp_path / "ckpt"))
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("mine")
    for out_dir, what in ((in_dir, "a run (ckpt.pt)"), (hf_dir, "a model (config.json)")):
        status, _, err = run_main(export_hf.main, [f"--in_dir={in_dir}", f"--out_dir={out_dir}"], capsys)
        assert status == 2 and err.count("\n") == 1 and f"{out_dir} already holds {what}" in err, err
        assert "--overwrite=True" in err
    assert (hf_dir / "config.json").read_text() == "mine" and os.listdir(in_dir) == ["ckpt.pt"]
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    status, _, err = run_main(export_hf.main, [f"--in_dir={in_dir}", f"--out_dir={a_file}"], capsys)
    assert status == 2 and err.count("\n") == 1 and "is a file, not a folder" in err, err
    assert a_file.read_text() == "mine"


def test_export_without_transformers_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # any import of it now fails
    status, _, err = run_main(export_hf.main, ["--in_dir=a", "--out_dir=b"], capsys)
    assert status == 1 and err.count("\n") == 1 and "pip install transformers" in err, err


# a text a tiny model learns in 80 iterations well enough that its greedy continuation varies
LEARNABLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 300


def trained_run(kind, tmp_path, tiny_config):
    """A tiny run on LEARNABLE in characters, GPT-2 BPE, or a compact GPT-2 vocabulary (whose
    model has padding rows past it: vocab_multiple 8)."""
    from data.text_sources import write_dataset
    from gpt2_tokenizer import compact_vocabulary, get_gpt2_encoding, token_byte_lengths
    data_dir = str(tmp_path / "data")
    if kind == "char":
        write_char_dataset(data_dir, LEARNABLE)
    else:
        enc = get_gpt2_encoding()
        ids, meta = enc.encode_ordinary(LEARNABLE), {"tokenizer": "gpt2", "vocab_size": enc.n_vocab,
                                                       "token_bytes": token_byte_lengths(enc)}
        if kind == "compact":
            ids, compact = compact_vocabulary(ids, meta["token_bytes"])
            meta.update(compact)
        write_dataset(data_dir, ids, meta)
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=80, eval_interval=40, learning_rate=1e-2,
                              min_lr=1e-3, vocab_multiple=8 if kind == "compact" else 1)
    train(cfg, log=lambda *a: None)
    return cfg.out_dir


@pytest.mark.parametrize("kind", ["char", "bpe", "compact"])
def test_hf_export_tokenizer_and_pipeline_give_our_greedy_text(kind, tiny_config, tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers", reason="transformers is optional (pip install transformers)")
    from transformers import AutoTokenizer, pipeline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything comes from the export folder
    run, out_dir = trained_run(kind, tmp_path, tiny_config), str(tmp_path / "hf")
    status, out, err = run_main(export_hf.main, [f"--in_dir={run}", f"--out_dir={out_dir}"], capsys)
    assert status == 0 and "and its tokenizer" in out and "does not slide its window" in out, err

    ckpt = load_checkpoint(os.path.join(run, "ckpt.pt"))
    encode, decode = sample_module.make_codec(ckpt["dataset_meta"])
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    text = LEARNABLE[:LEARNABLE.index("\n\n") + 2] * 3  # whole lines: a compact vocabulary holds their tokens
    assert tokenizer(text, verbose=False).input_ids == encode(text) and tokenizer.decode(encode(text)) == text

    prompt = "First"
    new_tokens = 16 - len(encode(prompt)) + 1  # the most that fit: prompt + new tokens - 1 = block_size
    greedy = SampleConfig(out_dir=run, start=prompt, num_samples=1, max_new_tokens=new_tokens, top_k=1, device="cpu")
    ours = sample(greedy, lambda *a: None)[0]
    assert len(set(ours)) > 8, ours  # not one token over and over
    generator = pipeline("text-generation", model=out_dir, device="cpu")
    assert generator(prompt, max_new_tokens=new_tokens, do_sample=False)[0]["generated_text"] == ours
    with pytest.raises(IndexError, match="index out of range"):  # past n_positions: refused, not slid
        generator(prompt, max_new_tokens=new_tokens + 1, do_sample=False)


@pytest.mark.parametrize("kind", ["baseline", "centered"])
def test_hf_export_gives_our_logits(kind, tmp_path, monkeypatch):
    pytest.importorskip("transformers", reason="transformers is optional (pip install transformers)")
    from transformers import GPT2LMHeadModel
    if kind == "baseline":
        torch.manual_seed(0)
        model = GPT(GPTConfig(**{**BASE, "bias": False}))  # biases are zero-filled in the export
    else:  # exported through the automatic fold
        model = warm_up(centered_model("momentum", bias=False, **{flag: True for flag in PLACEMENTS}))
    in_dir, out_dir = write_checkpoint(model, str(tmp_path / "ckpt")), str(tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the script's command line, in this process: importing transformers takes seconds
    assert export_hf.main([f"--in_dir={in_dir}", f"--out_dir={out_dir}"]) == 0
    hf = GPT2LMHeadModel.from_pretrained(out_dir).eval()
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        ours = model.eval()(idx, all_logits=True)[0]
        theirs = hf(idx).logits
    assert ours.std() > 1e-2 and torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
