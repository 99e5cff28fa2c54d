"""
Which runs a sweep does: the variants (config files in config/), the centering modes, seeds,
iteration counts and any other training key given as a grid axis. A run is named by a readable,
stable id that is also its folder name:

    embeddings_centered-adaptive-s1-i1000                      variant, mode, seed, iterations
    embeddings_centered-adaptive-s1-i1000-learning_rate=3e-3   plus one suffix per --grid key

Everything a user typed (variant and mode names, overrides, grid values) is checked here, by the
configurator, before any run starts.
"""

import dataclasses
import itertools
import os
import re
from dataclasses import dataclass

from configurator import ConfigError, load_config, number_or_text, repeated
from model_advanced_centering import CENTERING_MODES
from train import preflight
from training import REPO_ROOT
from train_advanced_centered import CenteredTrainConfig

CONFIG_DIR = os.path.join(REPO_ROOT, "config")
BASELINE = "baseline"
BASELINE_MODE = "none"  # the baseline centers nothing: its runs have this mode, not a centering mode
MODES = CENTERING_MODES
# Keys the sweep sets itself for every run: an axis of their own, or where the run lives.
SWEEP_KEYS = {"seed": "--seeds", "max_iters": "--iters", "lr_decay_iters": "--iters",
              "centering_mode": "--modes", "out_dir": "--out_root", "init_from": None, "overwrite": None,
              "eval_only": None}  # (an evaluation alone would be recorded as a finished run)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")


def variant_names(config_dir=CONFIG_DIR):
    """The variants: config files built on the shared experiment protocol (they include
    experiment_base.py). The baseline first, then by name."""
    if not os.path.isdir(config_dir):
        raise ConfigError(f"--config_dir={config_dir} is not a folder (of the variants' config files)")
    names = []
    for file in sorted(os.listdir(config_dir)):
        path = os.path.join(config_dir, file)
        if file.endswith(".py") and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:  # not UTF-8: no variant, not a traceback
                if 'include("experiment_base.py")' in f.read():
                    names.append(file[:-3])
    return sorted(names, key=lambda n: (n != BASELINE, n))


def variant_config(variant, config_dir=CONFIG_DIR):
    return os.path.join(config_dir, f"{variant}.py")


@dataclass(frozen=True)
class Run:
    variant: str
    mode: str  # BASELINE_MODE for the baseline
    seed: int
    iters: int
    params: tuple = ()  # ((key, value text), ...) from --grid, sorted by key

    @property
    def run_id(self):
        return f"{self.variant}-{self.mode}-s{self.seed}-i{self.iters}{self._suffix()}"

    @property
    def group(self):
        """The run id without the seed: runs that differ only by seed."""
        return f"{self.variant}-{self.mode}-i{self.iters}{self._suffix()}"

    def _suffix(self):
        return "".join(f"-{key}={_ID_UNSAFE.sub('_', value)}" for key, value in self.params)

    def train_args(self, overrides=(), config_dir=CONFIG_DIR):
        """The config file and --key=value arguments of this run, with the sweep's overrides (its
        folder and the start/resume flags excluded)."""
        args = [variant_config(self.variant, config_dir), *overrides, f"--seed={self.seed}",
                f"--max_iters={self.iters}", f"--lr_decay_iters={self.iters}"]
        if self.mode != BASELINE_MODE:
            args.append(f"--centering_mode={self.mode}")
        return args + [f"--{key}={value}" for key, value in self.params]

    def describe(self):
        """The run's fields, as written to run.json and the results records."""
        return {"run_id": self.run_id, "group": self.group, "variant": self.variant, "mode": self.mode,
                "seed": self.seed, "iters": self.iters, "params": dict(self.params)}


def parse_grid(items):
    """['learning_rate=3e-4,1e-3', 'n_layer=2,4'] -> {'learning_rate': ['3e-4', '1e-3'], ...}."""
    grid = {}
    for item in items or ():
        key, eq, values = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")  # max-iters is max_iters, as on the command line
        if not eq or not key or not values:
            raise ConfigError(f"--grid expects key=value1,value2,..., got '{item}'")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice")
        grid[key] = [v for v in values.split(",") if v != ""]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values, got '{item}'")
        twice = repeated(grid[key], number_or_text)  # 1e-3 and 0.001: one grid point trained twice
        if twice:
            raise ConfigError(f"--grid {key} {twice}")
    return grid


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def check_sweep_name(name):
    """A sweep's name is its folder under out_root: one plain folder name, so that nothing is
    written outside out_root (no '/', '..', '.' or absolute path)."""
    if not _PLAIN_NAME.fullmatch(name or ""):
        raise ConfigError(f"--name must be a plain folder name (letters, digits, _ . + = -, not starting "
                          f"with . or -), got '{name}'")
    return name


def plan_runs(variants, modes, seeds, iters, grid=None):
    """Every combination, by iteration count, variant, mode, grid point, then seed. The baseline
    runs once per grid point and seed, in BASELINE_MODE, whatever the modes."""
    grid = grid or {}
    keys = sorted(grid)
    points = [tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    runs = []
    for n in iters:
        for variant in variants:
            for mode in ([BASELINE_MODE] if variant == BASELINE else modes):
                for params in points:
                    runs.extend(Run(variant, mode, seed, n, params) for seed in seeds)
    return runs


def check_plan(runs, variants, modes, overrides=(), config_dir=CONFIG_DIR, starts=False, device=True):
    """Raise ConfigError, in one line, for anything in the plan that would make its runs fail
    to start: an unknown variant or mode, a key or value the configurator rejects (in the
    overrides, the grid, or their combination with a variant), a key the sweep sets itself,
    two runs with the same id, and with starts (the runs are to train, not only to be reported
    on) what train.preflight finds: a device or dtype this machine lacks (unless device=False:
    a Slurm job's machine), a dataset not prepared or too short for the block size. overrides: --key=value arguments and config overlay files (applied after the
    variant's config, in order). Returns the resolved training config of every run (by run id)."""
    for variant in variants:
        if not re.fullmatch(r"[A-Za-z0-9_]+", variant):  # a config file's name, never a path
            raise ConfigError(f"a variant is the name of a config file in {config_dir} (letters, digits, _), "
                              f"got '{variant}'")
        if not os.path.isfile(variant_config(variant, config_dir)):
            known = ", ".join(variant_names(config_dir)) if os.path.isdir(config_dir) else "none"
            raise ConfigError(f"no config for variant '{variant}' in {config_dir} (variants: {known})")
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"unknown mode '{mode}'; valid modes: {', '.join(MODES)}")
    override_keys = set()
    for arg in overrides:
        if not arg.startswith("--") and arg.endswith(".py"):
            continue  # a config overlay, read by the configurator below
        key, eq, _ = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not eq:
            raise ConfigError(f"training keys go as --key=value, got '{arg}'")
        override_keys.add(key)
    grid_keys = {key for run in runs for key, _ in run.params}
    for key in sorted(override_keys | grid_keys):
        if key in SWEEP_KEYS:
            instead = f" (use {SWEEP_KEYS[key]})" if SWEEP_KEYS[key] else ""
            raise ConfigError(f"the sweep sets {key} itself{instead}")
    both = override_keys & grid_keys
    if both:
        raise ConfigError(f"{', '.join(sorted(both))} is both a --grid axis and a --key=value override")
    configs, seen, started = {}, set(), set()
    for run in runs:
        if run.run_id in seen:
            raise ConfigError(f"two runs would share the id '{run.run_id}': grid values that differ "
                              f"only in characters not allowed in a folder name")
        seen.add(run.run_id)
        config = load_config(CenteredTrainConfig, run.train_args(overrides, config_dir))
        start = (config.device, config.dtype, config.data_dir, config.dataset, config.block_size)
        if starts and start not in started:  # the same settings are checked once, not once per run
            preflight(config, device=device)
            started.add(start)
        configs[run.run_id] = dataclasses.asdict(config)
    return configs
