"""
Configuration from plain Python files and typed --key=value overrides.

    python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False

Every key is a field of a dataclass (train.py's TrainConfig, or a subclass): its annotation is the
type an override is parsed to. Config files are executed as Python; every top-level name that
does not start with an underscore must be a key. A config file may build on another with
`include("other.py")` (path relative to the including file).

Errors in what the user typed raise ConfigError with a one-line message. `run_command` is the
command line of the scripts that train (and of those that take a config dataclass): --help,
parsing, and any UserError turned into one line on stderr and its exit status (ConfigError: 2),
never a traceback. The scripts that do not train (sweeps, reports, data preparation) use the one
argparse style here, `CommandLine` with its types `boolean`, `comma_list` and `at_least`: the
same one-line errors and exit status 2.
"""

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import io
import os
import sys
import textwrap
import tokenize
import types

TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}


class UserError(Exception):
    """A problem the user can fix, reported in one line; status is the exit status."""
    status = 1


class ConfigError(UserError):
    status = 2


def fail(message, status=2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


# ----------------------------------------------------------------------------------------------
# The argparse style of the scripts that do not train (the trainers take typed --key=value, below)

class CommandLine(argparse.ArgumentParser):
    """The one argparse style of the scripts that do not train (sweeps, reports, data preparation):
    every option --key=value with a help string, a yes/no option (type=boolean) alone meaning
    True, hyphens read as underscores, and a mistake one line `error: ...` and exit 2, never a
    usage dump. doc: the script's docstring (its first paragraph is the description, the rest
    is shown after the options); or description= alone."""

    def __init__(self, doc=None, **kwargs):
        if doc is not None:
            head, _, rest = doc.strip().partition("\n\n")
            kwargs.update(description=head, epilog=rest or None, formatter_class=argparse.RawDescriptionHelpFormatter)
        # no prefixes: --seed=4 must reach the trainer's keys (and be refused there), not become --seeds=4
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):
        fail(f"{message} (see --help)", 2)

    def parse_known_args(self, args=None, namespace=None):
        # a yes/no option written alone (--dry_run) means --dry_run=True
        args = [underscored(a) for a in (sys.argv[1:] if args is None else args)]
        flags = {name for action in self._actions if action.type is boolean for name in action.option_strings}
        return super().parse_known_args([f"{a}=True" if a in flags else a for a in args], namespace)

    def parse_with_overrides(self, argv=None):
        """(options, the arguments left for the trainer: --key=value and config files, in order)."""
        args, rest = self.parse_known_args(argv)
        bad = [a for a in rest if not ((a.startswith("--") and "=" in a) or a.endswith(".py"))]
        if bad:
            self.error(f"unrecognized arguments: {' '.join(bad)} (training keys go as --key=value, "
                       f"config overlays as a .py file)")
        return args, rest


def underscored(arg):
    """--dry-run[=v] as --dry_run[=v]: every key is spelled with underscores, and users type
    hyphens; values are left as they are."""
    if not arg.startswith("--"):
        return arg
    key, eq, value = arg[2:].partition("=")
    return "--" + key.replace("-", "_") + eq + value


def sets_key(argv, key):
    """Whether a command line's --key=value sets key, in either spelling (--out-dir= or --out_dir=)."""
    return any(underscored(arg).startswith(f"--{key}=") for arg in argv)


def boolean(text):
    """An argparse type: a yes/no option's value, in the configurator's boolean words."""
    word = text.strip().lower()
    if word not in TRUE_WORDS:
        raise argparse.ArgumentTypeError(f"expected a boolean (True/False/true/false/1/0), got '{text}'")
    return TRUE_WORDS[word]


def at_least(low):
    """An argparse type: an integer no smaller than low."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer of at least {low}"
    return parse


def repeated(texts, value=str):
    """'lists X twice' for the first item of texts that repeats an earlier one, compared as
    value(text) (so that 1e-3 and 0.001 are one number), or None when there is none."""
    seen = {}
    for text in texts:
        if value(text) in seen:
            first = seen[value(text)]
            return f"lists {text} twice" + ("" if first == text else f" (as {first} and {text})")
        seen[value(text)] = text
    return None


def number_or_text(text):
    """A grid value as compared for repeats: the number it spells, the yes or no of a boolean word
    (True and true are one value), else the text itself."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return boolean(text)
    except argparse.ArgumentTypeError:
        return text


def comma_list(kind, empty_ok=False, unique=False):
    """An argparse type: 'a,b,c' -> [kind(a), kind(b), kind(c)]. An empty list is refused unless
    empty_ok (where it has a meaning of its own, such as --gpus= for none): a list emptied by a
    typo would otherwise run nothing, or everything. unique: a value listed twice (the same
    kind(value)) is refused, where it would plan the same run twice."""
    def parse(text):
        items = [x for x in text.split(",") if x]
        try:
            values = [kind(x) for x in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got '{text}'") from None
        if not values and not empty_ok:
            raise argparse.ArgumentTypeError("expected at least one value, got an empty list")
        twice = repeated(items, kind) if unique else None
        if twice:
            raise argparse.ArgumentTypeError(twice)
        return values
    parse.__name__ = f"{kind.__name__} list"
    return parse


# ----------------------------------------------------------------------------------------------
# Typed --key=value configuration of the trainers

def _unknown_key(key, cls):
    """The error for a key cls does not have; cls.unknown_key_hint(key) may add a line of help."""
    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(cls)], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    extra = getattr(cls, "unknown_key_hint", lambda k: None)(key)
    return ConfigError(f"unknown config key '{key}'{hint}" + (f"; {extra}" if extra else ""))


def parse_value(key, text, kind):
    """Parse the text of --key=text into the key's type."""
    if kind is bool:
        word = text.strip().lower()
        if word not in TRUE_WORDS:
            raise ConfigError(f"--{key} expects a boolean (True/False/true/false/1/0), got '{text}'")
        return TRUE_WORDS[word]
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--{key} expects an integer, got '{text}'") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--{key} expects a number, got '{text}'") from None
    return text  # str: taken as typed, '=' included


def check_value(key, value, kind, where):
    """Type-check a value assigned in a config file."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _exec_config_file(path, namespace, seen):
    real = os.path.realpath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if real in seen:
        raise ConfigError(f"config file includes itself: {path}")
    seen.add(real)

    def include(relative):
        _exec_config_file(os.path.join(os.path.dirname(path), relative), namespace, seen)

    namespace["include"] = include
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:  # a folder, no permission, another encoding
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        exec(compile(source, path, "exec"), namespace)
    except ConfigError:
        raise
    except Exception as e:  # a config file is user input: report, don't trace back
        raise ConfigError(f"{path}: {type(e).__name__}: {e}") from None


def read_config_file(path):
    """The key assignments of one config file (with its includes) as a dict."""
    namespace = {}
    _exec_config_file(path, namespace, set())
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k != "include" and not isinstance(v, types.ModuleType)}


def given_keys(config):
    """The keys a config file or --key=value set (not left at their defaults), or None when the
    config was built in code: then every key counts as given."""
    return getattr(config, "_given_keys", None)


def load_config(cls, argv):
    """Build cls (a dataclass) from its defaults, then config files and --key=value, in order.
    given_keys(result) says which keys were set."""
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    values = {}
    for arg in argv:
        if arg.startswith("--"):
            key, eq, text = arg[2:].partition("=")
            key = key.replace("-", "_")  # --max-iters is --max_iters, as users type it
            if not eq:
                raise ConfigError(f"expected --key=value, got '{arg}'")
            if key not in fields:
                raise _unknown_key(key, cls)
            values[key] = parse_value(key, text, fields[key])
        else:
            for key, value in read_config_file(arg).items():
                if key not in fields:
                    raise _unknown_key(key, cls)
                values[key] = check_value(key, value, fields[key], arg)
    config = cls(**values)
    object.__setattr__(config, "_given_keys", frozenset(values))  # not a field: asdict and replace drop it
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


@functools.lru_cache(maxsize=None)
def _own_field_comments(cls):
    """{field: its trailing comment} for the fields a dataclass itself declares, read from its
    source: `lr: float = 1e-3  # peak learning rate` -> {"lr": "peak learning rate"}."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined where no source is kept (an interactive session)
        return {}
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body
    return {node.target.id: comments[node.end_lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


def field_comments(cls):
    """{field: help text} over the dataclass and its bases: a field's trailing comment where it is
    declared (a subclass that declares it again with a comment of its own wins)."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            comments.update(_own_field_comments(klass))
    return comments


def describe(cls):
    """One line per key: name, default and type, then its help (the field's trailing comment)."""
    defaults, comments = cls(), field_comments(cls)
    lines = []
    for f in dataclasses.fields(cls):
        line = f"  --{f.name}={getattr(defaults, f.name)!r}  ({f.type.__name__})"
        lines.append(f"{line}  {comments[f.name]}" if f.name in comments else line)
    return "\n".join(lines)


def run_command(config_cls, argv, body, usage):
    """--help prints usage and the keys; otherwise body(config) runs, and a UserError it raises
    becomes one line on stderr and the error's exit status. Returns 0 when body returns."""
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {usage}\nkeys:\n" + describe(config_cls))
        return 0
    try:
        body(load_config(config_cls, argv))
    except UserError as e:
        if isinstance(e, ConfigError) and os.environ.get("RANK", "0") != "0":
            sys.exit(e.status)  # under torchrun every process finds the same bad config: rank 0 says it
        fail(str(e), e.status)
    return 0
