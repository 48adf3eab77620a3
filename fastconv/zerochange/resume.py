"""``python -m fastconv --checkpoint DIR SCRIPT``: a script's run that resumes after a kill.

The script's Trainers save to DIR (``fastconv.trainer.checkpoint_trainers_into``), and DIR
keeps the ``np.random`` state the script started from, written by the first run and set
again by every later one. A script that draws at random before or between its Trainers
without a seed (weights, ch06's hyperparameters) then draws the same numbers again: each
Trainer meets its own checkpoint, a finished one loads its last state (and ``np.random``'s
after it) without training, and the run goes on from the step the kill interrupted.
"""
import atexit
import json
import os

import numpy as np

from fastconv import checkpoint, trainer
from fastconv.fileio import (LockedError, atomic_write, hold_lock, read_at_most,
                             release_lock, remove_stale_temporaries)

START_STATE = "random-state.json"
LOCK = ".lock"
_FORMAT = "fastconv-random-state"
_MAX_BYTES = 64 << 10


class StartStateError(checkpoint.CheckpointError):
    """The start-state file is not one that fastconv wrote."""


class FolderInUseError(checkpoint.CheckpointError):
    """Another process runs with the same --checkpoint folder."""


_held = None  # (folder, lock descriptor, pid of the process that took the lock)


def start(folder):
    """Makes folder, takes its lock for the rest of the process, sets np.random to the start
    state kept there (or keeps the current one there), and points the Trainers made from
    now on at it. Raises CheckpointError, before anything changes, where another process
    holds the folder or its start state is not one fastconv wrote or is missing beside
    checkpoints."""
    global _held
    folder = os.path.abspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise checkpoint.CheckpointError(f"{folder} is a file, not a folder: give --checkpoint "
                                         f"a folder for the run's checkpoints")
    os.makedirs(folder, exist_ok=True)
    # a notebook's %fastconv line run again, or naming the same folder another way
    again = _held is not None and os.path.realpath(_held[0]) == os.path.realpath(folder)
    fd = None if again else _lock(folder)
    try:
        path = os.path.join(folder, START_STATE)
        remove_stale_temporaries(path)  # a run killed while it wrote the file left it
        if os.path.lexists(path):
            np.random.set_state(read_start_state(path))
        else:
            _refuse_orphan_checkpoints(folder)
            _write_start_state(path)
    except BaseException:
        release_lock(os.path.join(folder, LOCK), fd)
        raise
    if not again:
        stop()
        _held = (folder, fd, os.getpid())
    trainer.checkpoint_trainers_into(folder)


def _lock(folder):
    try:
        return hold_lock(os.path.join(folder, LOCK), f"--checkpoint folder {folder}")
    except LockedError:
        raise FolderInUseError(f"{folder} is in use by another run (a process holds {LOCK} "
                               f"there); wait for it to end, or give another folder") from None


def _refuse_orphan_checkpoints(folder):
    saved = trainer.run_checkpoint_files(folder)
    if saved:
        raise StartStateError(
            f"{folder} holds {', '.join(saved[:3])}{' ...' if len(saved) > 3 else ''} but no "
            f"{START_STATE}: without the random state their run started from, they cannot "
            f"be resumed to the same numbers; delete the folder to start afresh")


def stop():
    """Trainers made from now on take no run checkpoint, and the folder's lock is released."""
    global _held
    trainer.checkpoint_trainers_into(None)
    if _held is None:
        return
    folder, fd, owner = _held
    _held = None
    if owner == os.getpid():
        release_lock(os.path.join(folder, LOCK), fd)
    elif fd is not None:
        # a forked child's copy of the descriptor: the lock and its file stay the parent's
        os.close(fd)


# at exit, after the interpreter has waited for the script's threads, so that the lock file
# goes with the run (a killed run leaves it, and the next run takes the lock all the same)
atexit.register(stop)


def finish(folder):
    """A note for stderr where the script made no Trainer that could take a checkpoint (a
    course's own Trainer, kept by the serve rule, saves nothing); else None."""
    if trainer.run_checkpoints_taken():
        return None
    return (f"fastconv: --checkpoint {folder}: the script made no fastconv Trainer that "
            f"can be saved, so no training state was saved there (only the start state of "
            f"np.random)")


def _write_start_state(path):
    keys, legacy = checkpoint.legacy_random_state()
    record = {"format": _FORMAT, "version": 1, "keys": [int(k) for k in keys], **legacy}
    with atomic_write(path, "w") as handle:
        json.dump(record, handle)


def read_start_state(path):
    """The np.random state in path, checked as a checkpoint's is; the file is data, never
    code."""
    def refuse(why):
        return StartStateError(f"{path}: not a start state written by fastconv ({why}); "
                               f"delete it, or the folder, to start the run afresh")
    data = read_at_most(path, _MAX_BYTES)
    if data is None:
        raise refuse(f"more than {_MAX_BYTES} bytes")
    try:
        record = json.loads(data, parse_constant=checkpoint.no_json_constants)
    except ValueError as exc:
        raise refuse(f"not strict JSON: {exc}") from None
    expected = {"format", "version", "bit_generator", "keys", "pos", "has_gauss",
                "cached_gaussian"}
    if not isinstance(record, dict) or set(record) != expected:
        raise refuse("other fields")
    if (record["format"], record["version"]) != (_FORMAT, 1):
        raise refuse("another format or version")
    keys = record["keys"]
    words = checkpoint.MT19937_WORDS
    if (not isinstance(keys, list) or len(keys) != words
            or not all(type(k) is int and 0 <= k < 1 << 32 for k in keys)):
        raise refuse(f"keys must be {words} 32-bit words")
    pos, has_gauss, cached = checkpoint.checked_legacy_fields(path, record)
    return ("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
