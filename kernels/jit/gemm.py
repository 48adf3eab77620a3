"""Matrix products for the jit kernels: single-threaded BLAS calls split over a thread pool.

OpenBLAS's worker threads busy-wait for a long while after each call. On a 2-core machine
they then steal the cores from the Numba loop that follows every GEMM here: im2col followed
by a GEMM took 19-24 ms where the two alone took 10 + 4. So the jit backend keeps BLAS
single-threaded while it multiplies and splits a large product into parts that Python
threads run at once (BLAS releases the GIL); idle pool threads sleep instead of spinning.

Where a product is split depends only on its shapes, never on the thread count: output rows
or columns when there are many, else the inner dimension into a fixed number of partial
products summed in a fixed order. Results are therefore identical with 1 thread or 2.
"""
import atexit
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["matmul", "matmul_pair", "pieces", "run_parts", "single_threaded_blas", "blas_scope"]

PARTS = 2                 # how many pieces a large product is cut into
MIN_SPLIT_FLOPS = 2e7     # smaller products run in one call: a hand-off costs ~25 us
MIN_SPLIT_DIM = 64        # an output side shorter than this is not split
INNER_SPLIT_RATIO = 8     # an inner dimension this many times the longer output side is split:
                          # each part then reads half of both factors instead of all of one
OPENBLAS_SERIAL_MNK = 65536 * 4  # OpenBLAS itself runs a GEMM with m*n*k up to this serially

_executor = None
_blas = None
_pinned = threading.local()  # .depth: how many single_threaded_blas blocks this thread is in


def _pool():
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=PARTS - 1, thread_name_prefix="fastconv-gemm")
        atexit.register(_executor.shutdown, wait=False)
    return _executor


def _blas_controllers():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave BLAS alone
            _blas = []
    return _blas


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS on one thread inside the block; its previous thread count is restored after.

    Re-entrant: blocks nested in one thread pin and restore once, at the outermost block.
    A pin and restore through threadpoolctl costs ~9 us, a tenth of a TwoLayerNet step, so a
    network wraps its whole step in one block (``blas_scope``) and the GEMMs inside it pay
    nothing.
    """
    depth = getattr(_pinned, "depth", 0)
    _pinned.depth = depth + 1
    try:
        if depth:
            yield
            return
        saved = [(lib, lib.get_num_threads()) for lib in _blas_controllers()]
        for lib, count in saved:
            if count != 1:
                lib.set_num_threads(1)
        try:
            yield
        finally:
            for lib, count in saved:
                if count != 1:
                    lib.set_num_threads(count)
    finally:
        _pinned.depth = depth


# What a network step runs inside (see fastconv.nets): for this backend, one BLAS pin.
blas_scope = single_threaded_blas


def pieces(size, parts=PARTS):
    """[lo, hi) ranges cutting range(size) into at most `parts` near-equal non-empty pieces.

    Depends on the sizes only, never on the thread count."""
    bounds = [size * i // parts for i in range(parts + 1)]  # np.linspace cost 10 us a call
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def run_parts(tasks):
    """Run the callables, in parallel when Numba is allowed more than one thread."""
    if numba.get_num_threads() < 2 or len(tasks) < 2:
        return [task() for task in tasks]
    futures = [_pool().submit(task) for task in tasks[1:]]
    first = tasks[0]()
    return [first] + [f.result() for f in futures]


def matmul(a, b):
    """a @ b for 2-D float arrays (views and transposes are fine), as a new C-ordered array."""
    m, k = a.shape
    n = b.shape[1]
    dtype = np.result_type(a, b)
    if m * n * k <= OPENBLAS_SERIAL_MNK:
        return a @ b  # no worker thread wakes up: no need to pin BLAS to one thread
    with single_threaded_blas():
        if 2.0 * m * n * k < MIN_SPLIT_FLOPS:
            return a @ b
        out = np.empty((m, n), dtype=dtype)
        if max(m, n) >= MIN_SPLIT_DIM and k < INNER_SPLIT_RATIO * max(m, n):
            if m >= n:
                tasks = [lambda lo=lo, hi=hi: np.matmul(a[lo:hi], b, out=out[lo:hi])
                         for lo, hi in pieces(m)]
            else:
                tasks = [lambda lo=lo, hi=hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
                         for lo, hi in pieces(n)]
            run_parts(tasks)
            return out
        partials = run_parts([lambda lo=lo, hi=hi: a[:, lo:hi] @ b[lo:hi]
                              for lo, hi in pieces(k)])
        out[...] = partials[0]
        for extra in partials[1:]:
            out += extra
        return out


def matmul_pair(a1, b1, a2, b2):
    """(a1 @ b1, a2 @ b2): two independent products, each whole on its own thread when both
    are large, else through ``matmul``. One hand-off instead of one per split product, and
    whole GEMMs run faster than halves: the affine backward pass (dx and dW) uses this.
    Each product is one BLAS call either way, so the results do not depend on the threads."""
    flops = [2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in ((a1, b1), (a2, b2))]
    if min(flops) < MIN_SPLIT_FLOPS / 2:
        return matmul(a1, b1), matmul(a2, b2)
    with single_threaded_blas():
        first, second = run_parts([lambda: a1 @ b1, lambda: a2 @ b2])
    return first, second
