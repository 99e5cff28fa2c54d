"""Shared fixtures: a small char-level dataset written straight to disk (no preparation script
involved) and the settings of a tiny model that trains in a second on a CPU; and the helpers that
several test files use: command lines, subprocess environment, a small model and its centered
variants, a full disk, prepared datasets read back and damaged, metrics and sweep records."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
# the command-line scripts, imported by the tests that call their main(); after the library, so
# that a script's name never hides a library module
sys.path.append(os.path.join(REPO_ROOT, "scripts"))
# the first 60,000 characters of tiny Shakespeare (public domain), committed so that every machine
# trains the tests on the same text
TEST_TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shakespeare_60k.txt")

TINY_MODEL = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4, bias=True,
                  dropout=0.0, eval_windows=16, warmup_iters=2, learning_rate=3e-3, min_lr=3e-4,
                  device="cpu", compile=False, log_interval=1)
# an even smaller model as the experiment scripts' command-line flags (one run of a sweep)
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
        "--eval_interval=10", "--eval_windows=8", "--warmup_iters=2", "--device=cpu", "--log_interval=5"]
SCRIPTS = os.path.join(REPO_ROOT, "scripts")
# the environment of a subprocess that trains: one thread, as the tests in this process (one_thread)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# a small GPTConfig (model-level tests: test_centering, test_diagnostics, test_inference); test_model.py
# keeps its own CFG, another vocab_size
BASE = dict(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)


def write_char_dataset(folder, text, force=False):
    """A char-level dataset as the prepare scripts write it: train/val/test (90/5/5) and meta.json
    with the fingerprint."""
    from data import text_sources
    text_sources.write_char_dataset(folder, text, "test", force=force)
    return folder


def sample_text(n_chars=60_000):
    with open(TEST_TEXT, encoding="utf-8") as f:
        text = f.read()
    if n_chars > len(text):
        raise ValueError(f"the test text has {len(text)} characters, fewer than {n_chars}")
    return text[:n_chars]


@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    return write_char_dataset(str(tmp_path_factory.mktemp("char_data")), sample_text())


@pytest.fixture
def tiny_config(char_data, tmp_path):
    """A TrainConfig for the tiny model on the test data, writing to a fresh out_dir."""
    from train import TrainConfig
    return TrainConfig(**TINY_MODEL, data_dir=char_data, out_dir=str(tmp_path / "out"),
                       max_iters=20, eval_interval=10)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run many tiny ops: a second thread gains nothing, and on a busy 2-core machine
    its synchronisation makes them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def warm_up(model, steps=3, vocab_size=40, block_size=16):
    """A few training steps of a small centered model, so that its running means and learned
    centers are far from zero; returns it in evaluation mode."""
    model.init_from_batch(torch.randint(0, vocab_size, (4, block_size)))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        idx = torch.randint(0, vocab_size, (4, block_size))
        _, loss = model(idx, idx)
        loss.backward()
        opt.step()
        opt.zero_grad()
        model.after_optimizer_step()
    return model.eval()


def centered_model(mode, seed=0, **flags):
    """An AdvancedGPT of BASE's size (flags: the placements, or BASE's values to change, e.g.
    bias=False) with the given centering mode, its weights drawn from torch.manual_seed(seed)."""
    from model_advanced_centering import AdvancedGPT, AdvancedGPTConfig
    torch.manual_seed(seed)
    return AdvancedGPT(AdvancedGPTConfig(**{**BASE, **flags}, centering_mode=mode))


def flip_bytes_in_tensor(path, name="transformer.h.0.mlp.c_fc.weight"):
    """Damage a checkpoint file as a bad disk or copy would: 16 bytes in the middle of one model
    tensor's data set to 0xff (four NaNs in float32), the rest of the file as it was."""
    raw = torch.load(path, weights_only=True)["model"][name].contiguous().view(torch.uint8).numpy().tobytes()
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0, "the tensor's bytes are not found once in the file"
    data[at + len(raw) // 2:at + len(raw) // 2 + 16] = b"\xff" * 16
    with open(path, "wb") as f:
        f.write(data)


def run_main(main, argv, capsys):
    """A script's main(argv) in this process (no interpreter start, no torch import: seconds
    saved per call) -> (exit status, stdout, stderr), as the command line would end."""
    capsys.readouterr()
    try:
        status = main(argv) or 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def cli_args(cfg):
    return [f"--{k}={v}" for k, v in dataclasses.asdict(cfg).items()]


def one_line(err):
    """A failure as a user meets it: one line on stderr, no traceback."""
    return err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def train_with_file_limit(cfg, limit_bytes):
    """train.py on cfg in a subprocess that can write no file past limit_bytes: the kernel's
    RLIMIT_FSIZE, so a write that would grow a file past it fails (EFBIG) as on a full disk."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, "train.py", *cli_args(cfg)], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=ENV, preexec_fn=limit)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a tmpfs mounted read-only (root passes every permission check, so only a real
    read-only mount shows what a user without write access meets); skips where mounting is not
    allowed."""
    mount_point = tmp_path / "read_only"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def read_split(folder, name):
    """One split of a prepared dataset (train, val or test) as uint16 tokens."""
    return np.fromfile(os.path.join(folder, f"{name}.bin"), dtype=np.uint16)


def read_meta(folder):
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
        return json.load(f)


def exact_split_loss(ckpt_path, data_dir, block_size, split):
    """An independent evaluation: every non-overlapping window of a split (test.bin, val.bin),
    summed token by token. Returns (loss per token, bits per byte, tokens)."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    model = model_from_checkpoint(load_checkpoint(ckpt_path)).eval()
    ids = torch.from_numpy(read_split(data_dir, split).astype(np.int64))
    token_bytes = torch.tensor(read_meta(data_dir)["token_bytes"])
    nll, nbytes, tokens = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - block_size, block_size):
            x = ids[start:start + block_size][None]
            y = ids[start + 1:start + block_size + 1]
            logits, _ = model(x, y[None])
            nll += F.cross_entropy(logits[0].double(), y, reduction="sum").item()
            nbytes += int(token_bytes[y].sum())
            tokens += len(y)
    return nll / tokens, nll / math.log(2) / nbytes, tokens


def damage_meta_not_json(data_dir):
    """A dataset's meta.json cut short: not JSON any more."""
    with open(os.path.join(data_dir, "meta.json"), "w") as f:
        f.write('{"vocab_size": 65, "chars": [')


def iters_of(out_dir, kind="eval"):
    from training.metrics import read_metrics
    return [r["iter"] for r in read_metrics(out_dir) if r["type"] == kind]


def swap_two_chars(meta):
    chars = meta["chars"]
    chars[0], chars[1] = chars[1], chars[0]


def sweep(args, **kwargs):
    return [sys.executable, os.path.join(SCRIPTS, "advanced_centering_experiments.py"), *args]


def results(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pytest_collection_modifyitems(items):
    """The slow tests first (stable order otherwise): with pytest-xdist (-n auto) the long ones
    start early and the short ones fill the gaps, rather than a long one ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
