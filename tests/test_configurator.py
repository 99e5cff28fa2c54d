import dataclasses
import importlib
import os
import subprocess
import sys

import pytest

from configurator import ConfigError, describe, field_comments, load_config
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


def help_lines(script, capsys):
    """A script's --help, from its main() in this process (a subprocess would import torch again)."""
    sys.path.insert(0, os.path.join(REPO_ROOT, os.path.dirname(script)))
    try:
        module = importlib.import_module(os.path.splitext(os.path.basename(script))[0])
    finally:
        sys.path.pop(0)
    status, out, err = run_main(module.main, ["--help"], capsys)
    assert status == 0 and err == ""
    return {line.split("=")[0].strip(): line for line in out.splitlines() if line.startswith("  --")}


def test_help_gives_every_key_its_comment(capsys):
    lines = help_lines("train.py", capsys)
    assert lines["--learning_rate"] == "  --learning_rate=0.001  (float)  peak learning rate (after warmup)"
    assert lines["--out_dir"].startswith("  --out_dir='out/train'  (str)  the run's folder")
    assert set(lines) == {f"--{f.name}" for f in dataclasses.fields(TrainConfig)}
    without_help = [key for key, line in lines.items() if not line.split(")", 1)[1].strip()]
    assert without_help == []  # every key of train.py says what it is for


@dataclasses.dataclass
class _Base:
    plain: int = 1
    width: int = 2  # the base's words
    name: str = "a # b"  # a '#' inside a default is not a comment


@dataclasses.dataclass
class _Child(_Base):
    name: str = "c"  # the child's own words
    extra: float = 0.5


def test_describe_reads_trailing_comments_over_the_class_hierarchy():
    text = describe(_Child).splitlines()
    assert text == ["  --plain=1  (int)",  # no comment, no help
                    "  --width=2  (int)  the base's words",  # inherited
                    "  --name='c'  (str)  the child's own words",  # redeclared: the subclass's comment wins
                    "  --extra=0.5  (float)"]
    assert field_comments(_Base)["name"] == "a '#' inside a default is not a comment"


@pytest.mark.parametrize("script,folder", [("scripts/benchmark.py", "benchmark"),
                                           ("scripts/train_with_logging.py", "train_with_logging")])
def test_script_help_shows_the_folder_it_writes_to(script, folder, capsys):
    assert help_lines(script, capsys)["--out_dir"].startswith(f"  --out_dir={os.path.join('out', folder)!r}  (str)  ")


def test_sets_key_reads_either_spelling():
    from configurator import sets_key
    assert sets_key(["c.py", "--out-dir=x"], "out_dir") and sets_key(["--out_dir=x"], "out_dir")
    assert not sets_key(["--out_dir_extra=x", "out_dir=x"], "out_dir")


def test_hyphenated_keys_are_the_underscored_ones():
    """Users type --max-iters=5 and --dry-run: both spellings name the same key."""
    from configurator import load_config
    from train import TrainConfig
    assert load_config(TrainConfig, ["--max-iters=5", "--eval_interval=5"]).max_iters == 5


def test_every_key_of_every_command_has_its_help():
    """--help lists every key with what it is for (README): each config class a command takes has
    a trailing comment on every field, its bases' included."""
    commands = {"sample": "SampleConfig", "train": "TrainConfig", "train_advanced_centered": "CenteredTrainConfig",
                "eval_noise": None, "benchmark": "BenchmarkConfig", "benchmark_protocol": "ProtocolBenchConfig",
                "benchmark_vocab": "VocabBenchConfig", "export_hf": "ExportConfig", "import_nanogpt": "ImportConfig",
                "benchmark_sampling": "BenchConfig", "benchmark_nanogpt": "BenchConfig", "fold_centering": "FoldConfig"}
    missing = {}
    for module_name, class_name in commands.items():
        module = importlib.import_module(module_name)
        classes = [getattr(module, class_name)] if class_name else \
            [v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)]
        for cls in classes:
            comments = field_comments(cls)
            undocumented = [f.name for f in dataclasses.fields(cls) if not comments.get(f.name, "").strip()]
            if undocumented:
                missing[f"{module_name}.{cls.__name__}"] = undocumented
    assert missing == {}
