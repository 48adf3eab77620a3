"""Keeps Numba's on-disk cache from serving machine code built from older kernel sources.

Numba checks a cached kernel against the source of its own file only. Kernels here inline
functions from other files (the fused epilogues inline ``pool.py``'s 2x2 pool, the pipelines
``im2col.py``), so when only such a file changes, as after ``git pull`` in an editable
install, the kernels that inline it would keep running the old code, while new code
elsewhere may expect a new contract from it.

So a fingerprint of every kernel source is recorded in the cache folder. When it differs at
import, this package's cache entries there are removed before any kernel can load, and each
kernel compiles afresh once (about 10 s in all). Removing is safe for another process using
the cache at that moment: Numba treats a vanished entry as a miss and compiles. Every other
import costs under a millisecond.
"""
import hashlib
import os
from pathlib import Path

JIT = Path(__file__).resolve().parent
RECORD_NAME = "fastconv-kernel-sources.txt"


def kernel_sources(root=JIT):
    """Every file whose code the Numba kernels may compile in, in a fixed order."""
    root = Path(root)
    return sorted(root.parent.glob("*.py")) + sorted(root.glob("*.py"))


def fingerprint(paths):
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def numba_cache_folder(source):
    """Where Numba caches the functions of the file ``source`` (in-tree ``__pycache__``, the
    user-wide cache, or ``NUMBA_CACHE_DIR``), or None when it cannot cache there."""
    try:
        from numba.core.caching import FunctionCache
        namespace = {}
        exec(compile("def probe():\n    pass\n", str(source), "exec"), namespace)
        return Path(FunctionCache(namespace["probe"])._cache_path)
    except Exception:  # an internal API: without it, the guard stands aside
        return None


def invalidate_if_sources_changed(root=JIT, cache=None):
    """Remove the cache entries of the kernels in ``root`` when any kernel source changed
    since the fingerprint recorded in ``cache`` (default: Numba's folder for them); True
    when it did. A folder that cannot be written is left alone."""
    paths = kernel_sources(root)
    cache = numba_cache_folder(paths[-1]) if cache is None else Path(cache)
    if cache is None:
        return False
    current = fingerprint(paths)
    record = cache / RECORD_NAME
    try:
        if record.read_text(encoding="ascii").strip() == current:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    modules = {path.stem for path in paths}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for entry in os.listdir(cache):
            if entry.endswith((".nbi", ".nbc")) and entry.split(".", 1)[0] in modules:
                try:
                    os.unlink(cache / entry)
                except FileNotFoundError:  # another process removed it first
                    pass
        partial = cache / f"{RECORD_NAME}.{os.getpid()}.tmp"
        partial.write_text(current + "\n", encoding="ascii")
        os.replace(partial, record)
    except OSError:
        return False
    return True
