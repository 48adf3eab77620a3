"""The weight gradient of a conv -> ReLU -> max pool block, gathered at the pool's maxima.

Behind a max pool, the gradient at the conv output is zero except at one cell of each
window, its argmax, where it is the window's gradient (or zero where the ReLU cut it). The
dense sum of ``direct_gradient`` first writes all those zeros out and then spends 3 of every
4 of its multiplications on them under a 2x2 pool. Here each window adds its gradient g
times the input under the filter at its maximum (oy, ox):

    dW[f, c, ky, kx] += g * padded[c, oy + ky, ox + kx]

a vector of 8 lanes per filter row (c, ky) (``simd.load8``: 256 bits of float32, 512 of
float64): its FW taps in the first lanes, the lanes after them reading on along the image
(their sums are never used). Two sets of 5 row sums take a filter's even and odd windows, so
that an FMA waits on the one two windows back, not one. Every window costs the same, kept or
not: a skipped one adds 0 * x at the image's first cell, where a branch on MNIST's ReLU zeros
would be mispredicted about as often as not.

Measured (SimpleConvNet's first block, 50 images, one thread, Xeon of 2026-12-07): 493 us in
float32 and 627 us in float64, against about 630 and 1000 for the dense sum. With 16-lane
float32 vectors, of which a filter row uses 5, the float32 loop took 629 us: its 5 unaligned
64-byte loads a window bound it. Rows of taps stored by position instead, an im2col matrix,
took 194 us to build and left the loop bound by L2 (650 us).

Exact where the input is finite, since a skipped cell of the dense sum adds 0 * x, NaN where
x is not: images with a value that is not finite are left to the dense sum (the caller).

A filter's sums run over its windows in order, image after image, and the two sets are added
after each image: the bits do not depend on the thread count.
"""
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .epilogues import _add_row_sums, windows_are_tiles
from .im2col import _pad_images
from .simd import fma, load8, splat8, store8
from .winograd import _any_not_finite

__all__ = ["ROWS", "ROW_LANES", "gathers", "patch_size", "add_pooled_weight_gradient",
           "add_row_sums"]

ROWS = 5  # filter rows summed at once: twice 5 vectors of the 32 registers
ROW_LANES = 8  # a filter row's vector (``simd.load8``): 256 bits of float32, 512 of float64


def gathers(pooled, FW):
    """Whether a direct weight gradient (``direct_gradient``, float32 or float64) is gathered
    here instead: behind a max pool (pooled), for filters whose rows fit a row vector
    (``ROW_LANES``)."""
    return pooled and FW <= ROW_LANES


def patch_size(C, padded_h, padded_w):
    """Elements of the scratch that ``add_pooled_weight_gradient`` pads an image into: the
    image and one vector more, which the last row's loads read on into."""
    return C * padded_h * padded_w + ROW_LANES


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _window_origins(pool, out_h, out_w, padded_w, wy, wx, base):
    """For each window q of the pool: its top left cell (wy[q], wx[q]) in the conv output,
    and base[q] = where the patch of that cell starts in the padded image."""
    pool_stride, pool_pad = pool[2], pool[3]
    for py in range(out_h):
        for px in range(out_w):
            q = py * out_w + px
            wy[q], wx[q] = py * pool_stride - pool_pad, px * pool_stride - pool_pad
            base[q] = wy[q] * padded_w + wx[q]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _windows_of_filter(dout, out, argmax, pool, conv_h, conv_w, padded_w, wy, wx, base,
                       tiles, at, grad):
    """For each window q of one filter's plane: at[q] where the patch under the filter at
    the window's maximum starts in the padded image, grad[q] the window's gradient; (0, 0)
    where the ReLU cut it, or its argmax names no cell of the window, or that cell lies in
    the pool's padding (the dense sum routes nothing there). tiles: the windows tile the conv
    output (``epilogues.windows_are_tiles``), so that every cell lies in it."""
    pool_w = pool[1]
    cells = pool[0] * pool_w
    zero = grad.dtype.type(0)
    if tiles:  # branch-free and 2x2: a loop that vectorizes
        for q in range(at.size):
            k = argmax[q]
            use = (k >= 0) & (k < 4) & (out[q] != 0)
            at[q] = base[q] + (k >> 1) * padded_w + (k & 1) if use else 0
            grad[q] = dout[q] if use else zero
        return
    for q in range(at.size):
        k = argmax[q]
        inside = (k >= 0) & (k < cells)
        kk = k if inside else 0
        oy, ox = wy[q] + kk // pool_w, wx[q] + kk % pool_w
        use = (inside & (out[q] != 0) & (oy >= 0) & (oy < conv_h) & (ox >= 0)
               & (ox < conv_w))
        at[q] = oy * padded_w + ox if use else 0
        grad[q] = dout[q] if use else zero


@njit(nogil=True, cache=True, inline="always")
def _row_offset(row, R, FH, plane, padded_w):
    """Where filter row min(row, R - 1) = (c, ky) starts in the padded image."""
    row = min(row, R - 1)
    return (row // FH) * plane + (row % FH) * padded_w


@njit(nogil=True, cache=True, inline="always")
def _fma5(g, patch, at, r, acc):
    return (fma(g, load8(patch, at + r[0]), acc[0]), fma(g, load8(patch, at + r[1]), acc[1]),
            fma(g, load8(patch, at + r[2]), acc[2]), fma(g, load8(patch, at + r[3]), acc[3]),
            fma(g, load8(patch, at + r[4]), acc[4]))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _filter_rows(patch, at, grad, r):
    """The sums of 5 filter rows, at offsets r of the padded image, over one filter's
    windows: each window's patch times its gradient, even and odd windows summed apart and
    added last."""
    zero = splat8(patch.dtype.type(0))
    even = odd = (zero, zero, zero, zero, zero)
    windows = at.size
    for q in range(0, windows - 1, 2):
        even = _fma5(splat8(grad[q]), patch, at[q], r, even)
        odd = _fma5(splat8(grad[q + 1]), patch, at[q + 1], r, odd)
    if windows % 2:
        even = _fma5(splat8(grad[windows - 1]), patch, at[windows - 1], r, even)
    one = splat8(patch.dtype.type(1))
    return (fma(one, even[0], odd[0]), fma(one, even[1], odd[1]), fma(one, even[2], odd[2]),
            fma(one, even[3], odd[3]), fma(one, even[4], odd[4]))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def add_pooled_weight_gradient(x, n0, n1, FH, FW, pad, pool, dout, out, argmax, patch, sums,
                               db):
    """Adds to sums (FN * C*FH * lanes, flat) the weight gradient of a stride-1 conv from
    images n0..n1-1 of x (N, C, H, W), the FW taps of filter row (c, ky) in the first lanes
    of its vector, and to db (FN, float64) their bias gradient. dout, out (the block's pooled
    output) and argmax (N, FN, out_h, out_w, C-contiguous) are the pool's, pool (pool_h,
    pool_w, stride, pad). False, with nothing added, where a value of those images is not
    finite. patch: ``patch_size`` elements, 1-D."""
    N, C, H, W = x.shape
    padded_h, padded_w = H + 2 * pad, W + 2 * pad
    conv_h, conv_w = padded_h - FH + 1, padded_w - FW + 1
    pool_h, pool_w = pool[0], pool[1]
    FN = dout.shape[1]
    lanes = ROW_LANES
    R = C * FH
    plane = padded_h * padded_w
    if not (0 <= n0 <= n1 <= N and pad >= 0 and FH > 0 and conv_h > 0 and conv_w > 0
            and 0 < FW <= lanes
            and pool_h > 0 and pool_w > 0 and pool[2] > 0 and pool[3] >= 0
            and dout.ndim == 4 and dout.shape[0] == N and dout.shape[2] * dout.shape[3] > 0
            and out.shape == dout.shape and argmax.shape == dout.shape
            and patch.size >= C * plane + lanes and sums.size == FN * R * lanes
            and db.size == FN):
        raise ValueError("add_pooled_weight_gradient: the operands do not fit the layer's "
                         "shapes")
    if _any_not_finite(x.reshape(-1)[n0 * C * H * W:n1 * C * H * W]):
        return False
    out_h, out_w = dout.shape[2], dout.shape[3]
    windows = out_h * out_w
    wy, wx, base = (np.empty(windows, np.int64), np.empty(windows, np.int64),
                    np.empty(windows, np.int64))
    _window_origins(pool, out_h, out_w, padded_w, wy, wx, base)
    tiles = (windows_are_tiles(pool, conv_h, conv_w) and conv_h == 2 * out_h
             and conv_w == 2 * out_w)
    flat_dout = dout.reshape((N, FN, windows))
    flat_out = out.reshape((N, FN, windows))
    flat_argmax = argmax.reshape((N, FN, windows))
    at = np.empty((1, windows), np.int64)
    grad = np.empty((1, windows), x.dtype)
    one = splat8(patch.dtype.type(1))
    patch[C * plane:] = 0  # read past the last row by its loads
    image = patch[:C * plane].reshape((1, C, padded_h, padded_w))
    for n in range(n0, n1):
        _pad_images(x, n, n + 1, pad, image)
        for f in range(FN):
            # one filter at a time: its windows stay in L1 for the sums
            _windows_of_filter(flat_dout[n, f], flat_out[n, f], flat_argmax[n, f], pool,
                               conv_h, conv_w, padded_w, wy, wx, base, tiles, at[0], grad[0])
            _add_row_sums(grad, db[f:f + 1])
            for first in range(0, R, ROWS):
                start = max(0, min(first, R - ROWS))  # a last group overlaps the one before
                rows = _filter_rows(patch, at[0], grad[0], (
                    _row_offset(start, R, FH, plane, padded_w),
                    _row_offset(start + 1, R, FH, plane, padded_w),
                    _row_offset(start + 2, R, FH, plane, padded_w),
                    _row_offset(start + 3, R, FH, plane, padded_w),
                    _row_offset(start + 4, R, FH, plane, padded_w)))
                for i in range(ROWS):
                    row = start + i
                    if first <= row < R:
                        at_sum = (f * R + row) * lanes
                        store8(sums, at_sum, fma(one, rows[i], load8(sums, at_sum)))
    return True


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def add_row_sums(sums, FW, dW):
    """dW (FN, R*FW) += the first FW lanes of each row vector of sums (FN * R * lanes)."""
    FN, K = dW.shape
    R = K // FW
    lanes = sums.size // (FN * R)
    for f in range(FN):
        for row in range(R):
            for kx in range(FW):
                dW[f, row * FW + kx] += sums[(f * R + row) * lanes + kx]
