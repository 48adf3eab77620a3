"""One loop kernel compiled twice: parallel for large arrays, serial for small ones.

A parallel loop costs 30-50 us to start with Numba's workqueue threading layer (60-190 us
on the Zen 5 of issue #16), and these loops are memory-bound: on the 2-core reference
machine the serial build of a ReLU or an SGD step beat the 2-thread parallel one up to a
million elements (ReLU at 1M: 140 against 204 us), and Adam's never won in SimpleConvNet's
steps. So the kernels that work element by element or image by image now run in parts on
fastconv's own pool threads instead (``in_parts_above``, below); ``parallel_above`` keeps
the loops over rows or columns (bias add, column sums, softmax, BatchNorm).

``parallel_above`` compiles the same Python function both ways (``prange`` runs as
``range`` in the serial build) and picks one per call from the size of the first argument
and the thread count; each element's arithmetic is the same in both, and both use NumPy's
error model (a division by zero gives inf or NaN), so the choice never changes a result.

With one Numba thread the serial build runs whatever the size: workqueue hands even a
one-thread loop to its worker thread and waits for it, and Adam on 432,000 float32 elements
took 363 us that way against 213 us serial (one thread, medians of 400, interleaved).

One parallel region at a time in the process: Numba's workqueue layer (which fastconv picks,
see fastconv/__init__.py) aborts the whole process (SIGABRT) when two Python threads launch
parallel loops at once. A call runs the parallel build only if it takes the region lock
without waiting; a thread that finds another inside runs the serial build, which gives the
same bits. Nothing waits on the lock, so nothing can deadlock on it.

``in_parts_above`` is for the kernels that work element by element (the optimizer updates,
ReLU) or image by image (the standalone max-pool): above a size, their arrays are cut into
``gemm.pieces`` along the first axis and the serial build runs on each piece, on the threads
of ``gemm.run_parts``, whose hand-over costs far less than a parallel loop's start
(``handover``). Adam on SimpleConvNet's 432,000 weights, Zen 5, 2 threads, medians of
400: float32 65 us in parts against 80 us serial and 194 us as a parallel loop; float64 105
against 162 and 179 us. Each element's arithmetic is the serial build's, so the bits are the
same whichever way a call runs.
"""
import functools
import os
import threading
import types

import numba
import numpy as np
from numba import njit
from numba.core.errors import TypingError

from .gemm import pieces, run_parts

__all__ = ["parallel_above", "in_parts_above", "parallel_region", "PARALLEL_MIN_SIZE"]

PARALLEL_MIN_SIZE = 1 << 20  # elements; below this a second thread does not pay

parallel_region = threading.Lock()  # held by the one thread inside a parallel build


def _new_region_lock_in_child():
    # a thread that held it in the parent does not exist in a forked child
    global parallel_region
    parallel_region = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_region_lock_in_child)


def _renamed(fn, suffix):
    # Numba names cache files after the qualified name: the serial build needs its own.
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def parallel_above(min_size=PARALLEL_MIN_SIZE):
    def decorate(fn):
        parallel = njit(parallel=True, cache=True)(fn)
        # NumPy's error model, which parallel builds use too: a division by zero gives inf
        # or NaN as in NumPy instead of raising ZeroDivisionError half-way through an
        # in-place update, and without that branch a loop that divides vectorizes (Adam: 4-6x)
        serial = njit(cache=True, error_model="numpy")(_renamed(fn, "_serial_numpy_errors"))

        @functools.wraps(fn)
        def call(*args):
            if args[0].size >= min_size and numba.get_num_threads() > 1:
                region = parallel_region
                if region.acquire(blocking=False):
                    try:
                        return call.parallel(*args)
                    finally:
                        region.release()
            return call.serial(*args)

        call.parallel, call.serial = parallel, serial
        return call
    return decorate


def in_parts_above(min_bytes, contract=None):
    """For a kernel whose work on each index of its arrays' first axis is independent of the
    others (an element of 1-D arrays, an image of a batch): from ``min_bytes`` of its first
    array on, with 2+ threads, ``call.parallel`` runs the serial build on pieces of that axis
    at once; else ``call.serial`` runs on all of it. Arrays whose first axis has the first
    array's length are cut; scalars and other arrays are passed whole (a kernel refuses a
    wrong size before it writes). So every array argument must be indexed by that axis: a
    per-column vector (a bias add's b) would be cut where its length equals the batch's.

    contract, what the arguments must be, replaces Numba's typing error (a page about
    getitem on a 0-d array) with a TypeError that says it; a call that types costs nothing
    more."""
    def decorate(fn):
        # nogil, so that the pieces run on their threads at once
        serial = njit(cache=True, nogil=True, error_model="numpy")(
            _renamed(fn, "_serial_nogil"))

        @functools.wraps(fn)
        def call(*args):
            # (a list has no nbytes: the serial build's typing refuses it below)
            large = getattr(args[0], "nbytes", 0) >= min_bytes
            if contract is not None and list in map(type, args):
                # refused before Numba types it: that warns of reflected lists first
                raise TypeError(f"{fn.__name__}: {contract}; got "
                                f"{', '.join(map(_described, args))}")
            try:
                if large and numba.get_num_threads() > 1:
                    return call.parallel(*args)
                return call.serial(*args)
            except (TypingError, NotImplementedError):  # (Numba types no float16 array)
                if contract is None:
                    raise
                raise TypeError(f"{fn.__name__}: {contract}; got "
                                f"{', '.join(map(_described, args))}") from None

        def in_parts(*args):
            n = len(args[0])

            def piece(lo, hi):
                return call.serial(*[a[lo:hi] if _split(a, n) else a for a in args])
            run_parts([functools.partial(piece, lo, hi) for lo, hi in pieces(n)])

        call.parallel, call.serial, call.min_bytes = in_parts, serial, min_bytes
        return call
    return decorate


def _described(arg):
    if not isinstance(arg, np.ndarray):
        return type(arg).__name__
    return f"{arg.dtype}{list(arg.shape)}" + ("" if arg.flags.writeable else " (read-only)")


def _split(arg, n):
    return getattr(arg, "ndim", 0) >= 1 and arg.shape[0] == n
