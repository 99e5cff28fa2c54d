"""A run's metrics.jsonl (training/metrics.py): a torn last line, dropped on resume; a full disk mid-write."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

import train as train_module
from conftest import ENV, REPO_ROOT, cli_args, iters_of, one_line, run_main, train_with_file_limit
from files import read_jsonl
from train import train


def test_resume_after_a_torn_metrics_line(tiny_config, capsys):
    """A full disk in the middle of a metrics write leaves half a line: the resume warns once,
    drops it and continues; a broken line before the last stops it in one line, exit 1."""
    first = dataclasses.replace(tiny_config, max_iters=4, eval_interval=2)
    assert run_main(train_module.main, cli_args(first), capsys)[0] == 0
    metrics = os.path.join(first.out_dir, "metrics.jsonl")
    torn = b'{"type": "train", "iter": 5, "lo'
    with open(metrics, "ab") as f:
        f.write(torn)
    resume = cli_args(dataclasses.replace(first, max_iters=6)) + ["--init_from=resume"]
    code, _, err = run_main(train_module.main, resume, capsys)
    assert code == 0 and err == f"warning: {metrics}: dropped a torn last line ({len(torn)} bytes, a write cut short)\n"
    assert iters_of(first.out_dir, "train") == [1, 2, 3, 4, 5, 6]  # every line whole again

    with open(metrics, encoding="utf-8") as f:
        lines = f.readlines()
    with open(metrics, "w", encoding="utf-8") as f:
        f.writelines(lines[:2] + ['{"type": "train", "it\n'] + lines[2:])
    code, _, err = run_main(train_module.main, resume[:-1] + ["--max_iters=8", "--init_from=resume"], capsys)
    assert code == 1 and err == f"error: {metrics}:3 is not a JSON record (a corrupt line before the last: repair or remove it)\n"


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
