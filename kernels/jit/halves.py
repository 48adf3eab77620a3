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

The mailbox is an int64 array: a state cell, how many halves the pool thread has run, the
sequence number of the last one it finished, and the posted call (BLAS pointers and sizes).
The state cell holds a state in its low 3 bits and the sequence number of the last post above
them, so that a compare-and-swap on it names one post. States: closed (the pool thread will
not look), open (it spins, looking), taken (a caller is writing a call), posted, running.
- A caller takes an open mailbox (open -> taken), so one caller at a time posts; it writes
  the call, then posts it under the next sequence number.
- The pool thread starts a posted call (posted -> running), runs it, and opens the mailbox.
- A caller that finishes its own half while its post has not started takes it back (posted
  -> open) and runs it itself: it waits only for a half being multiplied, never for a pool
  thread that has not started (one that the OS has not scheduled).
- The pool thread closes an open mailbox (open -> closed) before it leaves to run Python or
  to sleep.
"""
import numba
import numpy as np
from numba import njit
from numba.extending import register_jitable

from . import blas
from .atomics import compare_exchange, load, spin_hint, store
from .blas import _dgemm, _leading_dim, _sgemm, gemm

__all__ = ["ENABLED", "HALVES_MIN_FLOPS", "closed_mailbox", "splits", "product", "multiply"]

# Zen 5, one call against two halves, float32 / float64: 100x784 @ 784x50 (7.8 MFLOP) 50 -> 28
# / 113 -> 60 us, 100x100 @ 100x100 (2 MFLOP) 9.2 -> 6.1 / 17.1 -> 10.2 us alone; but in a
# float64 MultiLayerNet step (784-100x4-10) cutting its 2 MFLOP hidden layers too took 0.96-
# 1.07x the time against 0.81-0.95x for its first layer alone: each cut layer's output
# crosses cores to the next layer
HALVES_MIN_FLOPS = 5e6
HALVES_MIN_SIDE = 16   # an output side shorter than this is not cut
# from here on gemm.matmul cuts a product into gemm.PARTS pieces through the Python pool
HALVES_MAX_FLOPS = 2e7

CLOSED, OPEN, TAKEN, POSTED, RUNNING = 0, 1, 2, 3, 4
_STATES = 8  # the state cell holds sequence number * _STATES + state
_STATE, _SERVED, _DONE_SEQ, _ITEMSIZE, _TRANS_A, _TRANS_B, _M, _N, _K = range(9)
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


@register_jitable
def state_of(mailbox):
    """CLOSED, OPEN, TAKEN, POSTED or RUNNING."""
    return load(mailbox, _STATE) % _STATES


@register_jitable
def _tagged(sequence, state):
    return sequence * _STATES + state


@njit(nogil=True, cache=True)
def open_mailbox(mailbox):
    """Opens the pool thread's closed mailbox (only the pool thread opens or closes it)."""
    cell = load(mailbox, _STATE)
    if cell % _STATES == CLOSED:
        store(mailbox, _STATE, cell - CLOSED + OPEN)


@njit(nogil=True, cache=True)
def close_mailbox(mailbox):
    """Closes an open mailbox; False while a call is being posted to it (run that first)."""
    cell = load(mailbox, _STATE)
    state = cell % _STATES
    if state == CLOSED:
        return True
    return state == OPEN and compare_exchange(mailbox, _STATE, cell, cell - OPEN + CLOSED)


@njit(nogil=True, cache=True)
def serve_posted(mailbox):
    """Runs the call posted to the mailbox, if one is and its caller has not taken it back;
    whether it did."""
    cell = load(mailbox, _STATE)
    if cell % _STATES != POSTED or not compare_exchange(mailbox, _STATE, cell,
                                                             cell - POSTED + RUNNING):
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
    sequence = cell // _STATES
    store(mailbox, _SERVED, m[_SERVED] + 1)
    store(mailbox, _DONE_SEQ, sequence)
    store(mailbox, _STATE, _tagged(sequence, OPEN))
    return True


@register_jitable
def _post(a, trans_a, b, trans_b, c, beta, mailbox):
    """Posts c = op(a) @ op(b) (+ c) to an open mailbox and returns its sequence number; 0,
    with nothing posted, where the mailbox is not open."""
    cell = load(mailbox, _STATE)
    if cell % _STATES != OPEN or not compare_exchange(mailbox, _STATE, cell,
                                                          cell - OPEN + TAKEN):
        return 0
    sequence = cell // _STATES + 1
    mailbox[_ITEMSIZE] = c.itemsize
    mailbox[_TRANS_A] = 112 if trans_a else 111  # CBLAS_TRANSPOSE
    mailbox[_TRANS_B] = 112 if trans_b else 111
    mailbox[_M], mailbox[_N] = c.shape
    mailbox[_K] = a.shape[0] if trans_a else a.shape[1]
    mailbox[_A], mailbox[_LDA] = a.ctypes.data, _leading_dim(a)
    mailbox[_B], mailbox[_LDB] = b.ctypes.data, _leading_dim(b)
    mailbox[_C], mailbox[_LDC] = c.ctypes.data, _leading_dim(c)
    mailbox[_BETA] = 1 if beta else 0
    store(mailbox, _STATE, _tagged(sequence, POSTED))  # the pool thread reads the call after
    return sequence


@register_jitable
def _taken_back(mailbox, sequence):
    """Whether the post of that sequence number was taken back before the pool thread
    started it."""
    return compare_exchange(mailbox, _STATE, _tagged(sequence, POSTED), _tagged(sequence, OPEN))


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
    if posted and not _taken_back(mailbox, posted):
        while load(mailbox, _DONE_SEQ) < posted:  # the pool thread is multiplying it
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
