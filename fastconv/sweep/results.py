"""The results file: JSON Lines, one object per finished trial, appended one line at a time.

An append writes the whole line with a single ``os.write`` on a descriptor opened with
``O_APPEND``, then fsyncs it, so a line on disk is either complete or, after a kill or a full
disk in the middle of that write, a torn last line without its newline. :func:`read_results`
ignores such a torn last line (the trial simply runs again) and :func:`ResultsFile` cuts it
off before appending; anything else that does not parse is an error naming the line, and the
file is left as it is.
"""
import json
import os

import numpy as np

from fastconv.fileio import NotARegularFileError, open_regular

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
    line that is not a trial record raises ValueError. A trial recorded twice must be recorded
    identically.
    """
    try:
        with open_regular(path) as handle:
            data = handle.read()
    except FileNotFoundError:
        return {}, 0
    except IsADirectoryError:
        raise ValueError(f"results file {path} is a folder") from None
    except NotARegularFileError as exc:
        raise ValueError(f"results file {path}: {exc.strerror}") from None
    complete, _, torn = data.rpartition(b"\n")
    del torn  # a last line without its newline: that append never finished
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
    return records, len(complete) + 1 if complete else 0


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class ResultsFile:
    """Appends records to a results file, each line in one write and fsynced.

    Opening cuts off a torn last line that a killed writer left (``good_size`` from
    :func:`read_results`). Only one process should append: the sweep's driver.
    """

    def __init__(self, path, good_size):
        self.path = os.fspath(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o666)
        try:
            if os.fstat(self._fd).st_size > good_size:
                os.ftruncate(self._fd, good_size)
                os.fsync(self._fd)
        except BaseException:
            os.close(self._fd)
            raise

    def append(self, record):
        data = to_json_line(record).encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: the torn line is cut off on the next open
            raise OSError(f"could not append a whole line to {self.path} "
                          f"({written} of {len(data)} bytes written)")
        os.fsync(self._fd)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

