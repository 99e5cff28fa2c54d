"""
metrics.jsonl, a run's own records: one JSON object per line, appended as training goes (files.py:
a write cut short leaves at most a torn last line, which the next read or append drops). Every
record has "type" and "iter" (optimizer steps taken when it was written). The types:

    train   every log_interval steps: loss (of that step's global batch), lr, step_ms, tokens_per_s, mfu
    eval    every eval_interval steps and at the end: train_loss, val_loss, val_bpb, lr, and the
            model's diag/... keys (diagnostics.py)
    test    once, at the end: the best checkpoint (its iter) on the whole test split: test_loss,
            test_bpb, test_tokens
    resume  where a resumed run changed keys of its checkpoint's config: changed {key: [old, new]}
    diverged  the step whose loss was not finite (loss: its text, "nan" or "inf"), the run's last record

An archived run (scripts/archive_sweep.py) has the file gzipped; read_metrics reads either.
"""

import os

from files import append_jsonl, read_jsonl, rewrite_jsonl

METRICS_FILE = "metrics.jsonl"
RECORD_TYPES = ("train", "eval", "test", "resume", "diverged")


def read_metrics(run_dir, kind=None):
    """A run's records (those of one type, with kind), oldest first; [] if it has none yet."""
    path = os.path.join(run_dir, METRICS_FILE)
    records = read_jsonl(path if os.path.exists(path) else path + ".gz")
    return records if kind is None else [r for r in records if r.get("type") == kind]


class MetricsLog:
    """metrics.jsonl in out_dir: one JSON object per line, appended as training goes (files.py: a
    write cut short leaves at most a torn last line, which the next read or append drops)."""

    def __init__(self, out_dir, enabled):
        self.path = os.path.join(out_dir, METRICS_FILE)
        self.enabled = enabled

    def truncate_after(self, iter_num):
        """On resume: drop records a crashed run wrote past its last checkpoint, and the test
        record of an earlier end of the run (the resumed run writes its own), or its divergence."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        kept = [r for r in read_jsonl(self.path) if r.get("iter", 0) <= iter_num and r.get("type") not in ("test", "diverged")]
        rewrite_jsonl(self.path, kept)

    def write(self, record):
        if self.enabled:
            append_jsonl(self.path, record)

