"""
OpenWebText -> GPT-2 BPE train.bin / val.bin / test.bin, with Hugging Face `datasets`.
Any hub dataset with a "text" column works (--dataset NAME), and so does a local
text file (--text_file PATH, one document per paragraph by default), which needs no network.

Documents (not tokens) are shuffled with a fixed seed and split three ways: a share for
validation, a share for test, the rest for training. Hub datasets are large, so the held-out
shares are small (0.05% each, as nanoGPT); a local file gets 5% each, and the script refuses a
held-out split too small to evaluate on.

--compact_vocab numbers only the GPT-2 tokens that occur (in any split), as data/shakespeare's
option does (default folder: data/openwebtext_compact_vocab).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for our modules

import numpy as np
from tqdm import tqdm

from configurator import CommandLine, boolean
from data.text_sources import (SPLITS, add_output_args, check_utf8_file, default_out_dir, fail, publish_dataset, writing_dataset,
                               report_written, staged_path)
from gpt2_tokenizer import EOT_ID, compact_token_files, get_gpt2_encoding, token_byte_lengths


def tokenize(example):
    # get_gpt2_encoding() is cached per process: each map worker builds it once, nothing big gets pickled
    ids = get_gpt2_encoding().encode_ordinary(example["text"])
    ids.append(EOT_ID)  # <|endoftext|> closes every document
    return {"ids": ids, "len": len(ids)}


def load_documents(args):
    """The documents as one datasets.Dataset with a "text" column, and a description of the source."""
    from datasets import load_dataset
    if args.text_file:
        check_utf8_file(args.text_file, "--text_file")  # else a datasets traceback deep in the load
        dataset = load_dataset("text", data_files={"train": args.text_file}, sample_by=args.sample_by)
        return dataset["train"], f"file {os.path.basename(args.text_file)} (one document per {args.sample_by})"
    try:
        dataset = load_dataset(args.dataset, num_proc=args.num_proc)
    except Exception as e:  # offline, unknown name, hub down: say so in one line
        reason = (str(e).splitlines() or [""])[0]
        fail(f"cannot load {args.dataset!r} from the Hugging Face Hub ({type(e).__name__}: {reason}); "
             f"offline? use --text_file PATH to prepare a local text file", status=1)
    return dataset["train"], f"{args.dataset} (Hugging Face Hub)"


HUB_HELDOUT_FRACTION = 0.0005  # of documents, for each of val and test
FILE_HELDOUT_FRACTION = 0.05
MIN_HELDOUT_TOKENS = 1026  # one GPT-2 context (1024) plus the shifted target and one spare


def split_documents(documents, val_fraction, test_fraction, seed):
    """Shuffle the documents (seeded) and cut them into train / val / test, each at least one."""
    num_val = max(1, round(len(documents) * val_fraction))
    num_test = max(1, round(len(documents) * test_fraction))
    if len(documents) < num_val + num_test + 1:
        fail(f"need at least {num_val + num_test + 1} documents to split into train, val and test; "
             f"got {len(documents)}")
    first = documents.train_test_split(test_size=num_val + num_test, seed=seed, shuffle=True)
    heldout = first["test"].train_test_split(test_size=num_test, shuffle=False)
    return {"train": first["train"], "val": heldout["train"], "test": heldout["test"]}


def write_bin(dataset, path):
    """Concatenate the "ids" of all documents into a uint16 file, shard by shard to bound memory.
    Written, not mapped: a full disk is then an OSError (one line), where a write into a
    mapped file's unbacked pages kills the process (SIGBUS)."""
    num_shards = min(1024, len(dataset))
    total = 0
    with open(path, "wb") as f:
        for i in tqdm(range(num_shards), desc=f"writing {os.path.basename(path)}"):
            shard = dataset.shard(num_shards=num_shards, index=i, contiguous=True).with_format("numpy")
            ids = np.concatenate(list(shard["ids"])).astype(np.uint16)  # GPT-2's 50,257 ids fit
            f.write(ids.tobytes())
            total += len(ids)
        f.flush()
        os.fsync(f.fileno())
    return total


def main():
    parser = CommandLine(description="Prepare OpenWebText (or a local text file) with GPT-2 BPE tokens.")
    parser.add_argument("--dataset", default="openwebtext", help="Hugging Face Hub dataset with a 'text' column")
    parser.add_argument("--text_file", metavar="PATH", help="use a local UTF-8 text file instead of the hub")
    parser.add_argument("--sample_by", default="paragraph", choices=["line", "paragraph", "document"],
                        help="how --text_file is cut into documents")
    parser.add_argument("--val_fraction", type=float, default=None,
                        help=f"share of documents held out for validation (default {HUB_HELDOUT_FRACTION} "
                             f"for the hub, {FILE_HELDOUT_FRACTION} for --text_file)")
    parser.add_argument("--test_fraction", type=float, default=None, help="share held out for test (same defaults)")
    parser.add_argument("--seed", type=int, default=2357, help="seed of the document shuffle before the split")
    parser.add_argument("--num_proc", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="worker processes for loading and tokenizing")
    parser.add_argument("--compact_vocab", type=boolean, default=False, metavar="True|False",
                        help="number only the GPT-2 tokens that occur: a smaller, faster output layer")
    add_output_args(parser)
    args = parser.parse_args()
    if args.out_dir is None:
        own = args.text_file or (args.dataset if args.dataset != parser.get_default("dataset") else None)
        args.out_dir = default_out_dir(__file__, own) + ("_compact_vocab" if args.compact_vocab else "")
    if args.num_proc < 1:
        fail(f"--num_proc must be at least 1, got {args.num_proc}")
    if not 0 <= args.seed < 2 ** 32:  # the shuffle's generator takes no other seed
        fail(f"--seed must be in [0, 2^32), got {args.seed}")
    default_fraction = FILE_HELDOUT_FRACTION if args.text_file else HUB_HELDOUT_FRACTION
    fractions = {}
    for name in ("val", "test"):
        value = getattr(args, f"{name}_fraction")
        fractions[name] = default_fraction if value is None else value
        if not 0 < fractions[name] < 0.5:
            fail(f"--{name}_fraction must be between 0 and 0.5, got {value}")

    documents, source = load_documents(args)
    from datasets import DatasetDict
    split = DatasetDict(split_documents(documents, fractions["val"], fractions["test"], args.seed))
    tokenized = split.map(tokenize, remove_columns=documents.column_names, desc="tokenizing", num_proc=args.num_proc)
    for name in ("val", "test"):
        tokens = int(np.sum(tokenized[name].with_format("numpy")["len"], dtype=np.uint64))
        if tokens < MIN_HELDOUT_TOKENS:
            fail(f"{source}: the {name} split would hold {tokens} tokens, too few to evaluate on "
                 f"(at least {MIN_HELDOUT_TOKENS}); use a larger file or a larger --{name}_fraction")

    with writing_dataset(args.out_dir):
        counts = {name: write_bin(tokenized[name], staged_path(args.out_dir, name)) for name in SPLITS}
        enc = get_gpt2_encoding()
        meta = {"tokenizer": "gpt2", "vocab_size": enc.n_vocab, "token_bytes": token_byte_lengths(enc), "source": source}
        if args.compact_vocab:
            meta.update(compact_token_files([staged_path(args.out_dir, name) for name in SPLITS], meta["token_bytes"]))
        publish_dataset(args.out_dir, {**meta, **{f"{name}_tokens": counts[name] for name in SPLITS}}, force=args.force)
    report_written(args.out_dir, counts, meta["vocab_size"])


if __name__ == "__main__":  # map workers may import this file: keep the work under main()
    main()
