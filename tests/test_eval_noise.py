"""The precision of a validation loss (scripts/eval_noise.py): exact figure and random-window estimates."""
import os
import subprocess
import sys

from conftest import ENV, SCRIPTS, write_char_dataset


def test_eval_noise(tiny_config):
    from train import train
    train(tiny_config, log=lambda *a: None)
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}",
                        "--windows=20", "--trials=5"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    exact = float(r.stdout.split("non-overlapping windows: ")[1].split()[0])
    assert 0 < exact < 10 and "estimates from 20 random windows (5 trials)" in r.stdout
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}x"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: no checkpoint at ") and r.stderr.count("\n") == 1
    other = write_char_dataset(os.path.join(os.path.dirname(tiny_config.out_dir), "other_data"), "a different text. " * 300)
    for bad, message in ((f"--data_dir={other}", "was trained on another dataset than"), ("--windows=0", "at least 1"),
                         ("--trials=-3", "at least 1")):
        r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}",
                            bad], capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
