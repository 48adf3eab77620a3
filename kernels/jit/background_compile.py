"""Compiles the conv backward loops in helper processes while this one compiles the forward.

On an empty Numba cache a first training step spends about 11 s compiling, nearly all of it
in the chunk loops of ``pipeline.py``: about 6 s for the im2col forward loop and 5 s for its
backward loop; layers that run by Winograd (DeepConvNet's) add about 3 s for each of the
two Winograd loops. Numba compiles one function at a time in a process, holding the GIL, so
a second core stays idle. So when a forward pass first runs a loop (im2col or Winograd) in a
dtype and Numba's cache holds no matching backward loop, a helper process compiles that
backward loop meanwhile (for a layer run directly, the loop that sums its weight gradient
directly, ``pipeline._backward_loop_after``). The first backward pass of that loop waits for
the helper, adopts its compiled code the way Numba adopts a cache entry, and saves it to the
cache for later processes.

The helper writes only in a temporary folder of its own, cache included: when two processes
compile different signatures of one function into one cache folder at once, Numba can give
both entries the same data file. Anything unexpected (one CPU, no cache, a helper that fails,
is slow or is killed, a Numba whose internals differ) leaves the backward loop to compile
here as before, so the helper can only save time. ``FASTCONV_BACKGROUND_COMPILE=0`` turns it
off.
"""
import atexit
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np

__all__ = ["start", "finish", "adopted"]

SWITCH = "FASTCONV_BACKGROUND_COMPILE"
# The helper needs about the forward loop's own compile time; past this something is wrong
# (a swapping or stopped machine), and compiling here is the safer way on.
WAIT_SECONDS = 120
PAYLOAD = "backward.pkl"
LOOPS = {"im2col": "_backward_chunks", "winograd": "_winograd_backward_chunks",
         "direct": "_direct_backward_chunks", "gather": "_gathered_backward_chunks",
         "winograd4": "winograd4.backward_chunks"}  # in pipeline

_lock = threading.Lock()
# keys "<loop>-<dtype char>", e.g. "im2col-f", "winograd-d"
_decided = set()  # keys whose helper was started or ruled out in this process
_pending = {}     # key -> (helper process, its folder)
adopted = []      # keys whose backward loop came from a helper


def _forget_helpers_in_child():
    # a forked process does not own its parent's helpers, and compiles for itself
    global _lock
    _lock = threading.Lock()
    _pending.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_helpers_in_child)


def _backward_loop(name):
    from . import pipeline
    loop = pipeline
    for part in LOOPS[name].split("."):
        loop = getattr(loop, part)
    return loop


def _key(dtype, loop):
    return f"{loop}-{np.dtype(dtype).char}"


def _has_backward_loop(dtype, name):
    """Whether this process or Numba's cache already has the backward loop for dtype."""
    import numba
    loop = _backward_loop(name)
    wanted = numba.from_dtype(dtype)
    cached = [key[0] for key in loop._cache._cache_file._load_index()]
    return any(signature[0].dtype == wanted for signature in list(loop.overloads) + cached)


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _helper_is_worth_it(dtype, loop):
    from .pipeline import COMPILED
    if os.environ.get(SWITCH, "1") == "0" or not COMPILED or _usable_cpus() < 2:
        return False
    try:
        return not _has_backward_loop(dtype, loop)
    except Exception:  # Numba internals moved, or the cache cannot be read: compile here
        return False


def _spawn(dtype, loop):
    folder = tempfile.mkdtemp(prefix="fastconv-compile-")
    top = __name__.split(".")[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[top].__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(folder, "cache"), NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    env[SWITCH] = "0"
    command = [sys.executable, "-m", __name__, loop, np.dtype(dtype).name, folder,
               str(os.getpid())]
    try:
        # started in its own folder, so that no module in the caller's working directory
        # (sys.path[0] under -m) can shadow the ones it imports
        process = subprocess.Popen(command, env=env, cwd=folder, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return process, folder


def start(dtype, loop="im2col"):
    """Called before a forward pass whose backward pass will run loop ("im2col",
    "winograd", "winograd4", "direct" or "gather") in dtype: the first time, starts the
    helper if it pays."""
    key = _key(dtype, loop)
    if key in _decided:
        return
    with _lock:
        if key in _decided:
            return
        _decided.add(key)
        if _helper_is_worth_it(dtype, loop):
            helper = _spawn(dtype, loop)
            if helper is not None:
                _pending[key] = helper


def finish(dtype, loop="im2col"):
    """Called before a backward pass runs loop in dtype: adopts the helper's loop if one is
    running."""
    if not _pending:
        return
    key = _key(dtype, loop)
    with _lock:
        helper = _pending.pop(key, None)
        if helper is None:
            return
        process, folder = helper
        try:
            process.wait(timeout=WAIT_SECONDS)
            if process.returncode == 0:
                _adopt(os.path.join(folder, PAYLOAD), loop)
                adopted.append(key)
        except BaseException as error:
            _stop(process)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt, SystemExit
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _adopt(path, name):
    """Adds the compiled loops in the helper's payload to this process and to the cache, as
    Numba's dispatcher does with a cache entry."""
    from numba.core.compiler_lock import global_compiler_lock
    loop = _backward_loop(name)
    with open(path, "rb") as file:
        payloads = pickle.load(file)
    with global_compiler_lock:
        loop.targetctx.refresh()
        for payload in payloads:
            compiled = loop._cache._impl.rebuild(loop.targetctx, payload)
            signature = tuple(compiled.signature.args)
            if signature in loop.overloads:
                continue
            loop.targetctx.insert_user_function(compiled.entry_point, compiled.fndesc,
                                                [compiled.library])
            loop.add_overload(compiled)
            # the payload as it came, since a library rebuilt from object code cannot be
            # serialized again
            cache = loop._cache
            cache._impl.locator.ensure_cache_path()
            cache._cache_file.save(cache._index_key(signature, loop.targetctx.codegen()),
                                   payload)


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


@atexit.register
def _stop_helpers():
    for process, folder in list(_pending.values()):
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
    _pending.clear()


def _compile_backward(name, dtype, folder, parent):
    """The helper: one tiny fused conv backward pass of dtype compiles the same loop that the
    layers call, then the compiled code goes to the payload file."""
    from numba.core.serialize import dumps
    from . import pipeline
    from .fused import conv_relu_backward, conv_relu_pool_backward
    dtype = np.dtype(dtype)
    # the tiny pass takes the loop asked for: Winograd for a 3x3 stride-1 conv of 1 channel,
    # F(4x4, 3x3) where its pooled output is of whole 4x4 tiles; for 5 filters over 8x8
    # outputs with no input gradient (the parent asks for these only where its own forward
    # pass ran directly), the direct gradient with no pool, or gathered behind one; or neither
    pipeline.WINOGRAD_MIN_CHANNELS = 1 if name in ("winograd", "winograd4") else sys.maxsize
    pipeline.WINOGRAD4 = pipeline.WINOGRAD4 and name == "winograd4"
    pipeline.winograd4.MIN_OUTPUT_WIDTH = 4
    direct = name in ("direct", "gather")
    size, filters = (10, 5) if direct else (6, 1) if name == "winograd4" else (4, 1)
    images = np.zeros((1, 1, size, size), dtype)
    weights = np.zeros((filters, 1, 3, 3), dtype)
    if name == "direct":
        conv = np.zeros((1, filters, size - 2, size - 2), dtype)
        conv_relu_backward(conv, conv, images, weights, None, 1, 0, need_dx=False)
    else:
        pooled = np.zeros((1, filters, (size - 2) // 2, (size - 2) // 2), dtype)
        conv_relu_pool_backward(pooled, pooled, np.zeros(pooled.shape, np.intp), images,
                                weights, None, 1, 0, 2, 2, 2, 0, need_dx=not direct)
    loop = _backward_loop(name)
    data = dumps([loop._cache._impl.reduce(compiled) for compiled in loop.overloads.values()])
    partial = os.path.join(folder, PAYLOAD + ".partial")
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, os.path.join(folder, PAYLOAD))
    if os.getppid() != parent:  # the parent died: nobody will read or remove the folder
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    _compile_backward(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
