"""
Step time of every centering variant relative to the baseline, measured in one run, eager and
compiled:

    OMP_NUM_THREADS=1 python scripts/benchmark_centering.py [--modes=adaptive,momentum]
        [--steps=300] [--compile=both] [--key=value ...]

One model per variant is built from its config (the protocol in config/experiment_base.py plus
any --key=value overrides) and the models take training steps (forward, backward, AdamW) in
turn (in a new random order at every step) on the same batches, so drifts of a shared machine
fall on all of them alike. The figure per variant is its median step time; the first 10 steps
(warm-up and compilation) are left out. A second, identical baseline ("baseline (A/A)") shows
how large a difference the measurement noise alone makes.
"""

import os
import random
import statistics
import sys
import time

import _repo_root  # noqa: E402,F401  (the repository's modules become importable)
from _repo_root import ROOT as REPO_ROOT  # noqa: E402

import torch  # noqa: E402

from benchmarking import SKIP_FIRST  # noqa: E402
from configurator import CommandLine, ConfigError, at_least, comma_list, fail, load_config  # noqa: E402
from experiments.plan import BASELINE_MODE, check_plan, variant_names  # noqa: E402
from machine import machine_description  # noqa: E402
from model_advanced_centering import CENTERING_MODES, AdvancedGPT, AdvancedGPTConfig  # noqa: E402
from training import TrainingError  # noqa: E402
from training.batches import TokenData  # noqa: E402
from training.checkpoint import model_args_from  # noqa: E402
from train_advanced_centered import CenteredTrainConfig  # noqa: E402



def parse_args(argv):
    parser = CommandLine(__doc__)
    parser.add_argument("--variants", type=comma_list(str, unique=True), default=variant_names(),
                        help="comma-separated config names (default: every variant)")
    parser.add_argument("--modes", type=comma_list(str, unique=True), default=["adaptive"],
                        help=f"comma-separated, of {', '.join(CENTERING_MODES)}")
    parser.add_argument("--steps", type=at_least(SKIP_FIRST + 1), default=300, help="training steps of every model")
    parser.add_argument("--compile", choices=["eager", "compiled", "both"], default="both",
                        help="time the eager models, the compiled ones, or both")
    args, overrides = parser.parse_with_overrides(argv)
    try:
        check_plan([], args.variants, args.modes)
    except ConfigError as e:
        fail(str(e))
    return args, args.variants, args.modes, overrides


def build(variant, mode, overrides, vocab_size, compiled):
    """(model to call, the model itself, optimizer) of one variant; every variant starts from the
    same seed."""
    cfg = load_config(CenteredTrainConfig, [os.path.join(REPO_ROOT, "config", f"{variant}.py"),
                                            *overrides, f"--centering_mode={mode}"])
    torch.manual_seed(cfg.seed)
    model = AdvancedGPT(AdvancedGPTConfig(**model_args_from(cfg, AdvancedGPTConfig, vocab_size)))
    model.train()
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
    return (torch.compile(model) if compiled else model), model, optimizer


def timed_step(model, raw_model, optimizer, x, y):
    t0 = time.perf_counter()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    raw_model.after_optimizer_step()
    return time.perf_counter() - t0


def main(argv):
    args, variants, modes, overrides = parse_args(argv)
    settings = {"eager": [False], "compiled": [True], "both": [False, True]}[args.compile]
    # "baseline (A/A)" is a second, identical baseline: its difference is the measurement noise
    runs = [("baseline", BASELINE_MODE), ("baseline (A/A)", BASELINE_MODE)] + [
        (v, m) for v in variants if v != "baseline" for m in modes]
    print(f"machine: {machine_description()}")
    print(f"command: scripts/benchmark_centering.py {' '.join(argv)}")
    # every variant is a different model class layout for the same forward code: without a
    # higher limit dynamo would stop compiling after 8 of them and silently run the rest eagerly
    torch._dynamo.config.recompile_limit = 16 * len(runs)
    medians = {}
    try:
        protocol = load_config(CenteredTrainConfig, [os.path.join(REPO_ROOT, "config", "baseline.py"), *overrides])
        data = TokenData(protocol.data_dir or os.path.join(REPO_ROOT, "data", protocol.dataset), protocol.block_size)
        for compiled in settings:
            models = {run: build(run[0].split()[0], "adaptive" if run[1] == BASELINE_MODE else run[1], overrides,
                                 data.vocab_size, compiled) for run in runs}
            batches = torch.Generator().manual_seed(0)
            order = random.Random(0)
            times = {run: [] for run in runs}
            for _ in range(args.steps):
                offsets = torch.randint(0, data.max_offset("train") + 1, (protocol.batch_size,), generator=batches)
                x, y = data.windows("train", offsets.numpy())
                for run in order.sample(runs, len(runs)):  # each variant, this batch, in a random order
                    model, raw_model, optimizer = models[run]
                    times[run].append(timed_step(model, raw_model, optimizer, x, y))
            for run in runs:
                medians[run, compiled] = statistics.median(times[run][SKIP_FIRST:])
    except (ConfigError, TrainingError, ValueError) as e:
        fail(str(e))
    header = "| variant | mode |" + "".join(
        f" {'compiled' if c else 'eager'} ms/step | vs baseline |" for c in settings)
    print("\n" + header + "\n|" + "---|" * (2 + 2 * len(settings)))
    for run in runs:
        row = f"| {run[0]} | {run[1]} |"
        for compiled in settings:
            base = medians[("baseline", BASELINE_MODE), compiled]
            row += f" {medians[run, compiled] * 1000:.2f} | {100 * (medians[run, compiled] / base - 1):+.1f}% |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
