"""The im2col layouts of the jit backend, as loops compiled by Numba.

Two layouts. The book's, ``col (images*out_h*out_w, C*FH*FW)``, for ``fastconv.util``'s
im2col/col2im. And the K-major one the conv pipeline multiplies, ``cols (C*FH*FW,
images*out_h*out_w)``, built from a zero-padded copy of the images so that every run of a
stride-1 filter tap is one contiguous copy; col2im is its adjoint, summing tap by tap in
(ky, kx) order like the book, so float64 results equal the twin's.
"""
from numba import njit

from .compile_options import HELPER_INLINE


@njit(cache=True)
def _valid_range(size_in, size_out, stride, offset):
    """[lo, hi) of the output positions o with 0 <= o*stride + offset < size_in."""
    lo = 0
    while lo < size_out and lo * stride + offset < 0:
        lo += 1
    hi = size_out
    while hi > lo and (hi - 1) * stride + offset >= size_in:
        hi -= 1
    return lo, hi


@njit(nogil=True, cache=True)
def _im2col_rows(x, n0, n1, filter_h, filter_w, stride, pad, out_h, out_w, col):
    """The book's im2col layout (pixels, taps) for images n0..n1-1, for fastconv.util.

    Every entry is written once, zeros only where a tap reads padding.
    """
    _, C, H, W = x.shape
    P = out_h * out_w
    for n in range(n0, n1):
        for c in range(C):
            for ky in range(filter_h):
                oy_lo, oy_hi = _valid_range(H, out_h, stride, ky - pad)
                for kx in range(filter_w):
                    ox_lo, ox_hi = _valid_range(W, out_w, stride, kx - pad)
                    r = (c * filter_h + ky) * filter_w + kx
                    for oy in range(out_h):
                        j = (n - n0) * P + oy * out_w
                        inside_y = oy_lo <= oy < oy_hi
                        iy = oy * stride + ky - pad
                        for ox in range(out_w):
                            if inside_y and ox_lo <= ox < ox_hi:
                                col[j + ox, r] = x[n, c, iy, ox * stride + kx - pad]
                            else:
                                col[j + ox, r] = 0


@njit(nogil=True, cache=True)
def _col2im_rows(col, n0, n1, filter_h, filter_w, stride, pad, out_h, out_w, dx):
    """Adjoint of _im2col_rows, summing tap by tap in (ky, kx) order like the book."""
    _, C, H, W = dx.shape
    P = out_h * out_w
    for n in range(n0, n1):
        for c in range(C):
            dx[n, c] = 0
            for ky in range(filter_h):
                oy_lo, oy_hi = _valid_range(H, out_h, stride, ky - pad)
                for kx in range(filter_w):
                    ox_lo, ox_hi = _valid_range(W, out_w, stride, kx - pad)
                    r = (c * filter_h + ky) * filter_w + kx
                    for oy in range(oy_lo, oy_hi):
                        j = (n - n0) * P + oy * out_w
                        iy = oy * stride + ky - pad
                        for ox in range(ox_lo, ox_hi):
                            dx[n, c, iy, ox * stride + kx - pad] += col[j + ox, r]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pad_images(x, n0, n1, pad, xp):
    """xp[i] = image n0+i of x with a zero border of width pad."""
    _, C, H, W = x.shape
    for n in range(n0, n1):
        for c in range(C):
            plane = xp[n - n0, c]
            plane[:] = 0
            for iy in range(H):
                dst = plane[iy + pad, pad:pad + W]
                src = x[n, c, iy]
                for ix in range(W):
                    dst[ix] = src[ix]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _row_slot(oy, out_h, split_rows):
    """Where output row oy sits among an image's out_h rows of pixels: in row order, or with
    split_rows the even rows first and the odd rows after them. Under a 2x2 stride-2 pool
    that tiles the plane, that puts the top cells of all windows in the first half and their
    bottom cells in the second, each window's two at 2q and 2q+1 of each half: the pool and
    its gradient then run along all of a plane's windows in one pass that vectorizes, where
    rows of 24 cells were too short for vectors (``epilogues``)."""
    if split_rows:
        return (oy & 1) * (out_h >> 1) + (oy >> 1)
    return oy


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _im2col_padded(xp, count, filter_h, filter_w, stride, out_h, out_w, cols, split_rows):
    """K-major im2col of the first count padded images xp into cols (taps, pixels), each
    image's rows of pixels in the order of ``_row_slot``.

    With stride 1 every run is a contiguous copy, which vectorizes; building the matrix
    element by element was 5x slower.
    """
    C = xp.shape[1]
    P = out_h * out_w
    for n in range(count):
        for c in range(C):
            for ky in range(filter_h):
                for kx in range(filter_w):
                    r = (c * filter_h + ky) * filter_w + kx
                    for oy in range(out_h):
                        j = n * P + _row_slot(oy, out_h, split_rows) * out_w
                        dst = cols[r, j:j + out_w]
                        if stride == 1:
                            src = xp[n, c, oy + ky, kx:kx + out_w]
                            for i in range(out_w):
                                dst[i] = src[i]
                        else:
                            row = xp[n, c, oy * stride + ky]
                            for i in range(out_w):
                                dst[i] = row[kx + i * stride]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _col2im_padded(cols, count, filter_h, filter_w, stride, out_h, out_w, dxp, split_rows):
    """Adjoint of _im2col_padded: sums cols into the padded images dxp, tap by tap in
    (ky, kx) order like the book's col2im (so float64 results equal the twin's)."""
    C = dxp.shape[1]
    P = out_h * out_w
    for n in range(count):
        for c in range(C):
            dxp[n, c] = 0
            for ky in range(filter_h):
                for kx in range(filter_w):
                    r = (c * filter_h + ky) * filter_w + kx
                    for oy in range(out_h):
                        j = n * P + _row_slot(oy, out_h, split_rows) * out_w
                        src = cols[r, j:j + out_w]
                        if stride == 1:
                            dst = dxp[n, c, oy + ky, kx:kx + out_w]
                            for i in range(out_w):
                                dst[i] += src[i]
                        else:
                            row = dxp[n, c, oy * stride + ky]
                            for i in range(out_w):
                                row[kx + i * stride] += src[i]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _crop_images(dxp, n0, n1, pad, dx):
    _, C, H, W = dx.shape
    for n in range(n0, n1):
        for c in range(C):
            for iy in range(H):
                src = dxp[n - n0, c, iy + pad, pad:pad + W]
                dst = dx[n, c, iy]
                for ix in range(W):
                    dst[ix] = src[ix]

