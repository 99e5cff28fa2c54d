"""
The trainer's plumbing, one room a module, so that train.py reads top to bottom:

    runtime.py     processes (DDP), device, precision, memory, random state
    batches.py     a prepared dataset's token files and the seeded stream of training windows
    checkpoint.py  the checkpoint format: what a checkpoint holds, saving, loading, rebuilding its model
    run_folder.py  a run's folder: its files, its one trainer, replacing and resuming a run
    metrics.py     metrics.jsonl: the record types a run writes, and the one reader of them

These import only configurator, cpu_runtime, files, data.text_sources and the models: never
train.py, experiments/ or scripts/.
"""

import os

from configurator import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TrainingError(UserError):
    """A problem the user can fix (missing data, bad checkpoint): reported in one line."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""
    status = 3
