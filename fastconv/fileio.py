"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

Everything fastconv writes (parameters, caches, checkpoints) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's own folder, which is
flushed and fsynced and then renamed over the target with ``os.replace``. A full disk, an
exception or a kill half-way leaves the previous file as it was, and the temporary file is
removed (or, after SIGKILL, left as ``.<target>.<12 hex digits>.tmp``, which
:func:`remove_stale_temporaries` clears; for a name too long to take 18 more bytes, the
``<target>`` part is its start and a hash of the whole).
"""
import contextlib
import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import threading
import time

__all__ = ["atomic_write", "remove_stale_temporaries", "read_at_most", "open_regular",
           "NotARegularFileError", "lock_file_for", "hold_lock", "release_lock", "LockedError"]

_SUFFIX = ".tmp"
_TOKEN_DIGITS = 12
_NAME_MAX = 255  # bytes in a file name on common file systems (ext4, XFS, APFS, NTFS)


def _temporary_stem(name):
    """What stands for ``name`` in its temporary files' names: the name itself when
    ``.<name>.<token>.tmp`` fits in _NAME_MAX bytes, else its start and a hash of it."""
    extra = 1 + 1 + _TOKEN_DIGITS + len(_SUFFIX)
    encoded = os.fsencode(name)
    if len(encoded) + extra <= _NAME_MAX:
        return name
    digest = "~" + hashlib.sha256(encoded).hexdigest()[:16]
    stem = name
    while len(os.fsencode(stem + digest)) + extra > _NAME_MAX:
        stem = stem[:-1]  # by characters, so that a multi-byte character is never split
    return stem + digest


def _create_temporary(folder, name):
    """Create and open a new file beside ``name``; return (fd, its path).

    ``os.open`` with mode 0666 lets the kernel apply the umask (and a folder's default ACL)
    exactly as for an ordinary ``open(path, "w")``; ``mkstemp`` would force 0600, and reading
    the umask means setting it, which races with other threads creating files. Where ``name``
    exists, the new file takes its permission bits, as ``open`` keeps them: a private file
    stays private.
    """
    stem = _temporary_stem(name)
    for _ in range(100):
        token = secrets.token_hex(_TOKEN_DIGITS // 2)
        temporary = os.path.join(folder, f".{stem}.{token}{_SUFFIX}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        try:
            _keep_permissions(fd, os.path.join(folder, name))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return fd, temporary
    raise FileExistsError(f"no free temporary name beside {os.path.join(folder, name)}")


def _keep_permissions(fd, path):
    try:
        mode = os.stat(path).st_mode
    except OSError:  # no such file yet: the umask's permissions, as for open()
        return
    if stat.S_ISREG(mode) and hasattr(os, "fchmod"):
        # not set-user/group-ID: writing to a file clears those, so open() would not keep them
        os.fchmod(fd, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


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

    The new file gets the permissions an ordinary ``open(path, "w")`` would give it: those of
    the file it replaces, else 0666 less the umask (not ``mkstemp``'s 0600). A symbolic link
    is followed: the file it names is replaced, the link stays. ``mode`` is ``"wb"`` or
    ``"w"``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    # through a symbolic link to the file it names, as open() would write
    path = os.path.realpath(os.fspath(path))
    try:
        present = os.stat(path).st_mode
    except OSError:  # none yet (or not to be seen): the temporary file's creation will tell
        present = None
    if present is not None and stat.S_ISDIR(present):
        # (else the error would name the temporary file)
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of the file", path)
    if present is not None and not stat.S_ISREG(present):
        # the rename would put a regular file in place of a device (as root, /dev/null) or a
        # FIFO that another program reads
        raise _not_regular(present, path, "writes")
    folder, name = os.path.split(path)
    with _ctrl_c_after_the_write():
        try:
            fd, temporary = _create_temporary(folder, name)
        except OSError as exc:
            if exc.errno is None:
                raise
            # (a read-only or full file system, a folder without write permission): the
            # error named the temporary file, which the caller never heard of
            raise _left_as_it_was(exc, path) from exc
        try:
            with os.fdopen(fd, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
                # a full disk's error names no file; say which, and that nothing was lost
                raise _left_as_it_was(exc, path) from exc
            raise
        _fsync_folder(folder)


@contextlib.contextmanager
def _ctrl_c_after_the_write():
    """A Ctrl-C during the block is raised when it is over; a second one at once.

    A Ctrl-C that came between the temporary file's creation and the cleanup's start, or
    inside the cleanup, left the temporary file behind (7 of some 1,240 Ctrl-Cs over 1,700
    saves). Only in the main thread, where Python raises it, and where SIGINT has Python's
    default handler (a program's own, or a Trainer's, is left alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pressed = []

    def hold(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt


def _left_as_it_was(error, path):
    """error again, naming path, which a failed atomic_write left as it was."""
    return OSError(error.errno, f"{error.strerror}; the file was left as it was", path)


# what flock raises on a file system that cannot lock (NFS without its lock daemon, some
# FUSE and SMB mounts)
_NO_LOCKS = {getattr(errno, name) for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS",
                                               "EINVAL") if hasattr(errno, name)}


class LockedError(OSError):
    """Another holder (a process, or another Trainer of this one) has the lock."""


_held_locks = set()  # this process's descriptors from hold_lock; a forked child has none


def _let_go_of_locks_in_child():
    # A child shares each open lock with its parent, and kept it after the parent's death
    # (a killed run's rerun was refused while a child it had forked lived on): its copies
    # close, so that each lock stays the parent's alone and goes with it
    for fd in _held_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_locks.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_let_go_of_locks_in_child)


def lock_file_for(path):
    """The lock file that guards ``path``: ``.<name>.lock`` beside it."""
    path = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(path)
    return os.path.join(folder, "." + _temporary_stem(name) + ".lock")


def hold_lock(lock_path, what):
    """Takes the advisory lock of ``lock_path`` (made empty if missing) and returns its
    descriptor: closing it, or the process's end, even by a kill, releases the lock.
    LockedError, naming ``what`` is locked, where another holder has it. Where the platform
    has no ``flock`` (Windows), or the file system none to offer (some network file systems),
    or the folder is read-only (where no run can write, none can spoil another's files),
    nothing is locked and None comes back: the run goes on as it did before locks."""
    try:
        import fcntl
    except ImportError:
        return None
    while True:
        try:
            # no link followed: a link planted in a shared folder must not make us create
            # its target
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "a symbolic link is in the way of the lock file, "
                                         "which fastconv does not follow; remove it",
                              lock_path) from None
            raise
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotARegularFileError(
                    errno.EINVAL, f"not a regular file but a {_kind(mode)}; fastconv keeps "
                                  f"the lock of {what} there: remove it", lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(errno.EWOULDBLOCK, f"{what} is in use by another run, "
                                                     f"which holds its lock", lock_path) from None
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
                return None
            if _same_file(fd, lock_path):
                _held_locks.add(fd)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed the file meanwhile (release_lock): take the new one


def _same_file(fd, path):
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def release_lock(lock_path, fd):
    """Removes the lock file of ``hold_lock`` and releases its lock (the file goes first: a
    run that opened it meanwhile finds it gone once it gets the lock, and tries again). A
    file at lock_path that is not the one held (someone deleted ours, and another run made
    and locked a new one) is that run's, and stays. In a forked child, whose copy of the
    parent's lock closed at the fork, nothing is done: the lock and its file are the
    parent's."""
    if fd is None or fd not in _held_locks:
        return
    _held_locks.discard(fd)
    try:
        if _same_file(fd, lock_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
    finally:
        os.close(fd)


def remove_stale_temporaries(path, min_age=0.0):
    """Remove the temporary files that killed writers of ``path`` left behind.

    Only those last modified more than ``min_age`` seconds ago: a younger one may belong to a
    writer still running in another process.
    """
    path = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(path)
    # exactly this file's temporaries: a prefix alone would take those of "<name>.2" too
    ours = re.compile(re.escape("." + _temporary_stem(name) + ".")
                      + "[0-9a-f]{%d}" % _TOKEN_DIGITS + re.escape(_SUFFIX))
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if ours.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime >= min_age:
                        os.unlink(entry.path)


class NotARegularFileError(OSError):
    """A path fastconv was to read or write is a FIFO, a device, a socket or a folder."""


def _kind(mode):
    for test, kind in ((stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _not_regular(mode, path, use):
    """The error for path, of stat mode ``mode``, which fastconv ``use``s ("reads",
    "writes") only as a regular file."""
    return NotARegularFileError(errno.EINVAL, f"not a regular file but a {_kind(mode)}; "
                                              f"fastconv {use} only regular files", path)


def open_regular(path):
    """path opened for reading in binary, if it is a regular file (a symbolic link to one
    will do); else NotARegularFileError naming what it is. A FIFO would block the open, and
    a device such as /dev/zero has no end and a size of 0 that passes every size check."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: a FIFO with no writer opens instead of waiting
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):  # what open() raises for one
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise _not_regular(mode, os.fspath(path), "reads")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_at_most(path, limit):
    """The bytes of the regular file path, or None where it holds more than limit (at most
    limit + 1 are read: a hostile file's size costs nothing)."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data
