"""
OpenWebText -> GPT-2 BPE train.bin / val.bin, with Hugging Face `datasets`.
Any hub dataset with a "text" column works (--dataset NAME), and so does a local
text file (--text_file PATH, one document per paragraph by default), which needs no network.
"""
import argparse, os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for our modules

import numpy as np
from tqdm import tqdm

from data.text_sources import fail, write_meta
from gpt2_tokenizer import EOT_ID, get_gpt2_encoding, token_byte_lengths


def tokenize(example):
    # get_gpt2_encoding() is cached per process: each map worker builds it once, nothing big gets pickled
    ids = get_gpt2_encoding().encode_ordinary(example["text"])
    ids.append(EOT_ID)  # <|endoftext|> closes every document
    return {"ids": ids, "len": len(ids)}


def load_documents(args):
    """The documents as one datasets.Dataset with a "text" column, and a description of the source."""
    from datasets import load_dataset
    if args.text_file:
        if not os.path.isfile(args.text_file) or os.path.getsize(args.text_file) == 0:
            fail(f"--text_file {args.text_file}: missing or empty")
        dataset = load_dataset("text", data_files={"train": args.text_file}, sample_by=args.sample_by)
        return dataset["train"], f"file {os.path.basename(args.text_file)} (one document per {args.sample_by})"
    try:
        dataset = load_dataset(args.dataset, num_proc=args.num_proc)
    except Exception as e:  # offline, unknown name, hub down: say so in one line
        reason = (str(e).splitlines() or [""])[0]
        fail(f"cannot load {args.dataset!r} from the Hugging Face Hub ({type(e).__name__}: {reason}); "
             f"offline? use --text_file PATH to prepare a local text file", status=1)
    return dataset["train"], f"{args.dataset} (Hugging Face Hub)"


def write_bin(dataset, path):
    """Concatenate the "ids" of all documents into a uint16 file, shard by shard to bound memory."""
    total = int(np.sum(dataset.with_format("numpy")["len"], dtype=np.uint64))
    out = np.memmap(path, dtype=np.uint16, mode="w+", shape=(total,))
    num_shards = min(1024, len(dataset))
    pos = 0
    for i in tqdm(range(num_shards), desc=f"writing {os.path.basename(path)}"):
        shard = dataset.shard(num_shards=num_shards, index=i, contiguous=True).with_format("numpy")
        ids = np.concatenate(list(shard["ids"]))
        out[pos:pos + len(ids)] = ids
        pos += len(ids)
    out.flush()
    return total


def main():
    parser = argparse.ArgumentParser(description="Prepare OpenWebText (or a local text file) with GPT-2 BPE tokens.")
    parser.add_argument("--dataset", default="openwebtext", help="Hugging Face Hub dataset with a 'text' column")
    parser.add_argument("--text_file", metavar="PATH", help="use a local UTF-8 text file instead of the hub")
    parser.add_argument("--sample_by", default="paragraph", choices=["line", "paragraph", "document"],
                        help="how --text_file is cut into documents")
    parser.add_argument("--val_fraction", type=float, default=0.0005, help="share of documents held out for val")
    parser.add_argument("--seed", type=int, default=2357, help="seed of the train/val shuffle split")
    parser.add_argument("--num_proc", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="worker processes for loading and tokenizing")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    if not 0 < args.val_fraction < 1:
        fail("--val_fraction must be between 0 and 1")

    documents, source = load_documents(args)
    if len(documents) < 2:
        fail(f"{source}: need at least 2 documents to split into train and val")
    num_val = max(1, round(len(documents) * args.val_fraction))  # at least one val document, even for small files
    split = documents.train_test_split(test_size=num_val, seed=args.seed, shuffle=True)
    split["val"] = split.pop("test")

    tokenized = split.map(tokenize, remove_columns=documents.column_names, desc="tokenizing", num_proc=args.num_proc)

    os.makedirs(args.out_dir, exist_ok=True)
    counts = {name: write_bin(tokenized[name], os.path.join(args.out_dir, f"{name}.bin")) for name in ("train", "val")}
    enc = get_gpt2_encoding()
    write_meta(args.out_dir, {
        "tokenizer": "gpt2",
        "vocab_size": enc.n_vocab,
        "token_bytes": token_byte_lengths(enc),
        "source": source,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
    })
    print(f"{args.out_dir}: train {counts['train']:,} tokens, val {counts['val']:,} tokens")


if __name__ == "__main__":  # map workers may import this file: keep the work under main()
    main()
