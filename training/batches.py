"""A prepared dataset (data/<name>/: train.bin, val.bin, test.bin of uint16 token ids and meta.json)
and the seeded stream of training windows that every process replays."""

import json
import os

import numpy as np
import torch

from configurator import ConfigError
from data.text_sources import dataset_fingerprint
from training import REPO_ROOT


def dataset_dir(cfg):
    """The folder of the dataset a config trains on: data_dir, or data/<dataset> in the repository."""
    return cfg.data_dir or os.path.join(REPO_ROOT, "data", cfg.dataset)


def read_meta(path):
    """A dataset's meta.json, checked: a JSON object with a positive integer vocab_size."""
    again = "re-run the prepare script that made the dataset (with --force)"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid JSON ({str(e).splitlines()[0]}): {again}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} holds a {type(meta).__name__}, not the JSON object a dataset's meta is: {again}")
    vocab = meta.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise ConfigError(f"{path} lacks a positive integer vocab_size (has {vocab!r}): {again}")
    return meta


class TokenData:
    """train.bin / val.bin / test.bin (uint16 token ids) and meta.json of a prepared dataset. The
    test split is optional (datasets prepared before it existed have none): has_test says."""

    def __init__(self, data_dir, block_size):
        self.data_dir = data_dir
        self.block_size = block_size
        meta_path = os.path.join(data_dir, "meta.json")
        if not os.path.isfile(meta_path):
            raise ConfigError(f"no prepared dataset in {data_dir} (meta.json missing): run "
                                f"python data/<dataset>/prepare.py first")
        self.meta = read_meta(meta_path)
        self.vocab_size = self.meta["vocab_size"]
        self.token_bytes = np.asarray(self.meta.get("token_bytes", [1] * self.vocab_size), dtype=np.int64)
        self.has_test = os.path.isfile(self._path("test"))
        self.lengths = {}
        for split in ("train", "val", "test") if self.has_test else ("train", "val"):
            path = self._path(split)
            if not os.path.isfile(path):
                raise ConfigError(f"{path} is missing: prepare the dataset first")
            size = os.path.getsize(path)
            if size % 2:
                raise ConfigError(f"{path} holds {size:,} bytes, an odd number: not whole uint16 tokens (a file cut "
                                  f"short or not a token file); re-run the prepare script that made it (with --force)")
            n = size // 2
            if n < block_size + 2:
                raise ConfigError(f"{path} holds {n} tokens, too few for block_size {block_size}")
            self.lengths[split] = n
        self.fingerprint = self.meta.get("fingerprint")  # None for datasets prepared before it existed
        if self.fingerprint:
            self.check_fingerprint()

    def check_fingerprint(self):
        """The fingerprint recomputed from the files must be the one meta.json recorded: a token file
        cut or replaced, or an edited vocabulary, would otherwise train (and label a checkpoint)
        under the old identity. A full hash is cheap enough: measured on shakespeare_char's 4.3M
        tokens (9.6 MB) on a busy 2-core CPU, 14-30 ms (50 ms from a cold page cache), under 0.25% of
        the shortest protocol run (150 iterations, 22 s) and 0.05% of a 1000-iteration one (100 s)."""
        actual = dataset_fingerprint(self.data_dir, self.meta)
        if actual != self.fingerprint:
            raise ConfigError(f"{self.data_dir} does not match its meta.json (fingerprint {self.fingerprint[:12]}, "
                              f"the files now give {actual[:12]}): its token files or vocabulary changed since it "
                              f"was prepared; re-run the prepare script that made it (with --force)")

    def _path(self, split):
        return os.path.join(self.data_dir, f"{split}.bin")

    def windows(self, split, offsets):
        """Token windows starting at offsets (N,) -> inputs x and targets y, each (N, block_size)."""
        # a fresh memmap per call: a long-lived one keeps every page it touched mapped
        data = np.memmap(self._path(split), dtype=np.uint16, mode="r")
        rows = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(self.block_size + 1)
        chunk = torch.from_numpy(data[rows].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def max_offset(self, split):
        return self.lengths[split] - self.block_size - 1

    def eval_offsets(self, split, count):
        """count window starts spread evenly over the split: fixed for a dataset and block size."""
        return np.linspace(0, self.max_offset(split), num=count).round().astype(np.int64)

    def tiling_offsets(self, split):
        """Starts of every non-overlapping window of the split: each token after the first is a
        target exactly once, except the fewer than block_size left over at the end."""
        return np.arange((self.lengths[split] - 1) // self.block_size, dtype=np.int64) * self.block_size


class BatchSampler:
    """The stream of training windows: one seeded generator that every rank replays in full, so
    the sequence of global batches depends on the seed only, not on the number of processes."""

    def __init__(self, seed, max_offset, batch_size, micro_steps):
        self.generator = torch.Generator().manual_seed(seed)
        self.max_offset = max_offset
        self.batch_size = batch_size
        self.micro_steps = micro_steps

    def next_step(self):
        """Window offsets of one optimizer step: (micro_steps, batch_size)."""
        n = self.micro_steps * self.batch_size
        offsets = torch.randint(0, self.max_offset + 1, (n,), generator=self.generator)
        return offsets.view(self.micro_steps, self.batch_size).numpy()

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def check_step_sharing(micro_steps, batch_size, world_size, batch_statistics=None):
    """W processes share a step's micro_steps x batch_size windows by whole micro-steps, or else by
    an equal slice of every micro-batch: one of the two must divide by W. A model that takes batch
    statistics (batch_statistics says why) needs whole micro-steps."""
    if micro_steps % world_size == 0 or (batch_size % world_size == 0 and batch_statistics is None):
        return
    more_steps = -(-micro_steps // world_size) * world_size
    if batch_statistics is not None:
        raise ConfigError(f"{world_size} processes cannot share steps of gradient_accumulation_steps="
                          f"{micro_steps}: add --gradient_accumulation_steps={more_steps} ({batch_statistics}, "
                          f"so a micro-batch cannot be split between processes)")
    fewer_rows = max(world_size, batch_size - batch_size % world_size)
    raise ConfigError(f"{world_size} processes cannot share steps of gradient_accumulation_steps="
                      f"{micro_steps} x batch_size={batch_size}: add --gradient_accumulation_steps="
                      f"{more_steps} or --batch_size={fewer_rows} (a multiple of {world_size})")


def local_micro_steps(micro_steps, world_size):
    """How many micro-steps of a step each process runs (see rank_share; check_step_sharing has
    made sure that the rows of a micro-batch are split only where the model allows it)."""
    return micro_steps // world_size if micro_steps % world_size == 0 else micro_steps


def rank_share(step_offsets, rank, world_size):
    """This process's part of one step's windows (micro_steps, batch_size): whole micro-steps when
    they divide among the processes, else the same slice of every micro-batch. Either way the
    global batch, and so the loss curve, does not depend on the number of processes."""
    micro_steps, batch_size = step_offsets.shape
    if micro_steps % world_size == 0:
        k = micro_steps // world_size
        return step_offsets[rank * k:(rank + 1) * k]
    k = batch_size // world_size
    return step_offsets[:, rank * k:(rank + 1) * k]

