"""The checkpoint format (training/checkpoint.py): atomic writes (a full disk among them), checksums, loading
and its one-line errors."""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import sample as sample_module
import train as train_module
from configurator import ConfigError, UserError
from conftest import (ENV, REPO_ROOT, cli_args, flip_bytes_in_tensor, one_line, run_main, sample_text,
                      train_with_file_limit, write_char_dataset)
from files import read_jsonl
from model import GPT
from train import train
from training import TrainingError
from training.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from training.metrics import read_metrics


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint({"x": torch.arange(5)}, path)

    def crash_midway(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(UserError, match="cannot write .*ckpt.pt: disk full .*unchanged"):  # one line, exit 1
        save_checkpoint({"x": torch.zeros(5)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(5))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_a_file_where_the_checkpoints_folder_would_go_is_one_line(tmp_path):
    """write_atomically makes the folder: a file in its place (or above it) is a UserError naming
    the path (one line, exit 1), and the file is left as it was."""
    mine = tmp_path / "mine"
    mine.write_text("mine")
    for path, reason in ((mine / "ckpt.pt", "is a file, not a folder"), (mine / "sub" / "ckpt.pt", "cannot be made")):
        with pytest.raises(UserError, match=f"^cannot write {path}: its folder .* {reason}"):
            save_checkpoint({"x": torch.arange(5)}, str(path))
    assert mine.read_text() == "mine"


def test_bad_checkpoints_give_clear_errors(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at"):  # a path that names none: exit 2
        load_checkpoint(str(tmp_path / "missing.pt"))
    train(dataclasses.replace(tiny_config, max_iters=2), log=lambda *a: None)
    good = os.path.join(tiny_config.out_dir, "ckpt.pt")
    truncated = str(tmp_path / "truncated.pt")
    with open(good, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:1000])
    with pytest.raises(ConfigError, match="unreadable \\(truncated or corrupt\\)"):  # exit 2, as a corrupt one
        load_checkpoint(truncated)
    ckpt = load_checkpoint(good)
    inference_only = os.path.join(str(tmp_path), "folded")
    os.makedirs(inference_only)
    save_checkpoint({k: ckpt[k] for k in ("model", "model_args", "model_class")},
                    os.path.join(inference_only, "ckpt.pt"))
    with pytest.raises(TrainingError, match="cannot be resumed: it lacks the training state"):
        train(dataclasses.replace(tiny_config, out_dir=inference_only, init_from="resume"), log=lambda *a: None)
    other = GPT(train_module.GPTConfig(**{**ckpt["model_args"], "n_embd": 64}))
    with pytest.raises(TrainingError, match="does not match the model"):
        load_model_state(other, ckpt["model"], good)


def test_corrupt_checkpoint_is_one_line_and_exit_2_everywhere(tiny_config, tmp_path, capsys):
    """Bytes flipped inside a tensor: torch.load does not notice, the checksum written with the
    checkpoint does, in resume, evaluation and sampling alike (never a traceback, a NaN loss, or
    exit 3: a sweep would record the run as diverged)."""
    cfg = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    train(cfg, log=lambda *a: None)
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    legacy = str(tmp_path / "legacy.pt")  # as written before checkpoints had a checksum
    torch.save(load_checkpoint(path), legacy)
    assert "checksum" not in torch.load(legacy, weights_only=True)
    assert load_checkpoint(legacy)["iter_num"] == 4
    flip_bytes_in_tensor(path)
    assert not torch.isfinite(torch.load(path, weights_only=True)["model"]["transformer.h.0.mlp.c_fc.weight"]).all()
    with pytest.raises(ConfigError, match=f"checkpoint {path} is corrupt"):
        load_checkpoint(path)
    for main, extra in ((train_module.main, ["--init_from=resume", "--max_iters=8"]),
                        (train_module.main, ["--eval_only=True"]), (sample_module.main, None)):
        argv = cli_args(cfg) + extra if extra else [f"--out_dir={cfg.out_dir}", "--device=cpu", "--num_samples=1"]
        status, out, err = run_main(main, argv, capsys)
        assert status == 2 and err.count("\n") == 1 and "corrupt" in err and "step" not in out, (argv, err)
    assert [r["iter"] for r in read_metrics(cfg.out_dir) if r["type"] == "eval"] == [0, 2, 4]  # nothing written


def test_resume_refuses_another_dataset(tiny_config, tmp_path, capsys):
    data_dir = write_char_dataset(str(tmp_path / "data"), sample_text(20_000))
    cfg = dataclasses.replace(tiny_config, data_dir=data_dir, max_iters=2, eval_interval=2)
    assert run_main(train_module.main, cli_args(cfg), capsys)[0] == 0
    # the same folder prepared again from other text (same characters, other tokens)
    write_char_dataset(data_dir, sample_text(20_000)[::-1], force=True)
    code, _, err = run_main(train_module.main, cli_args(cfg) + ["--init_from=resume", "--max_iters=4"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {cfg.out_dir}/ckpt.pt was trained on another dataset than {data_dir} holds")
    assert load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))["iter_num"] == 2


def test_a_checkpoint_from_before_the_training_package_loads_samples_and_resumes(char_data, tmp_path, capsys):
    """tests/fixtures/centered_ckpt_5008509.pt was written by commit 5008509, before the checkpoint code
    moved into training/: a centered (AdvancedGPT, embeddings, momentum) run of the tiny model on
    the test text, 4 iterations. Today's code still loads it, rebuilds its model and resumes it."""
    import shutil

    import train_advanced_centered
    from training.checkpoint import model_from_checkpoint

    old = os.path.join(os.path.dirname(__file__), "fixtures", "centered_ckpt_5008509.pt")
    ckpt = load_checkpoint(old)
    assert ckpt["model_class"] == "AdvancedGPT" and ckpt["iter_num"] == 4
    model = model_from_checkpoint(ckpt, old)
    assert model.config.center_embeddings and model.config.centering_mode == "momentum"
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    shutil.copy(old, out_dir / "ckpt.pt")
    shutil.copy(old, out_dir / "best.pt")
    status, out, err = run_main(train_advanced_centered.main, [f"--out_dir={out_dir}", "--init_from=resume",
                                                              f"--data_dir={char_data}", "--max_iters=6"], capsys)
    assert status == 0, err
    assert "resuming from" in out and load_checkpoint(str(out_dir / "ckpt.pt"))["iter_num"] == 6


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
