"""The benchmarks (benchmarking.py, scripts/benchmark.py): log parsing, shared data, summary, own folder."""
import dataclasses
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from benchmarking import (RunResult, parse_nanogpt_log, parse_our_metrics, run_alternating, summarise,
                          write_paired_data)
from configurator import UserError
from conftest import ENV, REPO_ROOT, iters_of


def test_nanogpt_log_skips_warm_up_and_the_final_evaluation_iteration():
    lines = ["step 0: train loss 4.2000, val loss 4.1000"]
    lines += [f"iter {i}: loss 2.0, time {10.0 + i}ms, mfu -100.00%" for i in range(6)]
    lines += ["step 5: train loss 2.1000, val loss 2.2500", "iter 5: extra line ignored"]
    result = parse_nanogpt_log("\n".join(lines), skip=2)
    assert result.step_ms == [12.0, 13.0, 14.0]  # iterations 2-4: iteration 5's time holds the evaluation
    assert result.val_loss == 2.25
    with pytest.raises(UserError, match="no iteration or evaluation lines"):
        parse_nanogpt_log("Traceback: boom", skip=0)


def test_our_metrics_give_step_times_after_the_warm_up(tmp_path):
    records = [{"type": "eval", "iter": 0, "val_loss": 4.0, "val_bpb": 5.0}]
    records += [{"type": "train", "iter": i, "step_ms": float(i)} for i in range(1, 6)]
    records += [{"type": "eval", "iter": 5, "val_loss": 2.0, "val_bpb": 3.0}, {"type": "test", "iter": 5}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = parse_our_metrics(str(tmp_path), skip=2)
    assert (result.step_ms, result.val_loss, result.val_bpb) == ([3.0, 4.0, 5.0], 2.0, 3.0)


def test_both_trainers_get_the_same_token_ids(tmp_path):
    text = "hello world, " * 50
    write_paired_data(text, str(tmp_path / "nano"), str(tmp_path / "ours"))
    for split in ("train", "val"):
        a = np.fromfile(tmp_path / "nano" / f"{split}.bin", dtype=np.uint16)
        b = np.fromfile(tmp_path / "ours" / f"{split}.bin", dtype=np.uint16)
        assert np.array_equal(a, b) and len(a) > 0
    with open(tmp_path / "nano" / "meta.pkl", "rb") as f:
        nano_meta = pickle.load(f)
    ours = json.loads((tmp_path / "ours" / "meta.json").read_text())
    assert nano_meta["vocab_size"] == ours["vocab_size"] == len(set(text))
    assert [nano_meta["itos"][i] for i in range(ours["vocab_size"])] == ours["chars"]
    assert os.path.getsize(tmp_path / "ours" / "train.bin") // 2 == int(len(text) * 0.9)


def test_alternation_and_summary():
    calls = []
    got = run_alternating(3, ["a", "b"], lambda name, index: calls.append((name, index)) or index)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert got == [{"a": 0, "b": 0}, {"b": 1, "a": 1}, {"a": 2, "b": 2}]
    pairs = [(RunResult([20.0, 22.0, 24.0], 2.0, cpu_s=30.0), RunResult([10.0, 11.0, 12.0], 2.1, cpu_s=20.0)),
             (RunResult([30.0], 2.0, cpu_s=30.0), RunResult([10.0], 2.1, cpu_s=30.0))]
    s = summarise(pairs)
    assert s["ratios"] == [2.0, 3.0] and s["ratio_median"] == 2.5 and s["cpu_ratios"] == [1.5, 1.0]
    assert s["nanogpt_val"] == [2.0, 2.0] and s["ours_val"] == [2.1, 2.1]


@pytest.mark.slow  # starts training subprocesses
def test_benchmark_after_training_leaves_the_run_alone(tiny_config, tmp_path):
    config = tmp_path / "tiny.py"
    settings = {**dataclasses.asdict(tiny_config), "out_dir": str(tmp_path / "run"), "max_iters": 4, "eval_interval": 2}
    config.write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), str(config)], cwd=tmp_path,
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("metrics.jsonl", "best.pt")}
    for _ in range(2):  # the benchmark's own folder is replaced each time
        r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "benchmark.py"), str(config)],
                           cwd=tmp_path, capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
    # a folder the user names, in either spelling, is theirs: a run there is refused, not replaced
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "benchmark.py"), str(config),
                        f"--out-dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert iters_of(str(tmp_path / "out" / "benchmark")) == [0, 2, 4]


@pytest.mark.parametrize("script, argv", [
    ("benchmark_protocol", ["--before=no-such-revision", "--data_dir=none", "--iters=1", "--pairs=1"]),
    ("benchmark_vocab", ["--full_dir=none", "--compact_dir=none"]),
    ("benchmark_nanogpt", ["--nanogpt_dir=none"]),
])
def test_a_work_dir_that_is_not_empty_is_refused_unless_overwrite(script, argv, tmp_path, capsys):
    """A --work_dir the user names may hold a previous benchmark's runs and logs, which the
    benchmark would replace: refused in one line (exit 2) unless --overwrite=True; a file is no
    folder. The inputs here are missing, so a benchmark let through stops at them (exit 1)."""
    import importlib
    from conftest import run_main
    main = importlib.import_module(script).main
    work = tmp_path / "work"
    (work / "after_p0").mkdir(parents=True)
    (work / "after_p0.log").write_text("mine")
    status, out, err = run_main(main, [*argv, f"--work_dir={work}"], capsys)
    assert status == 2 and err.count("\n") == 1 and f"--work_dir={work} is not empty" in err, err
    assert "--overwrite=True" in err and (work / "after_p0.log").read_text() == "mine"
    status, out, err = run_main(main, [*argv, f"--work_dir={work}", "--overwrite=True"], capsys)
    assert status == 1 and "--work_dir" not in err, err
    (tmp_path / "a_file").write_text("mine")
    status, out, err = run_main(main, [*argv, f"--work_dir={tmp_path / 'a_file'}"], capsys)
    assert status == 2 and err.count("\n") == 1 and "is a file, not a folder" in err, err


@pytest.mark.parametrize("argv, message", [
    (["--n_head=5", "--n_embd=32"], "n_embd (32) must be divisible by n_head (5)"),
    (["--vocab_size=0"], "vocab_size must be positive, got 0"),
    (["--seed=99999999999999999999999"], "seed must be in [0, 2**62)"),
])
def test_sampling_benchmark_refuses_a_model_it_cannot_build_in_one_line(argv, message, capsys):
    import benchmark_sampling
    from conftest import run_main
    status, out, err = run_main(benchmark_sampling.main, argv, capsys)
    assert status == 2 and err.count("\n") == 1 and message in err and out == "", err


def test_centering_benchmark_times_each_variant_against_the_baseline_and_checks_its_lists(char_data, capsys):
    import benchmark_centering
    from conftest import TINY, run_main
    argv = ["--variants=baseline,value_centered", "--modes=adaptive,momentum", "--steps=12", "--compile=eager",
            f"--data_dir={char_data}", *TINY]
    status, out, err = run_main(benchmark_centering.main, argv, capsys)
    assert status == 0, err
    rows = [line.split(" | ")[:2] for line in out.splitlines() if line.startswith("| ") and "ms/step" not in line]
    assert rows == [["| baseline", "none"], ["| baseline (A/A)", "none"], ["| value_centered", "adaptive"],
                    ["| value_centered", "momentum"]]
    for bad, message in (("--modes=adaptive,adaptive", "lists adaptive twice"), ("--steps=10", "at least 11"),
                         ("--variants=nope", "no config for variant 'nope'")):
        status, _, err = run_main(benchmark_centering.main, [*argv, bad], capsys)
        assert status == 2 and err.count("\n") == 1 and message in err, err
