"""The precision of a validation loss (scripts/eval_noise.py): exact figure and random-window estimates."""
import os
import subprocess
import sys

from conftest import ENV, SCRIPTS, exact_split_loss, write_char_dataset


def test_eval_noise(tiny_config):
    from train import train
    train(tiny_config, log=lambda *a: None)
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}",
                        "--windows=20", "--trials=5"], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    exact = float(r.stdout.split("non-overlapping windows: ")[1].split()[0])
    expected, _, _ = exact_split_loss(os.path.join(tiny_config.out_dir, "ckpt.pt"), tiny_config.data_dir,
                                      tiny_config.block_size, "val")
    assert abs(exact - expected) < 1e-4  # printed to 4 decimals
    estimates = r.stdout.split("estimates from 20 random windows (5 trials): ")[1]
    mean, std = (float(estimates.split(f"{key} ")[1].split(",")[0]) for key in ("mean", "std"))
    assert std > 0 and abs(mean - exact) < 5 * std / 5 ** 0.5 + 0.02  # random windows of the same split
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}x"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: no checkpoint at ") and r.stderr.count("\n") == 1
    other = write_char_dataset(os.path.join(os.path.dirname(tiny_config.out_dir), "other_data"), "a different text. " * 300)
    for bad, message in ((f"--data_dir={other}", "was trained on another dataset than"), ("--windows=0", "at least 1"),
                         ("--trials=-3", "at least 1")):
        r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "eval_noise.py"), f"--out_dir={tiny_config.out_dir}",
                            bad], capture_output=True, text=True, env=ENV, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
