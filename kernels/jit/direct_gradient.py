"""The weight gradient of a stride-1 conv of few channels, summed from ``direct``'s shifted
rows instead of an im2col matrix.

The gradient is dW[f, t] = sum over output positions q of rows[f, q] * cols[t, q], where rows
is the gradient at the conv output and cols the layer's im2col matrix. ``direct`` lays an image
out so that the row of cols for tap t, over a run of output rows, is one contiguous slice of
its shifted rows: shifted[offset(t) + q]. So the gradient needs no im2col matrix (SimpleConvNet's
took 141 us per 50 images to build, float32, one thread, Xeon of 2026-12-07, against about 40 to
shift them).

A tile of 5 filters x 5 taps keeps 25 vector sums in registers over every run of a chunk:
per vector of positions, 10 loads and 25 FMAs (the 4x4 tiles of ``weight_gradient`` load 8 for
16). The sums leave the registers lane by lane into ``sums`` (FN, K, lanes), which the caller
reduces once a part is done (``add_lane_sums``). A layer whose filters or taps are not
a multiple of 5 ends with a tile that overlaps the one before it; its sums that the earlier
tile already added are dropped, so no leftover strip needs code of its own.

Every sum runs in the same order whatever the thread (the images of a part, the lanes of a
vector), so the bits do not depend on the thread count.
"""
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .direct import _largest_tap_offset, _tap_offsets, shift_image
from .simd import LANES, VECTOR_BYTES, fma, load, splat, store

__all__ = ["TILE", "gradient_fits", "add_direct_weight_gradient", "add_lane_sums"]

TILE = 5


def gradient_fits(FN, K, out_h, out_w, split_rows, dtype):
    """Whether ``add_direct_weight_gradient`` takes a layer of FN filters and K taps whose
    output is out_h x out_w (its rows split or not)."""
    # the Python body: a compiled call from Python costs more (NUMBA_DISABLE_JIT leaves a
    # plain function, with no py_func)
    fits = getattr(_tiles_fit, "py_func", _tiles_fit)
    return fits(FN, K, out_h, out_w, split_rows, LANES[np.dtype(dtype)])


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _tiles_fit(FN, K, out_h, out_w, split_rows, lanes):
    """A whole tile each way, and runs of whole vectors (half the rows each, under a split)."""
    run = out_h * out_w // (2 if split_rows else 1)
    return (FN >= TILE and K >= TILE and run >= lanes and run % lanes == 0
            and (out_h % 2 == 0 or not split_rows))


@njit(nogil=True, cache=True, inline="always")
def _fma5(r, x0, x1, x2, x3, x4, acc):
    return (fma(r, x0, acc[0]), fma(r, x1, acc[1]), fma(r, x2, acc[2]), fma(r, x3, acc[3]),
            fma(r, x4, acc[4]))


@njit(nogil=True, cache=True, inline="always")
def _add_row_of_tile(sums, start, lanes, acc, tap, first_tap):
    """sums[start + i*lanes : ...] += acc[i] for the taps tap + i from first_tap on."""
    one = splat(sums.dtype.type(1))
    for i in range(TILE):
        if tap + i >= first_tap:
            at = start + i * lanes
            store(sums, at, fma(one, acc[i], load(sums, at)))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _tile(rows, stride, run_starts, taps, count, run, shifted, K, f0, t0, first_f, first_t,
          sums):
    """Adds to sums the 5x5 tile of filters f0.. and taps t0.. summed over count runs: run i
    starts at run_starts[i] in each row of rows (flat, stride apart) and reads tap t at
    shifted[taps[i*K + t] + q]. Sums of filters before first_f or taps before first_t are
    dropped (an earlier tile added them)."""
    lanes = VECTOR_BYTES // rows.itemsize
    zero = splat(rows.dtype.type(0))
    a0 = a1 = a2 = a3 = a4 = (zero, zero, zero, zero, zero)
    for i in range(count):
        r = run_starts[i] + f0 * stride
        o = i * K + t0
        o0, o1, o2, o3, o4 = taps[o], taps[o + 1], taps[o + 2], taps[o + 3], taps[o + 4]
        for q in range(0, run, lanes):
            x0, x1, x2 = load(shifted, o0 + q), load(shifted, o1 + q), load(shifted, o2 + q)
            x3, x4 = load(shifted, o3 + q), load(shifted, o4 + q)
            a0 = _fma5(load(rows, r + q), x0, x1, x2, x3, x4, a0)
            a1 = _fma5(load(rows, r + stride + q), x0, x1, x2, x3, x4, a1)
            a2 = _fma5(load(rows, r + 2 * stride + q), x0, x1, x2, x3, x4, a2)
            a3 = _fma5(load(rows, r + 3 * stride + q), x0, x1, x2, x3, x4, a3)
            a4 = _fma5(load(rows, r + 4 * stride + q), x0, x1, x2, x3, x4, a4)
    start = (f0 * K + t0) * lanes
    filters = (a0, a1, a2, a3, a4)
    for j in range(TILE):
        if f0 + j >= first_f:
            _add_row_of_tile(sums, start + j * K * lanes, lanes, filters[j], t0, first_t)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def add_direct_weight_gradient(x, n0, n1, FH, FW, pad, out_h, out_w, split_rows, padded,
                               shifted, taps, run_starts, rows, sums):
    """sums (FN * K * lanes) += the lane sums of dW = rows @ cols.T for images n0..n1-1 of x,
    rows (FN, (n1 - n0) * out_h * out_w) the gradient at the stride-1 conv's output, each
    image's output rows in the order of ``im2col._row_slot``; the layer fits
    (``gradient_fits``). Scratch: padded (1, C, H + 2*pad, W + 2*pad) when pad, shifted of
    (n1 - n0) * ``shifted_size`` elements, taps of (n1 - n0) * 2 * K and run_starts of
    (n1 - n0) * 2."""
    C, H = x.shape[1], x.shape[2]
    padded_h, padded_w = H + 2 * pad, x.shape[3] + 2 * pad
    K = C * FH * FW
    FN = rows.shape[0]
    lanes = VECTOR_BYTES // rows.itemsize
    P = out_h * out_w
    halves = 2 if split_rows else 1
    run = P // halves
    images = n1 - n0
    count = images * halves
    image_size = C * FW * padded_h * out_w  # shifted_size, which runs in Python
    if not (0 <= n0 <= n1 <= x.shape[0] and out_h == padded_h - FH + 1 > 0
            and out_w == padded_w - FW + 1 > 0
            and _tiles_fit(FN, K, out_h, out_w, split_rows, lanes)
            and rows.shape[1] == images * P and sums.size == FN * K * lanes
            and taps.size >= count * K and run_starts.size >= count
            and shifted.size >= images * image_size
            and (pad == 0 or (padded.shape[0] >= 1 and padded.shape[1] == C
                             and padded.shape[2] == padded_h
                             and padded.shape[3] == padded_w))):
        raise ValueError("add_direct_weight_gradient: the operands do not fit the layer's "
                         "shapes")
    for n in range(n0, n1):
        shift_image(x, n, pad, padded, FW, out_w, split_rows, shifted[(n - n0) * image_size:])
    for i in range(count):
        image, half = i // halves, i % halves
        run_starts[i] = image * P + half * run
        _tap_offsets(C, FH, FW, padded_h, out_w, half, split_rows, taps[i * K:])
        for t in range(i * K, (i + 1) * K):
            taps[t] += image * image_size
    # every read stays inside its image's shifted rows
    if _largest_tap_offset(C, FH, FW, padded_h, out_w, halves, split_rows) + run > image_size:
        raise ValueError("add_direct_weight_gradient: a run would read past its image")
    flat = rows.ravel()
    for f in range(0, FN, TILE):
        for t in range(0, K, TILE):
            _tile(flat, rows.shape[1], run_starts, taps, count, run, shifted, K,
                  min(f, FN - TILE), min(t, K - TILE), f, t, sums)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def add_lane_sums(sums, dW):
    """dW[f, t] += the lanes of sums[f, t] (FN * K * lanes, flat), added in lane order."""
    FN, K = dW.shape
    lanes = sums.size // (FN * K)
    for f in range(FN):
        for t in range(K):
            at = (f * K + t) * lanes
            total = sums[at]
            for lane in range(1, lanes):
                total += sums[at + lane]
            dW[f, t] += total
