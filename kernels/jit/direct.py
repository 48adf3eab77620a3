"""Stride-1 convolution computed directly, with its accumulators in vector registers.

For a layer with few input channels, im2col + GEMM is a poor fit: SimpleConvNet's 1-channel
5x5 layer multiplies a (30, 25) matrix by a (25, 576) one per image, and building the
(25, 576) matrix cost a third as much as the product. Here each image is copied only FW
times, once per filter column kx, with its columns shifted by kx (``_shift_rows``):

    shifted[c, kx, r, x] = padded image[c, r, x + kx]      (x < out_w)

Output position q = y * out_w + x then reads tap (c, ky, kx) at one offset from q, the same
for every position, so a row of outputs is a run of vectors over the flat positions:

    rows[f, q] = sum over taps t of W[f, t] * shifted[offset(t) + q]

A block of 6 filters x 3 vectors of positions is summed over all taps in 18 registers
(``_block``): per tap, 3 loads, 6 broadcasts and 18 FMAs. Under a 2x2 pool that tiles the
output, the pipeline wants the even output rows first and the odd rows after them
(``im2col._row_slot``); the shifted rows are then stored even rows first too, and each half
of the output is one such run.

The result is ``rows (FN, images * out_h * out_w)``, what the pipeline's GEMM would give, for
the same epilogues. Each output is summed tap by tap in the taps' order with one rounding per
FMA, whatever the thread: the bits do not depend on the thread count.
"""
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .im2col import _pad_images, _row_slot
from .simd import LANES, VECTOR_BYTES, fma, load, splat, store

__all__ = ["BLOCK_FILTERS", "BLOCK_VECTORS", "direct_weights", "shifted_size",
           "holds_blocks", "shift_image", "direct_rows"]

BLOCK_FILTERS = 6
BLOCK_VECTORS = 3


def direct_weights(Wm):
    """Wm (FN, K) with zero rows added up to a multiple of BLOCK_FILTERS, C-contiguous."""
    FN, K = Wm.shape
    padded = np.zeros((-(-FN // BLOCK_FILTERS) * BLOCK_FILTERS, K), dtype=Wm.dtype)
    padded[:FN] = Wm
    return padded


def shifted_size(C, FW, padded_h, out_w):
    """Elements of the scratch that ``direct_rows`` shifts an image into."""
    return C * FW * padded_h * out_w


def holds_blocks(out_h, out_w, dtype):
    """Whether a layer's output is large enough for ``direct_rows``, split or not: half of
    its positions (a run, under a split) hold a whole block of vectors."""
    return out_h * out_w // 2 >= BLOCK_VECTORS * LANES[np.dtype(dtype)]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _row_position(r, padded_h, split_rows):
    """Where padded row r sits among the shifted rows: in order, or even rows first, as
    ``_row_slot`` orders output rows; one more row in its count puts the extra row of an odd
    padded_h among the even ones."""
    return _row_slot(r, padded_h + 1, split_rows)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _copy_row(src, s, dst, d, count):
    """dst[d:d + count] = src[s:s + count] by whole vectors, the last one overlapping."""
    lanes = VECTOR_BYTES // dst.itemsize
    if count < lanes:
        for j in range(count):
            dst[d + j] = src[s + j]
        return
    for j in range(0, count - lanes, lanes):
        store(dst, d + j, load(src, s + j))
    store(dst, d + count - lanes, load(src, s + count - lanes))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _shift_rows(padded, C, padded_h, padded_w, FW, out_w, split_rows, shifted):
    """shifted[c, kx, position of r] = padded[c, r, kx:kx + out_w], for one padded image
    (C, padded_h, padded_w), flat."""
    for c in range(C):
        for kx in range(FW):
            block = (c * FW + kx) * padded_h
            for r in range(padded_h):
                _copy_row(padded, (c * padded_h + r) * padded_w + kx, shifted,
                          (block + _row_position(r, padded_h, split_rows)) * out_w, out_w)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def shift_image(x, n, pad, padded, FW, out_w, split_rows, shifted):
    """``_shift_rows`` of image n of x (N, C, H, W), padded first (into padded, (1, C,
    H + 2*pad, W + 2*pad)) when pad."""
    C, padded_h, padded_w = x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad
    if pad:
        _pad_images(x, n, n + 1, pad, padded)
        image = padded.reshape(-1)
    else:
        image = x[n].reshape(-1)
    _shift_rows(image, C, padded_h, padded_w, FW, out_w, split_rows, shifted)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _largest_tap_offset(C, FH, FW, padded_h, out_w, halves, split_rows):
    """The largest offset ``_tap_offsets`` gives, over the runs of output rows: the last
    shifted block, at the lowest row a run reads; a run read from there ends inside an
    image's shifted rows when this plus the run is at most ``shifted_size``."""
    lowest = 0
    for half in range(halves):
        for ky in range(FH):
            lowest = max(lowest, _row_position(half + ky, padded_h, split_rows))
    return ((C * FW - 1) * padded_h + lowest) * out_w


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _tap_offsets(C, FH, FW, padded_h, out_w, first_row, split_rows, offsets):
    """offsets[t] = where tap t = (c, ky, kx) reads the shifted rows for the first output
    position of the run of output rows first_row, first_row + step, ..., step 2 when
    split_rows, else 1."""
    t = 0
    for c in range(C):
        for ky in range(FH):
            for kx in range(FW):
                row = _row_position(first_row + ky, padded_h, split_rows)
                offsets[t] = ((c * FW + kx) * padded_h + row) * out_w
                t += 1


@njit(nogil=True, cache=True, inline="always")
def _fma3(w, x0, x1, x2, acc):
    return fma(w, x0, acc[0]), fma(w, x1, acc[1]), fma(w, x2, acc[2])


@njit(nogil=True, cache=True, inline="always")
def _store3(out, start, acc, lanes):
    store(out, start, acc[0])
    store(out, start + lanes, acc[1])
    store(out, start + 2 * lanes, acc[2])


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _block(shifted, offsets, W, f0, q0, out, start, stride):
    """out[start + j * stride + i] = sum over taps t of W[f0 + j, t] * shifted[offsets[t] + q0
    + i] for j < 6 and i < 3 vectors."""
    lanes = VECTOR_BYTES // shifted.itemsize
    K = W.shape[1]
    zero = splat(shifted.dtype.type(0))
    a0 = a1 = a2 = a3 = a4 = a5 = (zero, zero, zero)
    for t in range(K):
        o = offsets[t] + q0
        x0, x1, x2 = load(shifted, o), load(shifted, o + lanes), load(shifted, o + 2 * lanes)
        a0 = _fma3(splat(W[f0, t]), x0, x1, x2, a0)
        a1 = _fma3(splat(W[f0 + 1, t]), x0, x1, x2, a1)
        a2 = _fma3(splat(W[f0 + 2, t]), x0, x1, x2, a2)
        a3 = _fma3(splat(W[f0 + 3, t]), x0, x1, x2, a3)
        a4 = _fma3(splat(W[f0 + 4, t]), x0, x1, x2, a4)
        a5 = _fma3(splat(W[f0 + 5, t]), x0, x1, x2, a5)
    _store3(out, start, a0, lanes)
    _store3(out, start + stride, a1, lanes)
    _store3(out, start + 2 * stride, a2, lanes)
    _store3(out, start + 3 * stride, a3, lanes)
    _store3(out, start + 4 * stride, a4, lanes)
    _store3(out, start + 5 * stride, a5, lanes)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def direct_rows(x, n0, n1, W, FH, FW, pad, out_h, out_w, split_rows, padded, shifted, offsets,
                rows):
    """rows (FNp, (n1 - n0) * out_h * out_w) = the stride-1 conv of images n0..n1-1 of x by
    the weights W (FNp, C*FH*FW), FNp a multiple of 6, each image's output rows in the order
    of ``im2col._row_slot``; each run of output rows (all of them, or each half under a
    split) holds at least one block (``holds_blocks``). Scratch: padded (1, C, H + 2*pad,
    W + 2*pad) when pad, shifted of ``shifted_size`` elements, offsets of 2*C*FH*FW."""
    C, H = x.shape[1], x.shape[2]
    padded_h, padded_w = H + 2 * pad, x.shape[3] + 2 * pad
    K = C * FH * FW
    lanes = VECTOR_BYTES // shifted.itemsize
    block = BLOCK_VECTORS * lanes
    P = out_h * out_w
    halves = 2 if split_rows else 1
    run = P // halves
    if not (0 <= n0 <= n1 <= x.shape[0] and out_h == padded_h - FH + 1 > 0
            and out_w == padded_w - FW + 1 > 0 and (out_h % 2 == 0 or not split_rows)
            and run >= block and W.shape[0] % BLOCK_FILTERS == 0 and W.shape[1] == K
            and rows.shape[0] == W.shape[0] and rows.shape[1] == (n1 - n0) * P
            and offsets.size >= halves * K
            and (pad == 0 or (padded.shape[0] >= 1 and padded.shape[1] == C
                             and padded.shape[2] == padded_h
                             and padded.shape[3] == padded_w))):
        raise ValueError("direct_rows: the operands do not fit the layer's shapes")
    # every read below stays inside shifted
    if _largest_tap_offset(C, FH, FW, padded_h, out_w, halves, split_rows) + run > shifted.size:
        raise ValueError("direct_rows: shifted holds fewer than shifted_size elements")
    for half in range(halves):
        _tap_offsets(C, FH, FW, padded_h, out_w, half, split_rows, offsets[half * K:])
    flat = rows.ravel()
    stride = rows.shape[1]
    for n in range(n0, n1):
        shift_image(x, n, pad, padded, FW, out_w, split_rows, shifted)
        for half in range(halves):
            start = (n - n0) * P + half * run
            tap_offsets = offsets[half * K:]
            for f0 in range(0, W.shape[0], BLOCK_FILTERS):
                row = f0 * stride + start
                for q0 in range(0, run, block):
                    # the last block ends at the run's end, over part of the one before,
                    # whose outputs it computes again to the same bits: one call site, and
                    # each inlined copy of a block cost about 1 s of compile time
                    q = min(q0, run - block)
                    _block(shifted, tap_offsets, W, f0, q, flat, row + q, stride)
