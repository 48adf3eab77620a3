"""Convolution kernels compiled by Numba, parallel over the batch.

Same signatures as ``fastconv.kernels.reference.conv``. The GEMMs go to NumPy's BLAS; Numba
moves the data around them. The convolution works on the K-major im2col matrix
``colT (C*FH*FW, N*out_h*out_w)``: each row of it is one filter tap over the whole batch, so
im2col, col2im and the NCHW <-> GEMM transposes all copy contiguous runs of ``out_w``
values, and the GEMMs need no transposed copies.

Every parallel loop writes only what its iteration owns (an image, or a filter row), so the
results are free of races and identical for any thread count.
"""
import numpy as np
from numba import njit, prange

from ..shapes import conv_output_hw
from .gemm import matmul

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]


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


@njit(parallel=True, cache=True)
def _im2col_kmajor_into(x, filter_h, filter_w, stride, pad, out_h, out_w, colT):
    N, C, H, W = x.shape
    P = out_h * out_w
    for n in prange(N):
        for c in range(C):
            for ky in range(filter_h):
                oy_lo, oy_hi = _valid_range(H, out_h, stride, ky - pad)
                for kx in range(filter_w):
                    ox_lo, ox_hi = _valid_range(W, out_w, stride, kx - pad)
                    r = (c * filter_h + ky) * filter_w + kx
                    # each entry is written once: zeros only where the tap reads padding
                    # (zero-filling the whole run first made this kernel twice as slow)
                    for oy in range(out_h):
                        o = n * P + oy * out_w
                        if oy < oy_lo or oy >= oy_hi:
                            for ox in range(out_w):
                                colT[r, o + ox] = 0
                            continue
                        iy = oy * stride + ky - pad
                        for ox in range(ox_lo):
                            colT[r, o + ox] = 0
                        for ox in range(ox_lo, ox_hi):
                            colT[r, o + ox] = x[n, c, iy, ox * stride + kx - pad]
                        for ox in range(ox_hi, out_w):
                            colT[r, o + ox] = 0


@njit(parallel=True, cache=True)
def _col2im_kmajor_into(colT, filter_h, filter_w, stride, pad, out_h, out_w, dx):
    # Each image is summed by one thread, tap by tap in (ky, kx) order like the book's
    # col2im, so float64 results equal the twin's bit for bit.
    N, C, H, W = dx.shape
    P = out_h * out_w
    for n in prange(N):
        dx[n] = 0
        for c in range(C):
            for ky in range(filter_h):
                oy_lo, oy_hi = _valid_range(H, out_h, stride, ky - pad)
                for kx in range(filter_w):
                    ox_lo, ox_hi = _valid_range(W, out_w, stride, kx - pad)
                    src = colT[(c * filter_h + ky) * filter_w + kx, n * P:(n + 1) * P]
                    for oy in range(oy_lo, oy_hi):
                        dst = dx[n, c, oy * stride + ky - pad]
                        seg = src[oy * out_w + ox_lo:oy * out_w + ox_hi]
                        start = ox_lo * stride + kx - pad
                        if stride == 1:
                            run = dst[start:start + seg.shape[0]]
                            for i in range(seg.shape[0]):
                                run[i] += seg[i]
                        else:
                            for i in range(seg.shape[0]):
                                dst[start + i * stride] += seg[i]


@njit(parallel=True, cache=True)
def _im2col_rows_into(x, filter_h, filter_w, stride, pad, out_h, out_w, col):
    # The book's layout, for fastconv.util.im2col; the convolution itself uses colT.
    N, C, H, W = x.shape
    for n in prange(N):
        for oy in range(out_h):
            for ox in range(out_w):
                row = col[(n * out_h + oy) * out_w + ox]
                j = 0
                for c in range(C):
                    for ky in range(filter_h):
                        iy = oy * stride - pad + ky
                        for kx in range(filter_w):
                            ix = ox * stride - pad + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                row[j] = x[n, c, iy, ix]
                            else:
                                row[j] = 0
                            j += 1


@njit(parallel=True, cache=True)
def _gemm_to_nchw_bias(rowsT, b, out):
    # rowsT (FN, N*P) -> out (N, FN, P): one contiguous run per (image, filter)
    N, FN, P = out.shape
    for n in prange(N):
        for f in range(FN):
            src = rowsT[f, n * P:(n + 1) * P]
            dst = out[n, f]
            bias = b[f]
            for p in range(P):
                dst[p] = src[p] + bias


@njit(parallel=True, cache=True)
def _nchw_to_gemm_and_sum(dout, rowsT, db):
    # dout (N, FN, P) -> rowsT (FN, N*P); one thread owns one filter's row and bias grad
    N, FN, P = dout.shape
    for f in prange(FN):
        total = 0.0
        for n in range(N):
            src = dout[n, f]
            dst = rowsT[f, n * P:(n + 1) * P]
            for p in range(P):
                dst[p] = src[p]
                total += src[p]
        db[f] = total


def im2col_kmajor(x, filter_h, filter_w, stride, pad):
    """colT (C*FH*FW, N*out_h*out_w): the transpose of the book's im2col matrix."""
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    colT = np.empty((C * filter_h * filter_w, N * out_h * out_w), dtype=x.dtype)
    _im2col_kmajor_into(np.ascontiguousarray(x), filter_h, filter_w, stride, pad,
                        out_h, out_w, colT)
    return colT


def col2im_kmajor(colT, input_shape, filter_h, filter_w, stride, pad):
    N, C, H, W = input_shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    dx = np.empty((N, C, H, W), dtype=colT.dtype)
    _col2im_kmajor_into(np.ascontiguousarray(colT), filter_h, filter_w, stride, pad,
                        out_h, out_w, dx)
    return dx


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    col = np.empty((N * out_h * out_w, C * filter_h * filter_w), dtype=x.dtype)
    _im2col_rows_into(np.ascontiguousarray(x), filter_h, filter_w, stride, pad, out_h, out_w, col)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    # the book's layout is the transpose of colT: hand the kernel a transposed view
    return col2im_kmajor(np.ascontiguousarray(col.T), input_shape, filter_h, filter_w, stride, pad)


def conv2d_forward(x, W, b, stride=1, pad=0):
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    colT = im2col_kmajor(x, FH, FW, stride, pad)
    rowsT = matmul(W.reshape(FN, -1), colT)
    out = np.empty((N, FN, out_h, out_w), dtype=rowsT.dtype)
    _gemm_to_nchw_bias(rowsT, b, out.reshape(N, FN, -1))
    return out, colT


def gemm_backward(rowsT, colT, W, x_shape, stride, pad, need_dx):
    """(dx or None, dW) from the output gradient in GEMM layout rowsT (FN, N*P)."""
    FN, C, FH, FW = W.shape
    dW = matmul(rowsT, colT.T).reshape(FN, C, FH, FW)
    dx = None
    if need_dx:
        dx = col2im_kmajor(matmul(W.reshape(FN, -1).T, rowsT), x_shape, FH, FW, stride, pad)
    return dx, dW


def conv2d_backward(dout, colT, W, x_shape, stride=1, pad=0, need_dx=True):
    FN = W.shape[0]
    N = dout.shape[0]
    rowsT = np.empty((FN, dout.size // FN), dtype=dout.dtype)
    db = np.empty(FN, dtype=dout.dtype)
    _nchw_to_gemm_and_sum(np.ascontiguousarray(dout).reshape(N, FN, -1), rowsT, db)
    dx, dW = gemm_backward(rowsT, colT, W, x_shape, stride, pad, need_dx)
    return dx, dW, db
