"""
Character-level Python source code: a second corpus of another kind than plays.
Default source: every .py file of Django 5.1.4 (BSD-3-Clause), read from the installed package
(offline once installed: pip install --no-deps Django==5.1.4). The version is pinned so that every
user prepares the same corpus; --input PATH takes any text file instead.
Writes train.bin / val.bin / test.bin (uint16 token ids, a 90/5/5 split of the files in sorted path
order: the test split is the last files, never a file seen in training except at one boundary) and
meta.json next to this script (data/code_char_<file name> for --input FILE).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root, for data.text_sources

from configurator import CommandLine
from data.text_sources import (add_output_args, default_out_dir, package_source_text, read_text_file,
                               write_char_dataset)

PACKAGE, VERSION, LICENSE = "Django", "5.1.4", "BSD-3-Clause"

parser = CommandLine(description="Prepare character-level Python source code (Django's .py files).")
parser.add_argument("--input", metavar="PATH", help=f"any UTF-8 text file (default: the .py files of {PACKAGE} {VERSION})")
add_output_args(parser)
args = parser.parse_args()
out_dir = args.out_dir or default_out_dir(__file__, args.input)
if args.input:
    text, source = read_text_file(args.input), f"file {os.path.basename(args.input)}"
else:
    text, source = package_source_text(PACKAGE, VERSION, LICENSE, suffix=".py")
print(f"source: {source}, {len(text):,} characters")
write_char_dataset(out_dir, text, source, force=args.force)  # one token per character
