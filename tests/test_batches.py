"""Token data (training/batches.py): the dataset fingerprint, a damaged dataset, and batches shared between
processes."""
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

import train as train_module
from configurator import ConfigError
from conftest import (cli_args, damage_meta_not_json, one_line, run_main, sample_text, swap_two_chars,
                      write_char_dataset)
from training import batches, run_folder


def cut_train_bin(data_dir):
    path = os.path.join(data_dir, "train.bin")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) * 2 // 3)  # whole uint16 tokens: a token file cut short


@pytest.mark.parametrize("tamper", ["cut train.bin", "swapped chars", "edited vocab_size"])
def test_dataset_changed_under_its_meta_is_refused_at_every_start(tiny_config, tmp_path, tamper, capsys):
    """meta.json's fingerprint is not taken on trust: recomputed from the files at every start
    and resume, a mismatch is one line naming the folder (exit 2), before anything is written."""
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    meta_path = os.path.join(data_dir, "meta.json")
    pristine = {name: Path(data_dir, name).read_bytes() for name in os.listdir(data_dir)}
    if tamper == "cut train.bin":
        cut_train_bin(data_dir)
    else:
        meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
        swap_two_chars(meta) if tamper == "swapped chars" else meta.update(vocab_size=meta["vocab_size"] + 1)
        Path(meta_path).write_text(json.dumps(meta), encoding="utf-8")
    before = {name: Path(cfg.out_dir, name).read_bytes() for name in run_folder.RUN_FILES}
    for extra in (["--init_from=resume", "--max_iters=4"], ["--overwrite=True"], ["--eval_only=True"]):
        code, out, err = run_main(train_module.main, cli_args(cfg) + extra, capsys)
        assert code == 2 and err.count("\n") == 1, (extra, err)
        assert err.startswith(f"error: {data_dir} does not match its meta.json") and "prepare script" in err
        assert "step 0" not in out
    assert {name: Path(cfg.out_dir, name).read_bytes() for name in run_folder.RUN_FILES} == before
    for name, content in pristine.items():  # restored as it was prepared: the run resumes
        Path(data_dir, name).write_bytes(content)
    assert run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)[0] == 0


def test_dataset_without_fingerprint_still_trains_and_resumes(tiny_config, tmp_path, capsys):
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    meta_path = Path(data_dir, "meta.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["fingerprint"]  # as prepared before fingerprints existed
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    assert run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)[0] == 0
    # its checkpoint's vocabulary is still checked against the data's on resume
    swap_two_chars(meta)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=6"], capsys)
    assert code == 2 and err.count("\n") == 1 and "trained on another dataset" in err and "chars differ" in err


def test_step_sharing_errors_name_the_flag_to_add(tiny_config):
    from train_advanced_centered import CenteredTrainConfig
    with pytest.raises(ConfigError) as e:
        batches.check_step_sharing(1, 3, 2)
    assert str(e.value) == ("2 processes cannot share steps of gradient_accumulation_steps=1 x batch_size=3: "
                            "add --gradient_accumulation_steps=2 or --batch_size=2 (a multiple of 2)")
    batches.check_step_sharing(1, 4, 2)  # rows split evenly
    adaptive = CenteredTrainConfig(center_embeddings=True, centering_mode="adaptive", batch_size=4)
    assert CenteredTrainConfig(center_embeddings=True, centering_mode="momentum").batch_statistics_reason() is None
    with pytest.raises(ConfigError, match=r"^4 processes cannot share steps of gradient_accumulation_steps=6: "
                       r"add --gradient_accumulation_steps=8 \(centering_mode 'adaptive' centers with the mean"):
        batches.check_step_sharing(6, 4, 4, adaptive.batch_statistics_reason())


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
