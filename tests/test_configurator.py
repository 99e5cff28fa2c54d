import subprocess
import sys

import pytest

from configurator import ConfigError, load_config
from conftest import REPO_ROOT, run_main
from train import TrainConfig, main as train_main


def test_overrides_are_typed():
    cfg = load_config(TrainConfig, ["--learning_rate=3", "--batch_size=7", "--compile=true",
                                    "--bias=0", "--wandb_run_name=a=b", "--dropout=0.1"])
    assert cfg.learning_rate == 3.0 and isinstance(cfg.learning_rate, float)
    assert cfg.batch_size == 7 and cfg.compile is True and cfg.bias is False
    assert cfg.wandb_run_name == "a=b" and cfg.dropout == 0.1


@pytest.mark.parametrize("word,value", [("True", True), ("False", False), ("true", True),
                                        ("false", False), ("1", True), ("0", False)])
def test_boolean_words(word, value):
    assert load_config(TrainConfig, [f"--compile={word}"]).compile is value


@pytest.mark.parametrize("arg,message", [
    ("--lerning_rate=1", "unknown config key 'lerning_rate' (did you mean 'learning_rate'?)"),
    ("--batch_size=1.5", "--batch_size expects an integer, got '1.5'"),
    ("--compile=yes", "--compile expects a boolean"),
    ("--learning_rate=fast", "--learning_rate expects a number"),
    ("--batch_size", "expected --key=value"),
    ("--batch_size=0", "batch_size must be positive"),
    ("--init_from=gpt2", "init_from must be 'scratch' or 'resume'"),
    ("no/such/config.py", "config file not found: no/such/config.py"),
])
def test_bad_input_is_one_clear_error(arg, message):
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, [arg])
    assert message in str(e.value)


def test_config_files_include_and_are_checked(tmp_path):
    base = tmp_path / "base.py"
    base.write_text("batch_size = 5\nlearning_rate = 2\n_helper = 3\n")
    child = tmp_path / "child.py"
    child.write_text('include("base.py")\nn_layer = 3\n')
    cfg = load_config(TrainConfig, [str(child), "--batch_size=9"])
    assert (cfg.batch_size, cfg.learning_rate, cfg.n_layer) == (9, 2.0, 3)
    (tmp_path / "typo.py").write_text("n_layers = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'n_layer'"):
        load_config(TrainConfig, [str(tmp_path / "typo.py")])
    (tmp_path / "wrongtype.py").write_text("batch_size = 'big'\n")
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        load_config(TrainConfig, [str(tmp_path / "wrongtype.py")])


def test_command_line_exits_2_with_one_line(capsys, monkeypatch):
    r = subprocess.run([sys.executable, "train.py", "config/train_shakespeare_char_cpu.py",
                        "--lerning_rate=1"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: unknown config key 'lerning_rate' (did you mean 'learning_rate'?)"
    monkeypatch.chdir(REPO_ROOT)
    status, _, err = run_main(train_main, ["config/missing.py"], capsys)  # the same path, in this process
    assert status == 2 and err.strip() == "error: config file not found: config/missing.py"
