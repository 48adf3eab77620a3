"""Large output arrays of the jit kernels, made again from arrays that nothing holds any more.

A training step makes the same large arrays every step: a conv block's output and argmax,
the affine layers' products and gradients, the input gradients. Each new array of a few
megabytes is new memory to the process: glibc hands the freed ones back to the system at
the top of its heap, and the next step faults every 4 KB page in again. SimpleConvNet in
float64 took 497-553 page faults a step that way, 1.2-3.1 ms of system time in a step of
16-22 ms.

``empty(shape, dtype)`` is ``np.empty`` for a small array. For a large one it returns an
array that an earlier call made with that shape and dtype, if only this module still
references it, and otherwise a new one, which it keeps for later calls. An array that a
caller, a layer or a view still references is never handed out again, so no result can
change; only memory that would have been freed is kept, at most ``MAX_KEPT_BYTES`` of it,
the shapes used longest ago given up first. ``release()`` gives it all up.
"""
import os
import sys
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["empty", "empty_like", "release"]

MIN_BYTES = 1 << 18          # with this bound SimpleConvNet's steps took no page faults
MAX_KEPT_PER_SHAPE = 4       # a layer's arrays of two steps, and two in a caller's hands
MAX_KEPT_BYTES = 256 << 20   # DeepConvNet, 100 float64 images: 55 MB, the layers' own included

_lock = threading.Lock()
_kept = OrderedDict()  # (shape, dtype) -> [arrays], the shape used last at the end
_kept_bytes = 0


def _references(arrays, i):
    return sys.getrefcount(arrays[i])


def _references_of_unheld():
    """What ``_references`` counts for an array that only a kept list holds. Measured, not
    assumed: the interpreter's own count of the call's references differs between versions."""
    arrays = [np.empty(1)]
    return _references(arrays, 0)


_UNHELD = _references_of_unheld() if hasattr(sys, "getrefcount") else None


def _new_lock_in_child():
    # a fork may happen while another thread holds the lock, which the child never releases
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_lock_in_child)


def empty(shape, dtype):
    """np.empty(shape, dtype), C-ordered; for a large array maybe an earlier one, unheld."""
    dtype = np.dtype(dtype)
    if type(shape) is tuple:  # the kernels' calls: np.ndim costs more than np.empty itself
        shape = tuple(map(int, shape))
    else:
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes < MIN_BYTES or nbytes > MAX_KEPT_BYTES or _UNHELD is None:
        return np.empty(shape, dtype)
    key = (shape, dtype)
    with _lock:
        arrays = _kept.setdefault(key, [])
        _kept.move_to_end(key)
        for i in range(len(arrays)):
            if _references(arrays, i) <= _UNHELD:
                return arrays[i]
        array = np.empty(shape, dtype)
        if len(arrays) < MAX_KEPT_PER_SHAPE:
            _give_up_unheld(MAX_KEPT_BYTES - nbytes, key)
            if _kept_bytes + nbytes <= MAX_KEPT_BYTES:
                arrays.append(array)
                _add_kept_bytes(nbytes)
        return array


def _add_kept_bytes(nbytes):
    global _kept_bytes
    _kept_bytes += nbytes


def _give_up_unheld(budget, current):
    """Forgets unheld arrays, of the shapes used longest ago first, until at most budget
    bytes are kept (or none is left unheld); a shape left with none is forgotten, unless it
    is the current one."""
    for key in list(_kept):
        if _kept_bytes <= budget:
            return
        arrays = _kept[key]
        i = 0
        while i < len(arrays) and _kept_bytes > budget:
            if _references(arrays, i) <= _UNHELD:
                _add_kept_bytes(-arrays.pop(i).nbytes)
            else:
                i += 1
        if not arrays and key != current:
            del _kept[key]


def empty_like(a):
    """``empty`` with a's shape and dtype."""
    return empty(a.shape, a.dtype)


def release():
    """Gives up every kept array that nothing else holds (the rest are forgotten too)."""
    global _kept_bytes
    with _lock:
        _kept.clear()
        _kept_bytes = 0
