"""
Files that a crash, a kill or a full disk must not leave corrupt, written and read in one place:

- write_atomically: a whole file (a checkpoint, a rewritten log) replaced in one step.
- FileLock: a folder owned by one process at a time (a sweep folder, a run folder), released by
  the kernel however the process ends.
- JSON lines (metrics.jsonl, a sweep's results.jsonl, detailed.jsonl): one record per line, each
  appended whole in a single write under an exclusive lock. A write cut short (a full disk, a
  kill) can leave only a torn LAST line: read_jsonl drops it with one warning line, and
  append_jsonl truncates it before it appends, so it never merges with the next record. A broken
  line anywhere else is an error (a UserError: one line, exit 1).
"""

import fcntl
import gzip
import json
import os
import socket
import sys
import tempfile

from configurator import ConfigError, UserError

_warned = set()  # (path, offset) of the torn lines already reported by this process


def write_atomically(path, write):
    """Write path through write(f) (f a binary file): a temporary file in the same folder (named
    <path>.tmp.<pid>, which a run's start-up cleanup, training/run_folder.py, recognises once its writer is dead), fsync,
    then rename over the target. A crash at any point leaves the previous file as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # a file where the folder (or one above it) should be, no permission
        what = "is a file, not a folder" if os.path.isfile(folder) else f"cannot be made ({e.strerror or e})"
        raise UserError(f"cannot write {path}: its folder {folder} {what}") from None
    tmp, recording = f"{path}.tmp.{os.getpid()}", None
    try:
        with open(tmp, "wb") as f:
            recording = _RecordingFile(f)
            write(recording)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        # a full disk (or a file-size limit) mid-write: one line, and the previous file is intact.
        # torch.save reports a failed write as a RuntimeError without its errno; the wrapper kept it
        error = e if isinstance(e, OSError) else getattr(recording, "error", None)
        if error is None:
            raise
        raise UserError(f"cannot write {path}: {error.strerror or error} (its previous version, if any, "
                        f"is unchanged)") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def write_probe(folder):
    """Create and delete a file in folder: an OSError if it cannot be written, with the file
    system's own reason (read-only, no permission), which os.access does not give. (A full disk
    may pass: the probe writes no data.)"""
    with tempfile.TemporaryFile(dir=folder):
        pass


def ensure_writable_folder(path, flag):
    """Make the folder path (and its parents) if need be, and check that a file can be created in
    it: a ConfigError naming the flag that gave it otherwise (a file, a read-only file system)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a file, not a folder: give a folder")
    try:
        os.makedirs(path, exist_ok=True)
        write_probe(path)
    except OSError as e:
        raise ConfigError(f"{flag}={path}: cannot write there ({e.strerror or e})") from None


def check_folder_can_be_made(path, flag):
    """What ensure_writable_folder checks, without making anything (a dry run): path is no file,
    and the nearest folder of it that exists is writable. A ConfigError naming the flag otherwise."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a file, not a folder: give a folder")
    parent = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the nearest folder that exists is where it will be made
        parent = os.path.dirname(parent)
    try:
        write_probe(parent)
    except OSError:  # a file, read-only, or no permission
        raise ConfigError(f"{flag}={path} cannot be written ({parent} is not a writable folder)") from None


class _RecordingFile:
    """A binary file whose write() remembers the OSError it raised (for write_atomically)."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def _warn_torn(path, offset, size):
    if (path, offset) not in _warned:  # a file read again and again (a sweep's results) says it once
        _warned.add((path, offset))
        print(f"warning: {path}: dropped a torn last line ({size} bytes, a write cut short)", file=sys.stderr)


def _parse(line):
    """The record a line holds, or None when it is not a whole JSON object."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    return record if isinstance(record, dict) else None


def read_jsonl(path):
    """The records of a JSON-lines file, gzipped when its name ends in .gz ([] when it does not
    exist). A torn last line (no newline after it, not a whole record) is dropped with a warning."""
    if not os.path.exists(path):
        return []
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        lines = f.read().split(b"\n")  # the last item follows the last newline: b"" in a whole file
    records, offset = [], 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            record = _parse(line)
            if record is None and number == len(lines):
                _warn_torn(path, offset, len(line))
            elif record is None:
                raise UserError(f"{path}:{number} is not a JSON record (a corrupt line before the last: "
                                f"repair or remove it)")
            else:
                records.append(record)
        offset += len(line) + 1
    return records


def _tail(fd):
    """(offset, bytes) of what follows the last newline of an open file (b"" in a whole file)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size, b""
    end = size
    while end > 0:  # back from the end, a block at a time: a record can be long
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            start += newline + 1
            break
        end = start
    return start, os.pread(fd, size - start, start)


def append_jsonl(path, record, sync=False):
    """Append record as one line, in a single write under an exclusive lock. A torn last line is
    truncated first (a whole record that lacks only its newline gets it); a write that fails takes
    its part back. sync: fsync before the lock is released (records that must survive a power cut)."""
    line = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        offset, tail = _tail(fd)
        if tail and _parse(tail) is not None:
            line = b"\n" + line
        elif tail:
            if tail.strip():
                _warn_torn(path, offset, len(tail))
            os.ftruncate(fd, offset)
        start = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError("short write (disk full?)")
            if sync:
                os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)  # never leave a half line for the next append to meet
            except OSError:
                pass  # the next append truncates it
            raise UserError(f"cannot append to {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)  # releases the lock


def rewrite_jsonl(path, records):
    """Replace a JSON-lines file with these records, atomically."""
    write_atomically(path, lambda f: f.write(b"".join((json.dumps(r) + "\n").encode("utf-8") for r in records)))


class LockHeld(Exception):
    """Another process holds the lock; holder is what it wrote in the file ("<pid> on <host>")."""

    def __init__(self, holder):
        super().__init__(holder)
        self.holder = holder


class FileLock:
    """An exclusive lock (flock) on a file, taken without waiting, with the holder's PID and host
    written inside for whoever finds it taken (LockHeld). Held until release() or the end of the
    process: the kernel releases it however the process dies, SIGKILL included, so the file of a
    dead holder is simply taken over. The file itself stays: deleting it would let two processes
    each lock a file of that name."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(holder) from None
        except OSError as e:  # a file system without locks
            os.close(fd)
            raise UserError(f"cannot lock {self.path}: {e.strerror or e}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the lock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def lock_holder(path):
    """Who holds the lock on path ("<pid> on <host>"), or None when no process does (the lock is
    taken for an instant to find out; no file is created)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
    except OSError:  # a file system without locks: no holder to find (a trainer says it cannot lock)
        return None
    finally:
        os.close(fd)
