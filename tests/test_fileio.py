"""fastconv.fileio.atomic_write: the previous file survives any failure; new files follow the umask.

Failures that end the process (a full disk, SIGKILL) run in a subprocess with a timeout.
"""
import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from fastconv import fileio
from fastconv.fileio import atomic_write, remove_stale_temporaries


def write(path, data, mode="wb"):
    with atomic_write(path, mode) as f:
        f.write(data)


def run_child(script):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)


def test_replaces_the_file(tmp_path):
    path = tmp_path / "f.bin"
    write(path, b"old")
    write(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    write(path, "text\n", mode="w")
    assert path.read_text() == "text\n"
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_write_keeps_the_previous_file(tmp_path, error):
    path = tmp_path / "f.bin"
    write(path, b"good")
    with pytest.raises(error):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise error
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_folder_in_the_way_is_named_and_left_alone(tmp_path):
    # the error named the hidden temporary file that os.replace could not move
    folder = tmp_path / "params.pkl"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        with atomic_write(folder) as f:
            f.write(b"x")
    assert raised.value.filename == str(folder)
    assert os.listdir(folder) == [] and os.listdir(tmp_path) == ["params.pkl"]


def test_full_disk_keeps_the_previous_file(tmp_path):
    path = tmp_path / "f.bin"
    write(path, b"good" * 1000)
    done = run_child(f"""
        import resource, signal
        from fastconv.fileio import atomic_write
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            with atomic_write({str(path)!r}) as f:
                for _ in range(100):
                    f.write(bytes(10_000))
        except OSError as exc:
            print("failed:", exc)
        """)
    assert done.returncode == 0 and done.stdout.startswith("failed:"), done.stdout + done.stderr
    assert f"the file was left as it was: '{path}'" in done.stdout  # it names the file
    assert path.read_bytes() == b"good" * 1000
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.parametrize("code", ["EROFS", "EACCES", "ENOSPC"])
def test_a_folder_that_takes_no_new_file_is_named_in_the_error(tmp_path, monkeypatch, code):
    # (root ignores permissions, and a read-only mount needs privileges: refused by hand)
    path = tmp_path / "run.ckpt"
    write(path, b"good")
    real_open = os.open

    def refuse_new_files(name, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), name)
        return real_open(name, flags, *args)
    monkeypatch.setattr(os, "open", refuse_new_files)
    with pytest.raises(OSError) as raised:
        with atomic_write(path) as f:
            f.write(b"new")
    assert raised.value.errno == getattr(errno, code)
    assert raised.value.filename == str(path)  # not the temporary file's name
    assert str(raised.value).endswith(f"; the file was left as it was: '{path}'")
    assert path.read_bytes() == b"good" and os.listdir(tmp_path) == ["run.ckpt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_or_a_device_in_place_of_the_file_is_refused_and_stays(tmp_path):
    # the rename would have put a regular file in their place: as root, in place of /dev/null
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    targets = [(fifo, "FIFO", stat.S_ISFIFO)]
    try:  # a device node of our own (root only), never the system's
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append((tmp_path / "null", "character device", stat.S_ISCHR))
    except (PermissionError, AttributeError):
        pass
    for path, kind, still in targets:
        with pytest.raises(fileio.NotARegularFileError, match=f"not a regular file but a {kind}"):
            with atomic_write(path) as f:
                f.write(b"x")
        assert still(os.stat(path).st_mode)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p, _, _ in targets)


def test_kill_mid_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "f.bin"
    write(path, b"good")
    done = run_child(f"""
        import os, signal
        from fastconv.fileio import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b"half")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert done.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"good"
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0].startswith(".f.bin.") and left[0].endswith(".tmp")
    (tmp_path / "f.bin.other").write_bytes(b"not a temporary")
    remove_stale_temporaries(path)
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "f.bin.other"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write(tmp_path / "f.bin", b"x")
        with open(tmp_path / "plain.bin", "wb"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "f.bin").stat().st_mode == (tmp_path / "plain.bin").stat().st_mode


def test_symbolic_link_is_followed(tmp_path):
    target = tmp_path / "real.bin"
    write(target, b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_bad_mode_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "f.bin", "ab"):
            pass
    assert os.listdir(tmp_path) == []


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write(tmp_path / "nowhere" / "f.bin", b"x")


def test_leftovers_of_another_file_whose_name_starts_the_same_are_kept(tmp_path):
    # ".run.ckpt.2.<token>.tmp" is run.ckpt.2's temporary file, maybe of a save in progress
    other = tmp_path / ".run.ckpt.2.0123456789ab.tmp"
    mine = tmp_path / ".run.ckpt.0123456789ab.tmp"
    for leftover in (other, mine):
        leftover.write_bytes(b"x")
    remove_stale_temporaries(tmp_path / "run.ckpt")
    assert other.exists() and not mine.exists()


@pytest.mark.parametrize("length", [237, 238, 250, 255])
def test_names_up_to_255_bytes_can_be_written(tmp_path, length):
    path = tmp_path / ("é" * ((length - 1) // 2) + "x" * (1 + (length - 1) % 2))
    assert len(os.fsencode(path.name)) == length
    write(path, b"first")
    write(path, b"second")
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == [path.name]
    # a killed writer's leftover of this name is found and removed
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write(b"half")
            leftover = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
            os.link(tmp_path / leftover[0], tmp_path / (leftover[0][:-16] + "fedcba987654.tmp"))
            raise RuntimeError("stop")
    assert len(os.listdir(tmp_path)) == 2
    remove_stale_temporaries(path)
    assert os.listdir(tmp_path) == [path.name] and path.read_bytes() == b"second"


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no fchmod on this platform")
def test_a_file_written_over_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.pkl"
    write(path, b"secret")
    path.chmod(0o600)
    write(path, b"new secret")
    assert path.stat().st_mode & 0o7777 == 0o600 and path.read_bytes() == b"new secret"
    path.chmod(0o6755)  # set-user/group-ID bits are not carried over: a write clears them
    write(path, b"third")
    assert path.stat().st_mode & 0o7777 == 0o755


posix_only = pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="flock is POSIX")


def _ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # Python runs its handler at the next instruction it checks
        pass


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="os.kill of SIGINT")
@pytest.mark.parametrize("presses", [1, 2])
def test_a_ctrl_c_during_a_write_comes_after_it_and_a_second_at_once(tmp_path, presses):
    # a Ctrl-C that came where the cleanup could not see it left the temporary file behind
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        path = tmp_path / "params.pkl"
        path.write_bytes(b"old")
        with pytest.raises(KeyboardInterrupt):
            with atomic_write(path) as f:
                f.write(b"new")
                for _ in range(presses):
                    _ctrl_c()
                f.write(b" and whole")
        assert path.read_bytes() == (b"new and whole" if presses == 1 else b"old")
        assert os.listdir(tmp_path) == ["params.pkl"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@posix_only
def test_a_lock_is_held_once_and_its_file_goes_with_its_release(tmp_path):
    lock = fileio.lock_file_for(tmp_path / "run.ckpt")
    assert os.path.basename(lock) == ".run.ckpt.lock"
    fd = fileio.hold_lock(lock, "run.ckpt")
    with pytest.raises(fileio.LockedError, match="run.ckpt is in use by another run"):
        fileio.hold_lock(lock, "run.ckpt")  # another open of it, even in this process
    fileio.release_lock(lock, fd)
    assert os.listdir(tmp_path) == []
    fileio.release_lock(lock, fileio.hold_lock(lock, "run.ckpt"))  # free again


@posix_only
def test_a_release_leaves_the_lock_file_of_a_run_that_came_after_a_deletion(tmp_path):
    # a user deleted the held lock file (a leftover look-alike), and a second run made and
    # locked a new one: the first run's release must leave it, or a third run starts too
    lock = fileio.lock_file_for(tmp_path / "run.ckpt")
    first = fileio.hold_lock(lock, "run.ckpt")
    os.unlink(lock)
    second = fileio.hold_lock(lock, "run.ckpt")
    fileio.release_lock(lock, first)
    with pytest.raises(fileio.LockedError):
        fileio.hold_lock(lock, "run.ckpt")
    fileio.release_lock(lock, second)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork")
@pytest.mark.parametrize("child_releases", [False, True])
def test_a_forked_child_holds_none_of_its_parents_locks(tmp_path, child_releases):
    # a child that outlived a killed run kept its lock, and the rerun was refused; a child
    # that released it (a copy of the parent's Trainer ending) removed the parent's file
    lock = fileio.lock_file_for(tmp_path / "run.ckpt")
    fd = fileio.hold_lock(lock, "run.ckpt")
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if child_releases:
                fileio.release_lock(lock, fd)  # the parent's: the file stays, and its lock
            os.write(from_child, b"1" if os.path.exists(lock) else b"0")
            os.read(to_child, 1)  # alive until the parent is done
        finally:
            os._exit(0)
    try:
        assert os.read(to_parent, 1) == b"1"
        os.close(fd)  # the parent's end, as a kill ends it: the lock file stays behind
        fileio._held_locks.discard(fd)
        fileio.release_lock(lock, fileio.hold_lock(lock, "run.ckpt"))  # a rerun takes it
    finally:
        os.write(from_parent, b"x")
        os.waitpid(pid, 0)


@posix_only
def test_a_link_planted_as_the_lock_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / ".run.ckpt.lock").symlink_to(target)
    with pytest.raises(OSError, match="a symbolic link is in the way of the lock file"):
        fileio.hold_lock(fileio.lock_file_for(tmp_path / "run.ckpt"), "run.ckpt")
    assert not target.exists()


@posix_only
def test_a_fifo_planted_as_the_lock_file_is_refused_by_what_it_is(tmp_path):
    lock = fileio.lock_file_for(tmp_path / "run.ckpt")
    os.mkfifo(lock)
    with pytest.raises(fileio.NotARegularFileError,
                       match="not a regular file but a FIFO; fastconv keeps the lock of "
                             "run.ckpt there: remove it"):
        fileio.hold_lock(lock, "run.ckpt")
    assert stat.S_ISFIFO(os.stat(lock).st_mode)  # left for its owner


@posix_only
@pytest.mark.parametrize("code", ["EROFS", "EACCES"])
def test_a_folder_that_cannot_take_a_lock_file_runs_unlocked(tmp_path, monkeypatch, code):
    # a finished checkpoint in a read-only folder is still read (root ignores chmod: the
    # refusal is made by hand)
    real_open = os.open

    def refuse_locks(path, flags, *args):
        if str(path).endswith(".lock"):
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), path)
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", refuse_locks)
    assert fileio.hold_lock(fileio.lock_file_for(tmp_path / "run.ckpt"), "run.ckpt") is None


@posix_only
@pytest.mark.parametrize("code", ["ENOLCK", "EOPNOTSUPP"])
def test_a_file_system_that_cannot_lock_runs_unlocked(tmp_path, monkeypatch, code):
    import fcntl

    def refuse(fd, operation):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
    monkeypatch.setattr(fcntl, "flock", refuse)
    lock = fileio.lock_file_for(tmp_path / "run.ckpt")
    assert fileio.hold_lock(lock, "run.ckpt") is None
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(fcntl, "flock", lambda fd, operation: (_ for _ in ()).throw(
        OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):  # any other failure is the caller's
        fileio.hold_lock(lock, "run.ckpt")
