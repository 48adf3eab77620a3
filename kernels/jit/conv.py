"""Convolution kernels compiled by Numba: im2col + GEMM, run as a per-thread pipeline.

Same contract as ``fastconv.kernels.reference.conv``. The batch is cut into a fixed number of
parts (``gemm.pieces``) that threads run at once, and each part walks its images in chunks
whose im2col matrix fits in cache: im2col -> GEMM -> epilogue for the forward pass, and
prologue -> im2col -> GEMMs -> col2im for the backward pass. The im2col matrix of a chunk
is K-major, ``cols (C*FH*FW, images*out_h*out_w)``, so the GEMMs need no transposes, and it
is rebuilt in the backward pass instead of being kept: for the 16-channel layers of
DeepConvNet the whole-batch matrix is 45 MB, and streaming it through memory four times a
step cost more than building it twice in cache.

Parts own disjoint images; the weight and bias gradients are summed per part and the parts
added in a fixed order. No result depends on the thread count.
"""
import math
import threading

import numpy as np
from numba import njit

from ..shapes import conv_output_hw
from .gemm import pieces, run_parts, single_threaded_blas
from .pool import _bias_relu

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]

CHUNK_BYTES = 1 << 20  # an im2col chunk about the size of one core's L2 cache

_scratch = threading.local()  # each thread's scratch arrays, see _scratch_array


def _scratch_array(name, shape, dtype):
    """A scratch array of the calling thread, reused across calls and grown when too small.

    A fresh array of a megabyte comes from mmap, and its first touch faults every 4 KB
    page: allocating each chunk's 1.2 MB GEMM output cost 0.8 ms, four times the GEMM. Each
    thread runs one part at a time, so a thread's own arrays are never shared.
    """
    # math.prod, not np.prod: this runs several times per layer call, and np.prod's ~4 us
    # was a third of a small layer's Python overhead
    size = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    key = (name, np.dtype(dtype).char)
    flat = _scratch.__dict__.get(key)
    if flat is None or flat.size < size:
        flat = _scratch.__dict__[key] = np.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)


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


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def _im2col_padded(xp, count, filter_h, filter_w, stride, out_h, out_w, cols):
    """K-major im2col of the first count padded images xp into cols (taps, pixels).

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
                        dst = cols[r, n * P + oy * out_w:n * P + (oy + 1) * out_w]
                        if stride == 1:
                            src = xp[n, c, oy + ky, kx:kx + out_w]
                            for i in range(out_w):
                                dst[i] = src[i]
                        else:
                            row = xp[n, c, oy * stride + ky]
                            for i in range(out_w):
                                dst[i] = row[kx + i * stride]


@njit(nogil=True, cache=True)
def _col2im_padded(cols, count, filter_h, filter_w, stride, out_h, out_w, dxp):
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
                        src = cols[r, n * P + oy * out_w:n * P + (oy + 1) * out_w]
                        if stride == 1:
                            dst = dxp[n, c, oy + ky, kx:kx + out_w]
                            for i in range(out_w):
                                dst[i] += src[i]
                        else:
                            row = dxp[n, c, oy * stride + ky]
                            for i in range(out_w):
                                row[kx + i * stride] += src[i]


@njit(nogil=True, cache=True)
def _crop_images(dxp, n0, n1, pad, dx):
    _, C, H, W = dx.shape
    for n in range(n0, n1):
        for c in range(C):
            for iy in range(H):
                src = dxp[n - n0, c, iy + pad, pad:pad + W]
                dst = dx[n, c, iy]
                for ix in range(W):
                    dst[ix] = src[ix]


# The GEMM-layout <-> NCHW passes below index through per-plane slices: with the flat
# index arithmetic written out, Numba's negative-index handling kept LLVM from vectorizing
# them, and they ran 3-4x slower.
@njit(nogil=True, cache=True)
def _bias_to_nchw(rows, b, n0, out, with_relu):
    """out[n0 + i, f] = rows of image i + b[f], through the book's ReLU when with_relu."""
    _, FN, P = out.shape
    zero = out.dtype.type(0)
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            src = rows[f, i * P:(i + 1) * P]
            dst = out[n0 + i, f]
            bias = b[f]
            for p in range(P):
                dst[p] = _bias_relu(src[p], bias, zero) if with_relu else src[p] + bias


@njit(nogil=True, cache=True)
def _nchw_to_rows(dout, n0, rows):
    _, FN, P = dout.shape
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            src = dout[n0 + i, f]
            dst = rows[f, i * P:(i + 1) * P]
            for p in range(P):
                dst[p] = src[p]


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _add_row_sums(rows, acc):
    """acc[f] += sum(rows[f]) in float64. Reassociation lets the sum vectorize; a sum carried
    in one register cost ~4 ns per element, more than the GEMMs around it. The order still
    depends only on the shape, so results do not change with the thread count."""
    for f in range(rows.shape[0]):
        row = rows[f]
        total = 0.0
        for j in range(row.shape[0]):
            total += row[j]
        acc[f] += total


def chunk_images(C, filter_h, filter_w, out_h, out_w, itemsize):
    return max(1, CHUNK_BYTES // (C * filter_h * filter_w * out_h * out_w * itemsize))


def forward_pipeline(x, W, stride, pad, epilogue):
    """For each chunk of images: im2col, rows = W @ cols, epilogue(rows, n0). Parallel parts."""
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    P, K = out_h * out_w, C * FH * FW
    x = np.ascontiguousarray(x)
    Wm = W.reshape(FN, K)
    chunk = chunk_images(C, FH, FW, out_h, out_w, x.itemsize)

    def part(lo, hi):
        flat_cols = _scratch_array("cols", K * chunk * P, x.dtype)
        flat_rows = _scratch_array("rows", FN * chunk * P, x.dtype)
        xp = _scratch_array("padded", (chunk, C, H + 2 * pad, Wd + 2 * pad), x.dtype)
        for n0 in range(lo, hi, chunk):
            n1 = min(n0 + chunk, hi)
            m = (n1 - n0) * P
            cols = flat_cols[:K * m].reshape(K, m)
            rows = flat_rows[:FN * m].reshape(FN, m)
            _pad_images(x, n0, n1, pad, xp)
            _im2col_padded(xp, n1 - n0, FH, FW, stride, out_h, out_w, cols)
            np.matmul(Wm, cols, out=rows)
            epilogue(rows, n0)

    with single_threaded_blas():
        _images_parallel(part, N)


def backward_pipeline(x, W, stride, pad, need_dx, prologue):
    """Gradients from prologue(n0, n1, rows), which fills the output gradient of a chunk in
    GEMM layout rows (FN, images*P)."""
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    P, K = out_h * out_w, C * FH * FW
    x = np.ascontiguousarray(x)
    Wm = W.reshape(FN, K)
    WmT = np.ascontiguousarray(Wm.T)
    chunk = chunk_images(C, FH, FW, out_h, out_w, x.itemsize)
    dx = np.empty_like(x) if need_dx else None

    def part(lo, hi):
        flat_cols = _scratch_array("cols", K * chunk * P, x.dtype)
        flat_rows = _scratch_array("rows", FN * chunk * P, x.dtype)
        xp = _scratch_array("padded", (chunk, C, H + 2 * pad, Wd + 2 * pad), x.dtype)
        dW_chunk = _scratch_array("dW", (FN, K), x.dtype)
        dW = np.zeros((FN, K), dtype=x.dtype)
        db = np.zeros(FN)
        for n0 in range(lo, hi, chunk):
            n1 = min(n0 + chunk, hi)
            m = (n1 - n0) * P
            rows = flat_rows[:FN * m].reshape(FN, m)
            prologue(n0, n1, rows)
            _add_row_sums(rows, db)
            cols = flat_cols[:K * m].reshape(K, m)
            _pad_images(x, n0, n1, pad, xp)
            _im2col_padded(xp, n1 - n0, FH, FW, stride, out_h, out_w, cols)
            dW += np.matmul(rows, cols.T, out=dW_chunk)
            if need_dx:
                np.matmul(WmT, rows, out=cols)  # the chunk's dcol reuses the cols buffer
                _col2im_padded(cols, n1 - n0, FH, FW, stride, out_h, out_w, xp)
                _crop_images(xp, n0, n1, pad, dx)
        return dW, db

    with single_threaded_blas():
        partials = _images_parallel(part, N)
    dW, db = partials[0]
    for more_dW, more_db in partials[1:]:
        dW = dW + more_dW
        db = db + more_db
    return dx, dW.reshape(W.shape), db.astype(x.dtype)


def _images_parallel(kernel, N):
    """[kernel(lo, hi) for each fixed part of the batch], the parts run at once."""
    return run_parts([lambda lo=lo, hi=hi: kernel(lo, hi) for lo, hi in pieces(N)])


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    col = np.empty((N * out_h * out_w, C * filter_h * filter_w), dtype=x.dtype)
    P = out_h * out_w
    _images_parallel(lambda lo, hi: _im2col_rows(
        x, lo, hi, filter_h, filter_w, stride, pad, out_h, out_w, col[lo * P:hi * P]), N)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    col = np.ascontiguousarray(col)
    dx = np.empty((N, C, H, W), dtype=col.dtype)
    P = out_h * out_w
    _images_parallel(lambda lo, hi: _col2im_rows(
        col[lo * P:hi * P], lo, hi, filter_h, filter_w, stride, pad, out_h, out_w, dx), N)
    return dx


def conv2d_forward(x, W, b, stride=1, pad=0):
    """Returns (out, None): nothing but x is needed for the backward pass."""
    FN = W.shape[0]
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    out = np.empty((N, FN, out_h * out_w), dtype=x.dtype)
    forward_pipeline(x, W, stride, pad,
                     lambda rows, n0: _bias_to_nchw(rows, b, n0, out, False))
    return out.reshape(N, FN, out_h, out_w), None


def conv2d_backward(dout, x, W, ctx, stride=1, pad=0, need_dx=True):
    N, FN = dout.shape[:2]
    flat = np.ascontiguousarray(dout).reshape(N, FN, -1)
    return backward_pipeline(x, W, stride, pad, need_dx,
                             lambda n0, n1, rows: _nchw_to_rows(flat, n0, rows))
