"""
Paired speed comparison of this repository's trainer against upstream nanoGPT's `train.py`.

Both trainers get the same data (character-level tiny Shakespeare, identical token ids and the
same 90/10 train/val split), the same configuration (nanoGPT's documented CPU run, shortened) and
the same thread count, and run as separate processes in alternation, A B A B ..., so that a drift
of a shared machine's speed falls on both alike. Each run's per-iteration times are read from its
own log (nanoGPT's printed `time ...ms`, our metrics.jsonl `step_ms`; both cover a whole iteration
including batching and logging, neither covers evaluation); the first iterations are left out.
The figure that counts is the per-pair ratio of median iteration times, nanoGPT / ours (> 1: ours
is faster), summarised over the pairs.

The nanoGPT checkout is never written to: its train.py, model.py and configurator.py are copied to
a work folder, next to the prepared data (its own prepare script would download the text).
"""

import json
import os
import pickle
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass

import numpy as np

from configurator import ConfigError, UserError
from data.text_sources import char_ids, nanogpt_meta
from files import ensure_writable_folder
from training.metrics import METRICS_FILE, read_metrics

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
NANOGPT_ITER_LINE = re.compile(r"^iter (\d+): loss ([-\d.na]+), time ([\d.]+)ms")
NANOGPT_EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
SKIP_FIRST = 10  # warm-up iterations left out of a median step time


def cpu_run_settings(iters):
    """nanoGPT README's CPU run (config/train_shakespeare_char.py plus its command-line overrides),
    shortened to iters iterations with one evaluation at the end, logging every iteration."""
    return {"device": "cpu", "compile": False, "block_size": 64, "batch_size": 12, "n_layer": 4,
            "n_head": 4, "n_embd": 128, "dropout": 0.0, "max_iters": iters, "lr_decay_iters": iters,
            "eval_interval": iters, "log_interval": 1}


def write_paired_data(text, nanogpt_data_dir, our_data_dir):
    """Character-level ids of text (vocabulary: the sorted distinct characters, as both projects'
    prepare scripts number them), split 90/10 into train/val, written for both trainers."""
    ids, vocabulary = char_ids(text)
    ids = np.array(ids, dtype=np.uint16)
    n_train = int(len(ids) * 0.9)
    for folder in (nanogpt_data_dir, our_data_dir):
        os.makedirs(folder, exist_ok=True)
        ids[:n_train].tofile(os.path.join(folder, "train.bin"))
        ids[n_train:].tofile(os.path.join(folder, "val.bin"))
    with open(os.path.join(nanogpt_data_dir, "meta.pkl"), "wb") as f:
        pickle.dump(nanogpt_meta(vocabulary), f)
    meta = {**vocabulary, "source": "benchmark", "train_tokens": n_train, "val_tokens": len(ids) - n_train}
    with open(os.path.join(our_data_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f)


@dataclass
class RunResult:
    step_ms: list  # per-iteration times after the warm-up, ms
    val_loss: float
    val_bpb: float = float("nan")
    cpu_s: float = float("nan")  # CPU time of the whole process (user + system), all threads
    page_faults: int = 0  # minor page faults of the whole process

    @property
    def median_ms(self):
        return statistics.median(self.step_ms)


def parse_nanogpt_log(text, skip):
    """nanoGPT's stdout -> per-iteration ms (iterations skip .. last-1: its final iteration's time
    includes the final evaluation) and the last printed val loss."""
    times = {int(m[1]): float(m[3]) for m in map(NANOGPT_ITER_LINE.match, text.splitlines()) if m}
    evals = [float(m[3]) for m in map(NANOGPT_EVAL_LINE.match, text.splitlines()) if m]
    if not times or not evals:
        raise UserError("nanoGPT printed no iteration or evaluation lines; its output ends with:\n"
                        + "\n".join(text.splitlines()[-5:]))
    last = max(times)
    return RunResult([t for i, t in sorted(times.items()) if skip <= i < last], evals[-1])


def parse_our_metrics(run_dir, skip):
    """A run's metrics.jsonl (training.metrics) -> per-iteration ms (records after iteration skip)
    and the last val loss."""
    records = read_metrics(run_dir)
    steps = [r["step_ms"] for r in records if r.get("type") == "train" and r["iter"] > skip]
    evals = [r for r in records if r.get("type") == "eval"]
    if not steps or not evals:
        raise UserError(f"{os.path.join(run_dir, METRICS_FILE)} holds no training or evaluation records")
    return RunResult(steps, evals[-1]["val_loss"], evals[-1]["val_bpb"])


def run_our_trainer(args, out_dir, threads, log_path, skip, script="train.py"):
    """script (train.py or train_advanced_centered.py) with args (config files, --key=value) into a
    fresh out_dir -> RunResult."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, os.path.join(REPO_ROOT, script), *args, f"--out_dir={out_dir}"]
    usage = {}
    run_logged(cmd, REPO_ROOT, thread_env(threads), log_path, usage)
    return dataclasses.replace(parse_our_metrics(out_dir, skip), **usage)


def thread_env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("RANK", None)  # never let a torchrun environment leak into the children
    return env


def run_logged(cmd, cwd, env, log_path, usage=None):
    """Run cmd with its output in log_path; returns the output. usage, a dict if given, gets the
    child's CPU seconds and minor page faults (a shared machine's load stretches wall time, far
    less the CPU time a process itself uses)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if usage is not None:
        usage["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        usage["page_faults"] = after.ru_minflt - before.ru_minflt
    with open(log_path, encoding="utf-8") as f:
        text = f.read()
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-5:])
        raise UserError(f"{' '.join(cmd[:2])} failed (exit {done.returncode}), log {log_path}:\n{tail}")
    return text


class PairedBenchmark:
    """Set up once (copies and data in work_dir), then run_pair(threads, index) as often as wanted."""

    def __init__(self, nanogpt_dir, input_path, work_dir, iters, skip, our_args=()):
        missing = [f for f in NANOGPT_FILES if not os.path.isfile(os.path.join(nanogpt_dir, f))]
        if missing:
            raise UserError(f"{nanogpt_dir} is not a nanoGPT checkout (missing {', '.join(missing)})")
        if not os.path.isfile(input_path):
            raise UserError(f"input text {input_path} not found")
        if skip >= iters - 1:
            raise UserError(f"skip ({skip}) must be smaller than iters - 1 ({iters - 1})")
        self.work_dir, self.iters, self.skip, self.our_args = work_dir, iters, skip, list(our_args)
        self.nanogpt_copy = os.path.join(work_dir, "nanogpt")
        os.makedirs(os.path.join(self.nanogpt_copy, "config"), exist_ok=True)
        for name in NANOGPT_FILES + (os.path.join("config", "train_shakespeare_char.py"),):
            shutil.copy(os.path.join(nanogpt_dir, name), os.path.join(self.nanogpt_copy, name))
        self.our_data = os.path.join(work_dir, "ours_data")
        with open(input_path, encoding="utf-8") as f:
            write_paired_data(f.read(), os.path.join(self.nanogpt_copy, "data", "shakespeare_char"),
                              self.our_data)

    def run_nanogpt(self, threads, tag):
        settings = cpu_run_settings(self.iters)
        args = [f"--{k}={v}" for k, v in settings.items()] + ["--eval_iters=20"]  # README: 20 batches
        out = os.path.join(self.work_dir, f"nanogpt_out_{tag}")
        cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--out_dir={out}", *args]
        usage = {}
        text = run_logged(cmd, self.nanogpt_copy, thread_env(threads), os.path.join(self.work_dir, f"nanogpt_{tag}.log"),
                          usage)
        return dataclasses.replace(parse_nanogpt_log(text, self.skip), **usage)

    def run_ours(self, threads, tag):
        settings = cpu_run_settings(self.iters)
        args = [os.path.join(REPO_ROOT, "config", "train_shakespeare_char_cpu.py"),
                *[f"--{k}={v}" for k, v in settings.items()], f"--data_dir={self.our_data}",
                "--eval_windows=240", "--train_eval_windows=240", *self.our_args]  # nanoGPT's 20 x 12, both splits
        return run_our_trainer(args, os.path.join(self.work_dir, f"ours_out_{tag}"), threads,
                               os.path.join(self.work_dir, f"ours_{tag}.log"), self.skip)

    def run_pair(self, threads, index):
        """nanoGPT first on even pairs, ours first on odd ones: neither always goes first."""
        tag = f"t{threads}_p{index}"
        if index % 2 == 0:
            nano = self.run_nanogpt(threads, tag)
            ours = self.run_ours(threads, tag)
        else:
            ours = self.run_ours(threads, tag)
            nano = self.run_nanogpt(threads, tag)
        return nano, ours


def summarise(pairs):
    """pairs: [(nano RunResult, ours RunResult)] -> dict of medians, ratios and losses."""
    ratios = [n.median_ms / o.median_ms for n, o in pairs]
    cpu_ratios = [n.cpu_s / o.cpu_s for n, o in pairs]
    return {
        "nanogpt_ms": statistics.median(n.median_ms for n, _ in pairs),
        "ours_ms": statistics.median(o.median_ms for _, o in pairs),
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "ratio_sd": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
        "cpu_ratios": cpu_ratios,
        "nanogpt_faults": statistics.median(n.page_faults for n, _ in pairs),
        "ours_faults": statistics.median(o.page_faults for _, o in pairs),
        "nanogpt_val": [n.val_loss for n, _ in pairs],
        "ours_val": [o.val_loss for _, o in pairs],
    }


def format_summary(threads, s, block_size=64, batch_size=12):
    tokens = block_size * batch_size
    ratios = " ".join(f"{r:.3f}" for r in s["ratios"])
    cpu = " ".join(f"{r:.3f}" for r in s["cpu_ratios"])
    return (f"threads {threads}: nanoGPT {s['nanogpt_ms']:.2f} ms/iter ({tokens / s['nanogpt_ms'] * 1000:,.0f} tok/s), "
            f"ours {s['ours_ms']:.2f} ms/iter ({tokens / s['ours_ms'] * 1000:,.0f} tok/s)\n"
            f"  speed ratio ours/nanoGPT (tokens/s, per pair): median {s['ratio_median']:.3f}, "
            f"range {s['ratio_min']:.3f}-{s['ratio_max']:.3f}, sd {s['ratio_sd']:.3f}  [{ratios}]\n"
            f"  whole-run CPU time ratio nanoGPT/ours (per pair): median {statistics.median(s['cpu_ratios']):.3f}  [{cpu}]\n"
            f"  page faults per run (median): nanoGPT {s['nanogpt_faults']:,.0f}, ours {s['ours_faults']:,.0f}\n"
            f"  final val loss: nanoGPT {' '.join(f'{v:.4f}' for v in s['nanogpt_val'])} (240 random windows); "
            f"ours {' '.join(f'{v:.4f}' for v in s['ours_val'])} (240 fixed windows)")


def default_work_dir():
    return tempfile.mkdtemp(prefix="bench_nanogpt_")


def work_folder(work_dir, overwrite):
    """The benchmark's folder: a new temporary one unless --work_dir names one, which must be empty
    (a previous benchmark's runs and logs there would be replaced) unless overwrite."""
    if not work_dir:
        return default_work_dir()
    ensure_writable_folder(work_dir, "--work_dir")
    if os.listdir(work_dir) and not overwrite:
        raise ConfigError(f"--work_dir={work_dir} is not empty (a previous benchmark's runs and logs?): give a new "
                          f"or empty folder, leave --work_dir out for a temporary one, or replace the benchmark's "
                          f"files there with --overwrite=True")
    return work_dir


# The benchmarks that train the protocol's baseline pin its learning rate, so that their runs
# (and BENCHMARKS.md's losses) stay the same when the configs' default moves (it was 1e-3 when
# they were measured; config/experiment_base.py now has the tuned 4e-3), and so that two trees
# with different defaults still train the same run.
BENCHMARK_LEARNING_RATE = "1e-3"


def vocabulary_pairs(full_dir, compact_dir, work_dir, iters, pairs, threads, skip, extra_args=()):
    """The experiment protocol's baseline (config/baseline.py) on the same GPT-2 BPE text with GPT-2's
    whole vocabulary and with the compact one, alternated: [(full RunResult, compact RunResult)].
    The two datasets hold the same tokens at the same positions, so both runs see the same training
    windows and are evaluated on the same validation windows (bits per byte comparable)."""
    for folder in (full_dir, compact_dir):
        if not os.path.isfile(os.path.join(folder, "meta.json")):
            raise UserError(f"no prepared dataset in {folder}: run data/shakespeare/prepare.py first")
    with open(os.path.join(compact_dir, "meta.json"), encoding="utf-8") as f:
        if "gpt2_ids" not in json.load(f):
            raise UserError(f"{compact_dir} has no compact vocabulary (prepare it with --compact_vocab)")
    os.makedirs(work_dir, exist_ok=True)
    base = [os.path.join(REPO_ROOT, "config", "baseline.py"), f"--max_iters={iters}",
            f"--lr_decay_iters={iters}", f"--eval_interval={iters}", "--log_interval=1", "--device=cpu",
            f"--learning_rate={BENCHMARK_LEARNING_RATE}", *extra_args]
    folders = {"full": full_dir, "compact": compact_dir}

    def run_one(name, index):
        tag = f"{name}_t{threads}_p{index}"
        return run_our_trainer(base + [f"--data_dir={folders[name]}"], os.path.join(work_dir, tag), threads,
                               os.path.join(work_dir, f"{tag}.log"), skip, "train_advanced_centered.py")

    return [(got["full"], got["compact"]) for got in run_alternating(pairs, ["full", "compact"], run_one)]


def run_alternating(pairs, names, run_one):
    """run_one(name, index) for every name, pairs times, the order reversed on every other pair so
    that neither always goes first: [{name: result} per pair]."""
    return [{name: run_one(name, index) for name in (names if index % 2 == 0 else names[::-1])}
            for index in range(pairs)]


def export_revision(rev, dest):
    """The repository's files at git revision rev, written to dest (a plain copy to run from)."""
    os.makedirs(dest, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=REPO_ROOT, capture_output=True)
    if archive.returncode != 0:
        raise UserError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    return dest


def timed_protocol_run(root, data_dir, out_dir, iters, threads, log_path):
    """One protocol run (baseline, config/baseline.py) of the code in root -> (wall seconds of the
    whole process, its CPU seconds, final val loss)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, os.path.join(root, "train_advanced_centered.py"), os.path.join(root, "config", "baseline.py"),
           f"--data_dir={data_dir}", f"--out_dir={out_dir}", f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--device=cpu",
           f"--learning_rate={BENCHMARK_LEARNING_RATE}"]
    start, usage = time.perf_counter(), {}
    run_logged(cmd, root, thread_env(threads), log_path, usage)
    wall = time.perf_counter() - start
    evals = read_metrics(out_dir, "eval")
    return wall, usage["cpu_s"], evals[-1]["val_loss"]


def protocol_pairs(before_rev, data_dir, work_dir, iters, pairs, threads):
    """Protocol runs of revision before_rev and of this working tree, alternated:
    [(before (wall_s, cpu_s, val_loss), after (wall_s, cpu_s, val_loss))]."""
    roots = {"before": export_revision(before_rev, os.path.join(work_dir, "before")), "after": REPO_ROOT}

    def run_one(name, index):
        tag = f"{name}_p{index}"
        return timed_protocol_run(roots[name], data_dir, os.path.join(work_dir, tag), iters, threads,
                                  os.path.join(work_dir, f"{tag}.log"))

    return [(got["before"], got["after"]) for got in run_alternating(pairs, ["before", "after"], run_one)]
