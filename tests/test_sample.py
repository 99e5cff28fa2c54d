"""Sampling from a checkpoint (sample.py): its vocabulary, its dataset, and bad values in one line."""
import dataclasses
import os

import pytest

import sample as sample_module
from conftest import run_main, sample_text, swap_two_chars, write_char_dataset
from train import train
from training import checkpoint
from training.checkpoint import load_checkpoint


def test_sample_from_saved_checkpoint(tiny_config, capsys):
    train(dataclasses.replace(tiny_config, max_iters=5), log=lambda *a: None)
    status, out, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", "--start=ROMEO:",
                                                     "--num_samples=2", "--max_new_tokens=30", "--device=cpu"], capsys)
    assert status == 0, err
    samples = out.split("---------------\n")
    assert len(samples) == 3 and all(s.startswith("ROMEO:") and len(s) >= 36 for s in samples[:2])
    status, _, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", "--start=\u263a",
                                                   "--device=cpu"], capsys)
    assert status == 2 and "outside the vocabulary" in err


def test_sample_refuses_a_checkpoint_whose_vocabulary_is_not_its_datasets(tiny_config, tmp_path, capsys):
    """A checkpoint that a resume before fingerprints were checked labelled with an edited
    vocabulary (same fingerprint, other chars) would decode the wrong characters."""
    import sample
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    ckpt = load_checkpoint(path)
    swap_two_chars(ckpt["dataset_meta"])
    checkpoint.save_checkpoint(ckpt, path)
    capsys.readouterr()
    code, out, err = run_main(sample.main, [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1",
                                            "--max_new_tokens=5"], capsys)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith(f"error: {path} carries another vocabulary than {data_dir}") and "chars differ" in err


@pytest.mark.parametrize("bad", ["--device=gpu", "--out_dir=", "--temperature=0", "--window=half"])
def test_sample_bad_value_is_one_line_and_exit_2(bad, capsys):
    import sample
    code, _, err = run_main(sample.main, [bad], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_sample_notes_a_dataset_that_changed_under_the_checkpoint(tiny_config, tmp_path, capsys):
    import sample
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    capsys.readouterr()
    args = [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=5", "--start=ROMEO:"]
    code, _, err = run_main(sample.main, args, capsys)
    assert code == 0 and err == ""
    write_char_dataset(data_dir, sample_text(20_000)[::-1], force=True)
    capsys.readouterr()
    code, out, err = run_main(sample.main, args, capsys)
    assert code == 0 and out.startswith("ROMEO:")  # decoded with the checkpoint's own vocabulary
    assert err.startswith(f"note: {data_dir} now holds another dataset than") and err.count("\n") == 1
