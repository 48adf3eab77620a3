"""Matrix products for the jit kernels: single-threaded BLAS calls split over a thread pool.

OpenBLAS's worker threads busy-wait for a long while after each call. On a 2-core machine
they then steal the cores from the Numba loop that follows every GEMM here: im2col followed
by a GEMM took 19-24 ms where the two alone took 10 + 4. So the jit backend keeps BLAS
single-threaded while it multiplies and splits a large product into parts that Python
threads run at once (BLAS releases the GIL). The pool threads (``handover``) spin for half a
millisecond at most before they sleep.

The pool is per process: a forked child starts a new one (the parent's threads do not exist
there). One Python thread at a time hands parts to it; another that calls meanwhile runs its
parts itself, in the same groups and order, so its results are the same.

Where a product is split depends only on its shapes and ``PARTS``, never on the thread count:
output rows or columns when there are many, else the inner dimension into ``PARTS`` partial
products summed in a fixed order. ``PARTS`` is the machine's CPU count (at most
``MAX_PARTS``), or ``FASTCONV_PARTS``; the threads Numba is allowed take the parts in
contiguous groups. Results are therefore identical with any number of threads.
"""
import functools
import os
import time

import numba
import numpy as np

from . import halves, handover, recycle
from .blas_pin import single_threaded_blas

__all__ = ["matmul", "matmul_pair", "pieces", "run_parts", "single_threaded_blas", "blas_scope"]

MAX_PARTS = 8  # a batch of 100 then still gives each part a dozen images


def _parts_from_environment():
    """How many parts a split product or batch is cut into.

    The results depend on it (partial sums), so it must not follow any thread setting:
    the CPU count is as fixed a property of the machine as the BLAS kernels its CPU
    selects, which also change the last bits. ``os.cpu_count``, not the affinity mask,
    for the same reason (``taskset`` must not change a result). ``FASTCONV_PARTS`` sets it,
    to reproduce another machine's partition."""
    text = os.environ.get("FASTCONV_PARTS")
    if text is None:
        return max(1, min(os.cpu_count() or 1, MAX_PARTS))
    try:
        parts = int(text)
    except ValueError:
        parts = 0
    if parts < 1:
        raise ValueError(f"FASTCONV_PARTS must be a positive integer, got {text!r}")
    return parts


PARTS = _parts_from_environment()  # how many pieces a large product or a batch is cut into
# smaller products run in one call, or in two halves (``halves``): a hand-off costs ~10 us
MIN_SPLIT_FLOPS = halves.HALVES_MAX_FLOPS
MIN_SPLIT_DIM = 64        # an output side shorter than this is not split
INNER_SPLIT_RATIO = 8     # an inner dimension this many times the longer output side is split:
                          # each part then reads its share of both factors, not all of one
OPENBLAS_SERIAL_MNK = 65536 * 4  # OpenBLAS itself runs a GEMM with m*n*k up to this serially

# What a network step runs inside (see fastconv.nets): for this backend, one BLAS pin.
blas_scope = single_threaded_blas


def pieces(size, parts=None):
    """[lo, hi) ranges cutting range(size) into at most `parts` (default ``PARTS``)
    near-equal non-empty pieces.

    Depends on the sizes only, never on the thread count."""
    parts = PARTS if parts is None else parts
    bounds = [size * i // parts for i in range(parts + 1)]  # np.linspace cost 10 us a call
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _run_all(tasks):
    return [task() for task in tasks]


def _run_all_pinned(tasks):
    # a pool thread pins BLAS for itself: MKL's count, and OpenMP's, belong to each thread
    with single_threaded_blas():
        return _run_all(tasks)


# A list to which each hand-over to the pool appends its times (``perf_counter``): (call,
# caller's group done, [(pool group start, end) for each pool group], return). For
# benchmarks/profile_step.py; None (the default) records nothing.
handoff_log = None


def _timed_group(task, times):
    start = time.perf_counter()
    try:
        return task()
    finally:
        times.append((start, time.perf_counter()))


def run_parts(tasks):
    """[task() for task in tasks], run by as many threads as Numba is allowed: each thread
    takes a contiguous group of tasks (neighbouring images stay on one core), the calling
    thread the first group."""
    threads = min(numba.get_num_threads(), len(tasks))
    if threads < 2:
        return _run_all(tasks)
    groups = [tasks[lo:hi] for lo, hi in pieces(len(tasks), threads)]
    log = handoff_log
    there = [functools.partial(_run_all_pinned, group) for group in groups[1:]]
    if log is None:
        handed = handover.hand_over(functools.partial(_run_all, groups[0]), there)
    else:
        called, pool_times, caller_done = time.perf_counter(), [], []
        there = [functools.partial(_timed_group, task, pool_times) for task in there]

        def here():
            try:
                return _run_all(groups[0])
            finally:
                caller_done.append(time.perf_counter())
        handed = handover.hand_over(here, there)
    if handed is None:  # another thread is handing work over: this one runs its tasks itself
        return _run_all(tasks)
    results, theirs = handed
    for group_results in theirs:
        results.extend(group_results)
    if log is not None:
        log.append((called, caller_done[0], sorted(pool_times), time.perf_counter()))
    return results


def _output_pieces(a, b, out, parts):
    """Tasks that write a @ b into out in `parts` pieces of its longer side, or None when the
    product has too few output rows and columns for that (split its inner side instead)."""
    m, k = a.shape
    n = b.shape[1]
    if max(m, n) < MIN_SPLIT_DIM or k >= INNER_SPLIT_RATIO * max(m, n):
        return None
    if m >= n:
        return [lambda lo=lo, hi=hi: np.matmul(a[lo:hi], b, out=out[lo:hi])
                for lo, hi in pieces(m, parts)]
    return [lambda lo=lo, hi=hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
            for lo, hi in pieces(n, parts)]


def _empty_product(a, b):
    return recycle.empty((a.shape[0], b.shape[1]), np.result_type(a, b))


def _blas_operand(m):
    """(m, False) or (m.T, True), whichever has rows that BLAS can step through, or None."""
    size = m.itemsize
    if not (m.flags.aligned and m.dtype.isnative):
        return None
    for view, transposed in ((m, False), (m.T, True)):
        step = view.strides[0]
        if view.strides[1] == size and step % size == 0 and step >= size * view.shape[1]:
            return view, transposed
    return None


def _in_halves(a, b):
    """a @ b through ``halves.multiply`` (the compiled kernels' cut of a mid-sized product),
    or None where the operands are not what BLAS takes."""
    if a.dtype != b.dtype or a.dtype.char not in "fd":
        return None
    op_a, op_b = _blas_operand(a), _blas_operand(b)
    if op_a is None or op_b is None:
        return None
    (a_rows, trans_a), (b_rows, trans_b) = op_a, op_b
    out = _empty_product(a, b)
    halves.multiply(a_rows, trans_a, b_rows, trans_b, out, 0, handover.mailbox())
    return out


def matmul(a, b):
    """a @ b for 2-D float arrays (views and transposes are fine), as a new C-ordered array."""
    m, k = a.shape
    n = b.shape[1]
    if m * n * k <= OPENBLAS_SERIAL_MNK:
        return a @ b  # no worker thread wakes up: no need to pin BLAS to one thread
    with single_threaded_blas():
        if 2.0 * m * n * k < MIN_SPLIT_FLOPS:
            if halves.splits(m, n, k):
                out = _in_halves(a, b)
                if out is not None:
                    return out
            return a @ b
        out = _empty_product(a, b)
        tasks = _output_pieces(a, b, out, PARTS)
        if tasks is not None:
            run_parts(tasks)
            return out
        partials = run_parts([lambda lo=lo, hi=hi: a[:, lo:hi] @ b[lo:hi]
                              for lo, hi in pieces(k)])
        out[...] = partials[0]
        for extra in partials[1:]:
            out += extra
        return out


def matmul_pair(a1, b1, a2, b2):
    """(a1 @ b1, a2 @ b2): two independent products side by side, the parts shared between
    them, when both are large; else each through ``matmul``. The affine backward pass (dx
    and dW) uses this. With two parts each product is one whole GEMM on its own thread: one
    hand-off instead of one per split product, and whole GEMMs ran faster than halves. The
    pieces depend on the shapes and ``PARTS`` only, so the results do not depend on the
    threads."""
    flops = [2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in ((a1, b1), (a2, b2))]
    if min(flops) >= MIN_SPLIT_FLOPS / 2:
        with single_threaded_blas():
            first, second = _empty_product(a1, b1), _empty_product(a2, b2)
            share = max(1, PARTS // 2)
            tasks = (_output_pieces(a1, b1, first, share),
                     _output_pieces(a2, b2, second, max(1, PARTS - share)))
            if None not in tasks:
                run_parts(tasks[0] + tasks[1])
                return first, second
    return matmul(a1, b1), matmul(a2, b2)
