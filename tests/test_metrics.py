"""A run's metrics.jsonl (training/metrics.py): a torn last line, dropped on resume."""
import dataclasses
import os

import train as train_module
from conftest import cli_args, iters_of, run_main


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
