"""Training with detailed per-iteration logging (scripts/train_with_logging.py): detailed.jsonl."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO_ROOT, SCRIPTS, TINY, cli_args, results


def test_detailed_logging(tiny_config):
    args = [f"--data_dir={tiny_config.data_dir}", f"--out-dir={tiny_config.out_dir}", *TINY,  # either spelling
            "--max_iters=6", "--center_embeddings=True", "--center_v=True", "--centering_mode=momentum",
            "--grad_clip=1e-3"]  # a clip far below the norms: they are logged before it
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_with_logging.py"), *args],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    lines = results(os.path.join(tiny_config.out_dir, "detailed.jsonl"))
    assert [x["iter"] for x in lines] == list(range(6))
    assert all(x["grad_norm"] > 1e-2 for x in lines)  # before clipping (after it: at most 1e-3)
    first = lines[-1]
    assert set(first["grad_norm_by_layer"]) == {"embeddings", "block0", "ln_f"}  # every parameter, by layer
    by_layer = first["grad_norm_by_layer"]
    assert abs(sum(v * v for v in by_layer.values()) ** 0.5 - first["grad_norm"]) < 1e-6 * first["grad_norm"] + 1e-9
    assert set(first["center_norm"]) == {"embeddings", "v"} and first["center_norm"]["v"] > 0


@pytest.mark.slow  # starts training subprocesses
def test_detailed_log_holds_one_runs_records(tiny_config):
    script = os.path.join(REPO_ROOT, "scripts", "train_with_logging.py")
    args = cli_args(dataclasses.replace(tiny_config, max_iters=4, eval_interval=2))
    detailed = lambda: [r["iter"] for r in map(json.loads, open(os.path.join(tiny_config.out_dir, "detailed.jsonl")))]
    for extra, iters in ((["--max_iters=4"], [0, 1, 2, 3]), (["--max_iters=2", "--overwrite=True"], [0, 1]),
                         (["--max_iters=3", "--init_from=resume"], [0, 1, 2])):
        r = subprocess.run([sys.executable, script, *args, *extra], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
        assert detailed() == iters  # a replaced run's records go with it; a resumed run's stay once
