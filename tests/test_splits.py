"""The train / validation / test split, the dataset fingerprint and the test record."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, exact_split_loss, read_meta, read_split, write_char_dataset
from data.text_sources import dataset_fingerprint, split_tokens
from train import train
from training.checkpoint import load_checkpoint

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak \u2014 caf\u00e9!\n\n" * 40


def prepare_char(source, out_dir):
    return subprocess.run([sys.executable, "data/shakespeare_char/prepare.py", "--input", str(source),
                           "--out_dir", str(out_dir)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_split_tokens_is_90_5_5_contiguous_and_disjoint():
    ids = list(range(1001))
    train, val, test = split_tokens(ids)
    assert (len(train), len(val), len(test)) == (900, 50, 51)
    assert train + val + test == ids  # in order: nothing lost, nothing shared
    assert not (set(train) & set(val) or set(val) & set(test) or set(train) & set(test))


def test_prepared_split_is_disjoint_and_stable(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text(TEXT, encoding="utf-8")
    for name in ("a", "b"):
        assert prepare_char(source, tmp_path / name).returncode == 0
    meta = read_meta(tmp_path / "a")
    parts = {name: read_split(tmp_path / "a", name) for name in ("train", "val", "test")}
    decoded = {name: "".join(meta["chars"][i] for i in ids) for name, ids in parts.items()}
    n = len(TEXT)
    assert decoded["train"] == TEXT[:int(n * 0.9)]
    assert decoded["val"] == TEXT[int(n * 0.9):int(n * 0.95)]
    assert decoded["test"] == TEXT[int(n * 0.95):]
    assert [meta[f"{name}_tokens"] for name in parts] == [len(p) for p in parts.values()]
    # stable: a second preparation of the same text gives the same bytes and fingerprint
    for name in parts:
        assert (tmp_path / "a" / f"{name}.bin").read_bytes() == (tmp_path / "b" / f"{name}.bin").read_bytes()
    assert meta["fingerprint"] == read_meta(tmp_path / "b")["fingerprint"]
    assert meta["fingerprint"] == dataset_fingerprint(str(tmp_path / "a"), meta)


def test_fingerprint_changes_with_tokens_and_vocabulary(tmp_path):
    folder = write_char_dataset(str(tmp_path / "d"), TEXT)
    meta = read_meta(folder)
    original = meta["fingerprint"]
    assert dataset_fingerprint(folder, {**meta, "source": "elsewhere"}) == original  # provenance only
    assert dataset_fingerprint(folder, {**meta, "chars": meta["chars"][::-1]}) != original
    test = read_split(folder, "test")
    test[0] = (test[0] + 1) % meta["vocab_size"]
    test.tofile(os.path.join(folder, "test.bin"))
    assert dataset_fingerprint(folder, meta) != original


@pytest.mark.parametrize("crash_at", ["token files", "meta.json"])
def test_forced_replacement_that_crashes_leaves_no_dataset_under_the_old_fingerprint(tmp_path, monkeypatch, crash_at):
    from data import text_sources
    from configurator import ConfigError
    from training.batches import TokenData
    folder = write_char_dataset(str(tmp_path / "d"), TEXT)
    real_replace, moves = os.replace, []

    def crashing_replace(src, dst):
        moves.append(dst)
        crash = dst.endswith("meta.json") if crash_at == "meta.json" else len(moves) == 2
        if crash:  # killed after the first token file was moved, or while committing meta.json
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(text_sources.os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        write_char_dataset(folder, TEXT[::-1], force=True)
    monkeypatch.setattr(text_sources.os, "replace", real_replace)
    assert not os.path.exists(os.path.join(folder, "meta.json"))  # no (stale) fingerprint at all
    with pytest.raises(ConfigError, match="meta.json missing"):  # a bad value: exit 2
        TokenData(folder, 16)
    assert [p for p in os.listdir(folder) if "meta.json." in p] == []  # no half-written meta.json left
    write_char_dataset(folder, TEXT[::-1], force=True)  # the interrupted replacement, done again
    meta = read_meta(folder)
    assert meta["fingerprint"] == dataset_fingerprint(folder, meta)


def test_test_record_is_the_exact_evaluation_of_the_best_checkpoint(tiny_config):
    cfg = dataclasses.replace(tiny_config, max_iters=30, eval_interval=10)
    summary = train(cfg, log=lambda *a: None)
    with open(os.path.join(cfg.out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    evals = [r for r in records if r["type"] == "eval"]
    tests = [r for r in records if r["type"] == "test"]
    assert len(tests) == 1 and records[-1] is tests[0]
    best_eval = min(evals, key=lambda r: r["val_loss"])
    assert tests[0]["iter"] == best_eval["iter"] == load_checkpoint(os.path.join(cfg.out_dir, "best.pt"))["iter_num"]
    loss, bpb, tokens = exact_split_loss(os.path.join(cfg.out_dir, "best.pt"), cfg.data_dir, cfg.block_size, "test")
    n_test = read_meta(cfg.data_dir)["test_tokens"]
    assert tokens == tests[0]["test_tokens"] == (n_test - 1) // cfg.block_size * cfg.block_size
    assert tests[0]["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert tests[0]["test_bpb"] == pytest.approx(bpb, rel=1e-5)
    assert (summary["test_loss"], summary["test_bpb"]) == (tests[0]["test_loss"], tests[0]["test_bpb"])


def test_resumed_run_writes_one_test_record(tiny_config):
    cfg = dataclasses.replace(tiny_config, max_iters=10, eval_interval=5)
    train(cfg, log=lambda *a: None)
    train(dataclasses.replace(cfg, max_iters=20, init_from="resume"), log=lambda *a: None)
    with open(os.path.join(cfg.out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["type"] for r in records].count("test") == 1 and records[-1]["type"] == "test"


def test_dataset_without_test_split_still_trains_with_a_note(tiny_config, tmp_path):
    old = str(tmp_path / "old_data")
    shutil.copytree(tiny_config.data_dir, old)
    os.remove(os.path.join(old, "test.bin"))
    with open(os.path.join(old, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(old, "meta.json"), "w", encoding="utf-8") as f:  # as prepared before the split:
        json.dump({k: v for k, v in meta.items() if k not in ("fingerprint", "test_tokens")}, f)  # no fingerprint
    lines = []
    summary = train(dataclasses.replace(tiny_config, data_dir=old, max_iters=4, eval_interval=2), log=lines.append)
    notes = [line for line in lines if "test" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "prepare.py" in notes[0]
    assert "test_loss" not in summary
    with open(os.path.join(tiny_config.out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        assert all(json.loads(line)["type"] != "test" for line in f)
