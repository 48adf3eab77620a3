"""A matrix product in two halves, the second posted to a waiting pool thread without the GIL.

A product of a few million FLOPs (TwoLayerNet's 100x784 @ 784x50 takes 43 us on one Zen 5
core) is too short for the Python hand-over to the pool (``gemm.run_parts``): its pool
thread started its part 10-30 us later, once it had the GIL. Here the caller, in compiled
code, writes the second half's BLAS call into the pool thread's mailbox, multiplies the first
half itself, and spins until the pool thread has run the second: the pool thread, spinning
in compiled code between its tasks (``handover``), runs it at once without the GIL. The
same product took 26 us.

Where the product is cut depends on its shapes only (``splits``): the longer side of the
output, at its middle. Each half is one BLAS call on one thread, the same call whichever
thread makes it, so the results do not depend on the thread count, nor on whether the pool
thread took its half. A pool thread that is busy with a Python task, asleep, or not started
leaves its mailbox closed, and the caller multiplies both halves.

The mailbox is an int64 array: its state, the sequence numbers of the products posted and
done, and the posted call's operands (BLAS pointers and sizes). States: closed (the pool
thread will not look), open (it spins, looking), taken (a caller is writing a call) and
posted. A caller takes an open mailbox by compare-and-swap, so one caller at a time posts; the
pool thread closes it the same way before it leaves to run Python or to sleep, and runs
what was posted first.
"""
import numba
import numpy as np
from numba import njit
from numba.extending import register_jitable

from . import blas
from .atomics import compare_exchange, load, spin_hint, store
from .blas import _dgemm, _leading_dim, _sgemm, gemm

__all__ = ["ENABLED", "HALVES_MIN_FLOPS", "closed_mailbox", "splits", "product", "multiply"]

# Zen 5, float32, one thread against two halves: 100x784 @ 784x50 (7.8 MFLOP) 43 -> 26 us
HALVES_MIN_FLOPS = 2e6
HALVES_MIN_SIDE = 16   # an output side shorter than this is not cut
# from here on gemm.matmul cuts a product into gemm.PARTS pieces through the Python pool
HALVES_MAX_FLOPS = 2e7

CLOSED, OPEN, TAKEN, POSTED = 0, 1, 2, 3
_STATE, _POSTED_SEQ, _DONE_SEQ, _ITEMSIZE, _TRANS_A, _TRANS_B, _M, _N, _K = range(9)
_A, _LDA, _B, _LDB, _C, _LDC, _BETA = range(9, 16)
MAILBOX_CELLS = 16

# compiled code, and a BLAS to call from it, make the posted calls; else none is posted
ENABLED = blas.AVAILABLE and not numba.config.DISABLE_JIT


def closed_mailbox():
    """A mailbox that no pool thread opens: its caller multiplies both halves itself."""
    return np.zeros(MAILBOX_CELLS, np.int64)


@register_jitable
def splits(m, n, k):
    """Whether gemm.matmul and the compiled kernels cut an (m, k) @ (k, n) product in halves."""
    flops = 2.0 * m * n * k
    return HALVES_MIN_FLOPS <= flops < HALVES_MAX_FLOPS and max(m, n) >= HALVES_MIN_SIDE


@njit(nogil=True, cache=True)
def open_mailbox(mailbox):
    store(mailbox, _STATE, OPEN)


@njit(nogil=True, cache=True)
def close_mailbox(mailbox):
    """Closes an open mailbox; False while a caller is posting to it (run that first)."""
    return compare_exchange(mailbox, _STATE, OPEN, CLOSED) or load(mailbox, _STATE) == CLOSED


@njit(nogil=True, cache=True)
def serve_posted(mailbox):
    """Runs the call posted to the mailbox, if one is; whether one was."""
    if load(mailbox, _STATE) != POSTED:
        return False
    m = mailbox
    if m[_ITEMSIZE] == 4:
        _sgemm(np.int32(101), np.int32(m[_TRANS_A]), np.int32(m[_TRANS_B]), m[_M], m[_N], m[_K],
               np.float32(1), np.uint64(m[_A]), m[_LDA], np.uint64(m[_B]), m[_LDB],
               np.float32(m[_BETA]), np.uint64(m[_C]), m[_LDC])
    else:
        _dgemm(np.int32(101), np.int32(m[_TRANS_A]), np.int32(m[_TRANS_B]), m[_M], m[_N], m[_K],
               np.float64(1), np.uint64(m[_A]), m[_LDA], np.uint64(m[_B]), m[_LDB],
               np.float64(m[_BETA]), np.uint64(m[_C]), m[_LDC])
    store(mailbox, _DONE_SEQ, load(mailbox, _POSTED_SEQ))
    store(mailbox, _STATE, OPEN)
    return True


@register_jitable
def _post(a, trans_a, b, trans_b, c, beta, mailbox):
    """Posts c = op(a) @ op(b) (+ c) to an open mailbox and returns its sequence number; 0,
    with nothing posted, where the mailbox is not open."""
    if not compare_exchange(mailbox, _STATE, OPEN, TAKEN):
        return 0
    sequence = mailbox[_POSTED_SEQ] + 1
    mailbox[_ITEMSIZE] = c.itemsize
    mailbox[_TRANS_A] = 112 if trans_a else 111  # CBLAS_TRANSPOSE
    mailbox[_TRANS_B] = 112 if trans_b else 111
    mailbox[_M], mailbox[_N] = c.shape
    mailbox[_K] = a.shape[0] if trans_a else a.shape[1]
    mailbox[_A], mailbox[_LDA] = a.ctypes.data, _leading_dim(a)
    mailbox[_B], mailbox[_LDB] = b.ctypes.data, _leading_dim(b)
    mailbox[_C], mailbox[_LDC] = c.ctypes.data, _leading_dim(c)
    mailbox[_BETA] = 1 if beta else 0
    store(mailbox, _POSTED_SEQ, sequence)
    store(mailbox, _STATE, POSTED)  # the pool thread reads the call only after this
    return sequence


@register_jitable
def product(a, trans_a, b, trans_b, c, beta, mailbox):
    """c = op(a) @ op(b) + beta * c, as ``blas.gemm`` takes it, cut in halves where
    ``splits`` says, the second half posted to the mailbox's pool thread when it waits.
    Compiled kernels call it; run as Python (no BLAS bound), both halves go to NumPy."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if not splits(m, n, k):
        gemm(a, trans_a, b, trans_b, c, beta)
        return
    if m >= n:
        mid = m // 2
        a0, a1 = (a[:, :mid], a[:, mid:]) if trans_a else (a[:mid], a[mid:])
        b0 = b1 = b
        c0, c1 = c[:mid], c[mid:]
    else:
        mid = n // 2
        a0 = a1 = a
        b0, b1 = (b[:mid], b[mid:]) if trans_b else (b[:, :mid], b[:, mid:])
        c0, c1 = c[:, :mid], c[:, mid:]
    posted = _post(a1, trans_a, b1, trans_b, c1, beta, mailbox)
    gemm(a0, trans_a, b0, trans_b, c0, beta)
    if posted:
        while load(mailbox, _DONE_SEQ) < posted:
            spin_hint()
    else:
        gemm(a1, trans_a, b1, trans_b, c1, beta)


@njit(nogil=True, cache=True)
def _product_compiled(a, trans_a, b, trans_b, c, beta, mailbox):
    product(a, trans_a, b, trans_b, c, beta, mailbox)


def multiply(a, trans_a, b, trans_b, c, beta, mailbox):
    """``product`` called from Python: without the GIL where a BLAS is bound."""
    (_product_compiled if blas.AVAILABLE else product)(a, trans_a, b, trans_b, c, beta,
                                                         mailbox)
