"""Both ways with upstream nanoGPT: our runs (plain, folded) in its sample.py, model.py and train.py
--init_from=resume; its runs through scripts/import_nanogpt.py into our sample.py and train.py.
Upstream is the read-only checkout ../shared/peers/nanoGPT, run as its own scripts (subprocesses)
in a work folder holding copies of them and a data/ folder, as the README tells users to."""

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
import torch

import export_hf  # the scripts folder is on sys.path (conftest.py)
import import_nanogpt
import fold_centering as fold_script
import sample as sample_module
import train as train_module
from benchmarking import write_paired_data
from files import FileLock
from conftest import REPO_ROOT, TINY_MODEL, run_main, write_char_dataset
from model import GPT, GPTConfig
from model_advanced_centering import AdvancedGPT, AdvancedGPTConfig
from sample import SampleConfig, sample
from train import TrainConfig, train
from training import TrainingError
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.run_folder import RUN_LOCK
from train_advanced_centered import CenteredTrainConfig

NANOGPT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "peers", "nanoGPT")
NANOGPT_FILES = ("train.py", "sample.py", "model.py", "configurator.py")
needs_nanogpt = pytest.mark.skipif(not all(os.path.isfile(os.path.join(NANOGPT, f)) for f in NANOGPT_FILES),
                                   reason=f"upstream nanoGPT is not checked out at {NANOGPT}")
PROMPT, NEW_TOKENS = "First", 40  # 40 new tokens: past the tiny models' block_size of 16
# a text a tiny model learns in 80 iterations well enough that its greedy continuation is no
# single repeated character (on the test text it would be)
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 600
TRAINING = dict(max_iters=80, eval_interval=40, learning_rate=1e-2, min_lr=1e-3)
quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture
def work(tmp_path):
    """A folder to run upstream's scripts in: copies of them (its checkout stays untouched) and
    data/, where they look for data/<dataset>/."""
    folder = tmp_path / "work"
    (folder / "data").mkdir(parents=True)
    for name in NANOGPT_FILES:
        shutil.copy(os.path.join(NANOGPT, name), folder / name)
    return folder


def upstream(work, script, *args):
    """Run upstream's script in work; its stdout (a one-line failure shows its stderr's end)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, script, *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def upstream_sample(work, out_dir):
    """Upstream's sample.py, greedy (top_k=1), one sample: (its text, its stdout)."""
    out = upstream(work, "sample.py", f"--out_dir={out_dir}", "--device=cpu", "--dtype=float32", "--num_samples=1",
                   f"--max_new_tokens={NEW_TOKENS}", "--top_k=1", f"--start={PROMPT}")
    return out.rsplit("\n---------------\n", 1)[0].split("/meta.pkl...\n", 1)[-1], out


def our_sample(out_dir):
    greedy = SampleConfig(out_dir=str(out_dir), start=PROMPT, num_samples=1, max_new_tokens=NEW_TOKENS, top_k=1,
                          device="cpu")
    text = sample(greedy, quiet)[0]
    assert len(text) == len(PROMPT) + NEW_TOKENS and len(set(text[len(PROMPT):])) > 5, text  # no 40 spaces
    return text


def upstream_model_class():
    """upstream's model.py, imported from its checkout under a name of its own (ours is `model`)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", os.path.join(NANOGPT, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upstream_logits(ckpt, idx):
    """Logits at every position of idx from upstream's GPT holding ckpt's weights (strictly loaded)."""
    nano = upstream_model_class()
    model = nano.GPT(nano.GPTConfig(**ckpt["model_args"])).eval()
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    with torch.no_grad():
        return model(idx, targets=idx)[0]  # with targets: the logits of every position


def our_logits(ckpt, idx):
    with torch.no_grad():
        return model_from_checkpoint(ckpt).eval()(idx, all_logits=True)[0]


def upstream_resume(work, out_dir, iters):
    """Upstream's train.py --init_from=resume on out_dir (the tiny model's batch shape), iters more
    iterations; returns the checkpoint it writes."""
    ckpt = torch.load(os.path.join(out_dir, "ckpt.pt"), weights_only=True)
    start = ckpt["iter_num"]
    out = upstream(work, "train.py", "--init_from=resume", f"--out_dir={out_dir}", "--dataset=shakespeare_char",
                   "--device=cpu", "--dtype=float32", "--compile=False", "--block_size=16", "--batch_size=4",
                   f"--max_iters={start + iters}", f"--eval_interval={iters}", "--eval_iters=2", "--log_interval=1",
                   "--warmup_iters=2", f"--lr_decay_iters={start + iters}")
    assert f"Resuming training from {out_dir}" in out and f"iter {start + iters - 1}: loss" in out, out
    return torch.load(os.path.join(out_dir, "ckpt.pt"), weights_only=True)


def our_char_run(work, model_cls=GPT, config_cls=TrainConfig, **extra):
    """A tiny run of ours on characters, its data at work/data/shakespeare_char: the name upstream's
    own character data has too, so only our meta.pkl there makes upstream decode it right."""
    data_dir = write_char_dataset(str(work / "data" / "shakespeare_char"), TEXT)
    model_config_cls = GPTConfig if model_cls is GPT else AdvancedGPTConfig
    cfg = config_cls(**{**TINY_MODEL, **TRAINING}, **extra, data_dir=data_dir, out_dir=str(work / "ours"))
    train(cfg, model_cls, model_config_cls, log=quiet)
    return cfg.out_dir


@pytest.mark.slow  # upstream's scripts in three interpreters
@needs_nanogpt
def test_our_run_in_upstream_sample_model_and_resume(work):
    out_dir = our_char_run(work)
    text, out = upstream_sample(work, out_dir)
    assert "Loading meta from data/shakespeare_char/meta.pkl" in out  # ours, not a GPT-2 fallback
    assert text == our_sample(out_dir)
    ckpt = load_checkpoint(os.path.join(out_dir, "ckpt.pt"))
    idx = torch.randint(0, ckpt["model_args"]["vocab_size"], (2, 16))
    ours, theirs = our_logits(ckpt, idx), upstream_logits(ckpt, idx)
    assert ours.std() > 0.1 and torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()

    resumed = upstream_resume(work, out_dir, 2)
    assert resumed["iter_num"] == 82 and set(resumed["model"]) == set(ckpt["model"])


@pytest.mark.slow  # upstream's scripts in two interpreters
@needs_nanogpt
def test_folded_run_in_upstream_sample_and_resume_and_ours(work, capsys):
    flags = dict(center_embeddings=True, center_qk=True, center_v=True, centering_mode="momentum")
    centered = our_char_run(work, AdvancedGPT, CenteredTrainConfig, **flags)
    status, _, err = run_main(import_nanogpt.main, [f"--in_dir={centered}", f"--data_dir={work / 'data'}",
                                                    f"--out_dir={work / 'x'}"], capsys)
    assert status == 2 and err.count("\n") == 1 and "upstream nanoGPT cannot read either: fold it first" in err, err

    folded = str(work / "folded")
    assert run_main(fold_script.main, [f"--in_dir={centered}", f"--out_dir={folded}"], capsys)[0] == 0
    text, _ = upstream_sample(work, folded)
    assert text == our_sample(folded) == our_sample(centered)
    resumed = upstream_resume(work, folded, 2)
    assert resumed["iter_num"] == 82

    # ours fine-tunes a fold too (upstream's resume has replaced that one with a checkpoint of its own)
    folded = str(work / "folded_again")
    assert run_main(fold_script.main, [f"--in_dir={centered}", f"--out_dir={folded}"], capsys)[0] == 0
    status, out, err = run_main(train_module.main, [f"--out_dir={folded}", "--init_from=resume", "--max_iters=82",
                                                    "--device=cpu"], capsys)
    assert status == 0 and "carries no batch sampler or random state" in out and "done: 82 iterations" in out, err


@pytest.mark.slow  # upstream's scripts in two interpreters
@needs_nanogpt
def test_upstream_run_imported_samples_and_resumes_in_ours(work, tmp_path, capsys):
    write_paired_data(TEXT, str(work / "data" / "tiny"), str(tmp_path / "unused"))  # as upstream's prepare.py
    upstream(work, "train.py", "--dataset=tiny", "--out_dir=run", "--device=cpu", "--dtype=float32", "--compile=False",
             "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--bias=True",
             "--dropout=0.0", "--max_iters=80", "--eval_interval=40", "--eval_iters=2", "--log_interval=40",
             "--learning_rate=1e-2", "--min_lr=1e-3", "--warmup_iters=2", "--lr_decay_iters=80",
             "--gradient_accumulation_steps=1")
    imported, data_dir = str(tmp_path / "imported"), str(tmp_path / "imported_data")
    args = [f"--in_dir={work / 'run'}", f"--data_dir={work / 'data' / 'tiny'}", f"--out_dir={imported}",
            f"--dataset_dir={data_dir}"]
    status, out, err = run_main(import_nanogpt.main, args, capsys)
    assert status == 0 and "imported nanoGPT's run at iteration 80" in out, err
    assert sorted(os.listdir(imported)) == ["best.pt", "ckpt.pt", RUN_LOCK]
    assert {"meta.json", "meta.pkl", "train.bin", "val.bin", "test.bin"} <= set(os.listdir(data_dir))

    theirs = torch.load(os.path.join(work, "run", "ckpt.pt"), weights_only=True)
    ckpt = load_checkpoint(os.path.join(imported, "ckpt.pt"))
    assert ckpt["config"]["learning_rate"] == 1e-2 and ckpt["config"]["data_dir"] == os.path.abspath(data_dir)
    idx = torch.randint(0, ckpt["model_args"]["vocab_size"], (2, 16))
    assert torch.allclose(our_logits(ckpt, idx), upstream_logits(theirs, idx), atol=1e-5)
    assert our_sample(imported) == upstream_sample(work, "run")[0]

    # ours resumes it: upstream's optimizer state, a fresh sampler and RNG (one line)
    status, out, err = run_main(train_module.main, [f"--out_dir={imported}", "--init_from=resume", "--max_iters=84",
                                                    "--device=cpu"], capsys)
    assert status == 0 and "resuming from" in out and "done: 84 iterations" in out, err
    assert [line for line in out.splitlines() if "carries no batch sampler or random state" in line] != []
    assert load_checkpoint(os.path.join(imported, "ckpt.pt"))["iter_num"] == 84
    # the fold sees a plain GPT of ours, not a foreign checkpoint
    status, _, err = run_main(fold_script.main, [f"--in_dir={imported}", f"--out_dir={tmp_path / 'f'}"], capsys)
    assert status == 1 and "holds a GPT, not a centered model" in err, err
    if importlib.util.find_spec("transformers") is not None:  # optional; the export takes it as any plain run
        status, out, err = run_main(export_hf.main, [f"--in_dir={imported}", f"--out_dir={tmp_path / 'hf'}"], capsys)
        assert status == 0 and "and its tokenizer (characters)" in out, err


def upstream_like_checkpoint(folder, vocab_size=9):
    """A checkpoint with the keys upstream's train.py writes (for the error paths, which need no
    upstream checkout). vocab_size: 9, the characters of "hello world, ", as upstream sizes a
    character model's token rows to its meta.pkl."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=16, bias=False))
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    ckpt = {"model": model.state_dict(), "model_args": dataclasses.asdict(model.config),
            "optimizer": optimizer.state_dict(), "iter_num": 5, "best_val_loss": torch.tensor(2.5),
            "config": {"dataset": "shakespeare_char", "learning_rate": 1e-3, "batch_size": 4}}
    os.makedirs(folder, exist_ok=True)
    save_checkpoint(ckpt, os.path.join(folder, "ckpt.pt"))
    return folder


def test_our_tools_given_an_upstream_checkpoint_say_to_import_it(tmp_path, capsys):
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    with pytest.raises(TrainingError, match="is upstream nanoGPT's: import it first with python scripts/import_nanogpt.py"):
        load_checkpoint(os.path.join(folder, "ckpt.pt"))
    for main, args in ((sample_module.main, [f"--out_dir={folder}", "--device=cpu"]),
                       (fold_script.main, [f"--in_dir={folder}", f"--out_dir={tmp_path / 'f'}"]),
                       (train_module.main, [f"--out_dir={folder}", "--init_from=resume", "--device=cpu"])):
        status, _, err = run_main(main, args, capsys)
        assert status == 1 and err.count("\n") == 1 and "import it first" in err, err


def test_import_refuses_a_run_folder_and_ours(tmp_path, capsys):
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    data = tmp_path / "data"
    data.mkdir()
    write_paired_data("hello world, " * 400, str(data), str(tmp_path / "unused"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.jsonl").write_text('{"type": "eval", "iter": 0, "val_loss": 3.0}\n')
    base = [f"--data_dir={data}", f"--dataset_dir={tmp_path / 'ours_data'}"]
    for in_dir, out_dir, message in ((folder, folder, "is --in_dir"),
                                     (folder, taken, "already holds a run (metrics.jsonl)")):
        status, _, err = run_main(import_nanogpt.main, [f"--in_dir={in_dir}", f"--out_dir={out_dir}", *base], capsys)
        assert status == 2 and err.count("\n") == 1 and message in err, err
    with FileLock(str(taken / RUN_LOCK)):  # a trainer runs there: even --overwrite=True waits for it
        status, _, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--out_dir={taken}",
                                                        "--overwrite=True", *base], capsys)
    assert status == 1 and err.count("\n") == 1 and "another process (a trainer, a fold or an import) is writing in" in err, err
    assert sorted(os.listdir(taken)) == ["metrics.jsonl", RUN_LOCK] and not (tmp_path / "ours_data").exists()
    # a character vocabulary that is not the model's (its 9 characters, 40 token rows; 9, 10 rows), or
    # a GPT-2 one (no meta.pkl) for a 9-row model: refused in one line, nothing written
    wide = upstream_like_checkpoint(str(tmp_path / "up40"), vocab_size=40)
    no_meta = tmp_path / "no_meta"
    no_meta.mkdir()
    for in_dir, data_dir, message in ((wide, data, "has 40 token rows, but"), (folder, no_meta, "has 9 token rows, but")):
        status, _, err = run_main(import_nanogpt.main, [f"--in_dir={in_dir}", f"--out_dir={tmp_path / 'mismatch'}",
                                                        f"--data_dir={data_dir}", f"--dataset_dir={tmp_path / 'ours_data'}"],
                                  capsys)
        assert status == 1 and err.count("\n") == 1 and message in err and "not its dataset" in err, err
        assert not (tmp_path / "mismatch").exists() and not (tmp_path / "ours_data").exists()
    # a meta.pkl without stoi, or with one that disagrees with itos: one line
    import pickle
    with open(data / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    bad = tmp_path / "bad_meta"
    bad.mkdir()
    for broken, message in (({k: v for k, v in meta.items() if k != "stoi"}, "is not a nanoGPT character vocabulary"),
                            ({**meta, "stoi": {c: 0 for c in meta["stoi"]}}, "its stoi and itos disagree")):
        with open(bad / "meta.pkl", "wb") as f:
            pickle.dump(broken, f)
        status, _, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--out_dir={tmp_path / 'mismatch'}",
                                                        f"--data_dir={bad}", f"--dataset_dir={tmp_path / 'ours_data'}"],
                                  capsys)
        assert status == 1 and err.count("\n") == 1 and message in err, err
    # upstream's vocabulary, 9 characters, is the model's; --overwrite replaces the run
    status, out, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--out_dir={taken}", "--overwrite=True",
                                                      *base], capsys)
    assert status == 0 and "deleting the previous run's metrics.jsonl" in out, err
    assert sorted(os.listdir(taken)) == ["best.pt", "ckpt.pt", RUN_LOCK]
    ckpt = load_checkpoint(str(taken / "ckpt.pt"))
    assert ckpt["best_val_loss"] == float("inf") and ckpt["imported_from"]["best_val_loss"] == 2.5
    assert ckpt["dataset_meta"]["chars"] == sorted(set("hello world, "))
    # a checkpoint of ours is not imported
    status, _, err = run_main(import_nanogpt.main, [f"--in_dir={taken}", f"--out_dir={tmp_path / 'again'}", *base],
                              capsys)
    assert status == 2 and err.count("\n") == 1 and "already a checkpoint of this project" in err, err


def test_an_import_resumes_with_a_fresh_sampler_said_in_one_line(tmp_path, capsys):
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    write_paired_data("hello world, " * 400, str(tmp_path / "data"), str(tmp_path / "unused"))
    run = str(tmp_path / "run")
    status, _, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--data_dir={tmp_path / 'data'}",
                                                    f"--out_dir={run}", f"--dataset_dir={tmp_path / 'ours'}"], capsys)
    assert status == 0, err
    status, out, err = run_main(train_module.main, [f"--out_dir={run}", "--init_from=resume", "--max_iters=7",
                                                    "--device=cpu"], capsys)
    notes = [line for line in out.splitlines() if "carries no batch sampler or random state" in line]
    assert status == 0 and len(notes) == 1 and "start afresh from seed 1337" in notes[0], err
    assert "resuming from" in out and "done: 7 iterations" in out
    assert sample_module.main([f"--out_dir={run}", "--device=cpu", "--num_samples=1", "--max_new_tokens=5",
                               "--start=hello"]) == 0


def test_an_import_for_sampling_only_samples_and_says_what_resuming_needs(tmp_path, capsys):
    """Upstream's data folder with its meta.pkl but no token files: the run samples; resuming or
    evaluating it is refused in one line that says to import it again with its data."""
    import eval_noise
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    data = tmp_path / "data"
    write_paired_data("hello world, " * 400, str(data), str(tmp_path / "unused"))
    for split in ("train", "val"):
        os.remove(data / f"{split}.bin")
    run = str(tmp_path / "run")
    status, out, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--data_dir={data}", f"--out_dir={run}",
                                                      f"--dataset_dir={tmp_path / 'ours'}"], capsys)
    assert status == 0 and "imported for sampling only" in out, err
    assert not (tmp_path / "ours").exists()
    assert sample_module.main([f"--out_dir={run}", "--device=cpu", "--num_samples=1", "--max_new_tokens=5",
                               "--start=hello"]) == 0
    # a dataset of the same vocabulary is no proof of the run's data: refused, not trusted
    same_vocabulary = tmp_path / "other"
    write_paired_data("hello world, " * 400, str(same_vocabulary), str(tmp_path / "unused2"))
    for main, args in ((train_module.main, [f"--out_dir={run}", "--init_from=resume", "--device=cpu", "--max_iters=7"]),
                       (train_module.main, [f"--out_dir={run}", "--eval_only=True", "--device=cpu",
                                            f"--data_dir={same_vocabulary}"]),
                       (eval_noise.main, [f"--out_dir={run}"]),
                       (eval_noise.main, [f"--out_dir={run}", f"--data_dir={same_vocabulary}"])):
        status, _, err = run_main(main, args, capsys)
        assert status != 0 and err.count("\n") == 1, err
        assert "imported for sampling only" in err and "import it again with a --data_dir that holds" in err, err


def test_a_run_on_a_dataset_whose_meta_has_only_its_vocabulary_still_resumes(tmp_path, capsys):
    """The sampling-only refusal is for imports: a run of ours on a hand-made dataset (meta.json
    with a vocabulary, no counts, no fingerprint) resumes as before."""
    import json
    data = write_char_dataset(str(tmp_path / "data"), "hello world, " * 400)
    meta_path = os.path.join(data, "meta.json")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump({k: meta[k] for k in ("tokenizer", "vocab_size", "chars")}, f)
    run = str(tmp_path / "run")
    base = [f"--{k}={v}" for k, v in TINY_MODEL.items()] + [f"--out_dir={run}", f"--data_dir={data}"]
    status, _, err = run_main(train_module.main, [*base, "--max_iters=4", "--eval_interval=4"], capsys)
    assert status == 0, err
    status, out, err = run_main(train_module.main, [*base, "--init_from=resume", "--max_iters=6"], capsys)
    assert status == 0 and "done: 6 iterations" in out, err


def test_an_import_whose_data_cannot_be_written_is_one_line_and_leaves_no_run(tmp_path):
    """A file where --dataset_dir goes, and a full disk while the tokens are copied (the kernel's
    RLIMIT_FSIZE fails writes past 20 KB, as ENOSPC would): one line (exit 2 and 1), no run folder left
    (the checkpoint is written after its data) and no dataset that looks prepared."""
    import resource
    from conftest import ENV, one_line
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    data = tmp_path / "data"
    write_paired_data("hello world, " * 4000, str(data), str(tmp_path / "unused"))
    (tmp_path / "a_file").write_text("not a folder")
    for dataset_dir, limit, expected in ((tmp_path / "a_file", None, 2), (tmp_path / "ours", 20_000, 1)):
        run = tmp_path / f"run_{dataset_dir.name}"
        args = [f"--in_dir={folder}", f"--data_dir={data}", f"--out_dir={run}", f"--dataset_dir={dataset_dir}"]
        limited = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))) if limit else None
        result = subprocess.run([sys.executable, os.path.join("scripts", "import_nanogpt.py"), *args], cwd=REPO_ROOT,
                                capture_output=True, text=True, env=ENV, preexec_fn=limited)
        assert result.returncode == expected and one_line(result.stderr) and str(dataset_dir) in result.stderr, result.stderr
        assert not run.exists() and not (limit and (dataset_dir / "meta.json").exists())


def test_an_import_whose_source_cannot_be_read_names_the_source(tmp_path, capsys, monkeypatch):
    """Upstream's val.bin unreadable (permission denied, which root never meets: the module's open
    refuses it here): the one line names that file, not our dataset, and nothing is left behind."""
    from conftest import one_line
    from interop import nanogpt
    folder = upstream_like_checkpoint(str(tmp_path / "up"))
    data = tmp_path / "data"
    write_paired_data("hello world, " * 400, str(data), str(tmp_path / "unused"))
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if str(path) == str(data / "val.bin"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(nanogpt, "open", refusing_open, raising=False)
    status, _, err = run_main(import_nanogpt.main, [f"--in_dir={folder}", f"--data_dir={data}",
                                                    f"--out_dir={tmp_path / 'run'}", f"--dataset_dir={tmp_path / 'ours'}"],
                              capsys)
    assert status == 1 and one_line(err), err
    assert f"cannot read upstream's {data / 'val.bin'}: Permission denied" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "ours").exists()
