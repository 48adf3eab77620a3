"""The results file: JSON Lines, one object per finished trial, appended one line at a time.

An append writes the whole line with a single ``os.write`` on a descriptor opened with
``O_APPEND``, then fsyncs it, so a line on disk is either complete or, after a kill or a full
disk in the middle of that write, a torn last line without its newline. :func:`read_results`
ignores such a torn last line (the trial simply runs again) and :func:`ResultsFile` cuts it
off before appending; anything else that does not parse is an error naming the line, and the
file is left as it is. A last line without its newline that cannot be the start of a record
(a file of notes, say) means the file is not a results file at all: an error, too.
"""
import errno
import json
import os

import numpy as np

from fastconv.fileio import (LockedError, NotARegularFileError, hold_lock, lock_file_for,
                             open_regular, release_lock)

__all__ = ["read_results", "ResultsFile", "to_json_line", "plain"]


def plain(value):
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json_line(record):
    """One record as a line of JSON (floats written with repr: they read back bit for bit).

    NaN and infinities are written as ``NaN``/``Infinity``, which Python's json reads back.
    """
    return json.dumps(plain(record), separators=(", ", ": ")) + "\n"


# every record starts so: to_json_line of {"trial": ..., "seed": ..., ...}
_RECORD_START = b'{"trial": '


def _check_record(record, path, number):
    if not isinstance(record, dict):
        raise ValueError(f"malformed results file {path}: line {number} is not a JSON object")
    trial = record.get("trial")
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise ValueError(f"malformed results file {path}: line {number} has no "
                         f"non-negative integer 'trial'")
    seed = record.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"malformed results file {path}: line {number} has no integer 'seed'")


def read_results(path):
    """``({trial: record}, size of the good part in bytes)`` from a results file.

    A missing file is empty. A torn last line (no newline at its end) is left out; any other
    line that is not a trial record raises ValueError, and so does a last line without its
    newline that is not the start of one. A trial recorded twice must be recorded identically.
    """
    records, good_size, _ = _read(path)
    return records, good_size


def _read(path):
    """read_results, and the size of the whole file."""
    try:
        with open_regular(path) as handle:
            data = handle.read()
    except FileNotFoundError:
        return {}, 0, 0
    except IsADirectoryError:
        raise ValueError(f"results file {path} is a folder") from None
    except NotARegularFileError as exc:
        raise ValueError(f"results file {path}: {exc.strerror}") from None
    complete, _, torn = data.rpartition(b"\n")
    # a last line without its newline: an append that never finished, if it is one of ours
    if torn[:len(_RECORD_START)] != _RECORD_START[:len(torn)]:
        raise ValueError(f"{path} is not a results file: its last line, which has no newline, "
                         f"is not the start of a trial record (give another file)")
    records = {}
    for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"malformed results file {path}: line {number} is not valid JSON "
                             f"(delete the line or give another results file)") from None
        _check_record(record, path, number)
        trial = record["trial"]
        if trial in records and not _same(records[trial], record):
            raise ValueError(f"malformed results file {path}: trial {trial} is recorded twice "
                             f"with different results (line {number})")
        records[trial] = record
    return records, len(complete) + 1 if complete else 0, len(data)


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class ResultsFile:
    """A sweep's hold on its results file, from before its first trial until its end.

    Making one takes the file's lock (``.<name>.lock`` beside it), so that a second sweep on
    the same file is refused instead of cutting off the lines the first one appends, and
    reads the file's ``records``. :meth:`open` then creates the file if it is missing and cuts
    off a torn last line that a killed writer left; :meth:`append` writes each record as one
    line in one write, fsynced.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fd = self._lock = None
        self._created = None  # the file open() made: a symbolic link's target, not the link
        folder = os.path.dirname(os.path.realpath(self.path))
        if not os.path.isdir(folder):  # else the error would name the lock file
            raise FileNotFoundError(errno.ENOENT, "the results file's folder does not exist",
                                    self.path)
        self._lock_path = lock_file_for(self.path)
        try:
            self._lock = hold_lock(self._lock_path, f"results file {self.path!r}")
        except LockedError:
            raise LockedError(f"results file {self.path!r} is in use by another sweep, which "
                              f"holds its lock; let it finish or give another file") from None
        try:
            self.records, self._good_size, self._size = _read(self.path)
        except BaseException:
            self.close()
            raise

    def open(self):
        """Create the file if it is missing, and cut off a torn last line."""
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags)
        except FileNotFoundError:
            self._fd = os.open(self.path, flags | os.O_CREAT, 0o666)
            self._created = os.path.realpath(self.path)
        size = os.fstat(self._fd).st_size
        if size != self._size:  # possible only where the file system has no locks
            raise OSError(f"results file {self.path!r} changed after it was read: another "
                          f"sweep is writing it; let it finish or give another file")
        if size > self._good_size:
            os.ftruncate(self._fd, self._good_size)
            os.fsync(self._fd)

    def discard(self):
        """Close the file, and remove it if :meth:`open` created it and nothing was appended
        since (where the path is a symbolic link, the target it made; the link stays)."""
        if self._created is None or self._fd is None:
            return
        empty = os.fstat(self._fd).st_size == 0
        os.close(self._fd)  # (Windows removes no open file)
        self._fd = None
        if empty:
            os.unlink(self._created)
        self._created = None

    def append(self, record):
        data = to_json_line(record).encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: the torn line is cut off on the next open
            raise OSError(f"could not append a whole line to {self.path} "
                          f"({written} of {len(data)} bytes written)")
        os.fsync(self._fd)

    def close(self):
        """Close the file and let go of its lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        release_lock(self._lock_path, self._lock)
        self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

