"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

Everything fastconv writes (parameters, caches, checkpoints) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's own folder, which is
flushed and fsynced and then renamed over the target with ``os.replace``. A full disk, an
exception or a kill half-way leaves the previous file as it was, and the temporary file is
removed (or, after SIGKILL, left under a name starting with ``.<target>.`` and ending in
``.tmp``, which :func:`remove_stale_temporaries` clears).
"""
import contextlib
import os
import tempfile

__all__ = ["atomic_write", "remove_stale_temporaries"]

_SUFFIX = ".tmp"


def _umask():
    # os.umask can only be read by setting it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): the rename still holds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file for writing; on a clean exit it replaces ``path`` atomically.

    The new file gets the permissions an ordinary ``open(path, "w")`` would give it (0666
    less the umask), not ``mkstemp``'s 0600. ``mode`` is ``"wb"`` or ``"w"``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                     suffix=_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def remove_stale_temporaries(path):
    """Remove the temporary files that killed writers of ``path`` left behind."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.startswith(prefix) and name.endswith(_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
