"""Convolution kernels compiled by Numba, parallel over the batch.

Same layouts and signatures as ``fastconv.kernels.reference.conv``. The GEMMs go to NumPy's
BLAS; Numba does the data movement around them: im2col, col2im, and the NCHW <-> row
transposes with the bias add and the bias gradient folded in, so no transposed copy is made
separately. Every parallel loop writes only outputs its own iteration owns (an image, or a
filter column), which keeps the results free of races and identical for any thread count.
"""
import numpy as np
from numba import njit, prange

from ..shapes import conv_output_hw

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]


@njit(parallel=True, cache=True)
def _im2col_into(x, filter_h, filter_w, stride, pad, out_h, out_w, col):
    N, C, H, W = x.shape
    for n in prange(N):
        for oy in range(out_h):
            for ox in range(out_w):
                row = (n * out_h + oy) * out_w + ox
                j = 0
                for c in range(C):
                    for ky in range(filter_h):
                        iy = oy * stride - pad + ky
                        for kx in range(filter_w):
                            ix = ox * stride - pad + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                col[row, j] = x[n, c, iy, ix]
                            else:
                                col[row, j] = 0
                            j += 1


@njit(parallel=True, cache=True)
def _col2im_into(col, filter_h, filter_w, stride, pad, out_h, out_w, dx):
    # Gather: each input pixel sums the column entries that read it, ky-major like the
    # book's col2im, so float64 results match the twin bit for bit.
    N, C, H, W = dx.shape
    for n in prange(N):
        for c in range(C):
            for iy in range(H):
                for ix in range(W):
                    dx[n, c, iy, ix] = 0
                    for ky in range(filter_h):
                        ty = iy + pad - ky
                        if ty < 0:
                            break
                        if ty % stride != 0 or ty // stride >= out_h:
                            continue
                        oy = ty // stride
                        for kx in range(filter_w):
                            tx = ix + pad - kx
                            if tx < 0:
                                break
                            if tx % stride != 0 or tx // stride >= out_w:
                                continue
                            row = (n * out_h + oy) * out_w + tx // stride
                            dx[n, c, iy, ix] += col[row, (c * filter_h + ky) * filter_w + kx]


@njit(parallel=True, cache=True)
def _rows_to_nchw_bias(rows, b, out):
    N, FN, out_h, out_w = out.shape
    for n in prange(N):
        base = n * out_h * out_w
        for f in range(FN):
            for p in range(out_h * out_w):
                out[n, f, p // out_w, p % out_w] = rows[base + p, f] + b[f]


@njit(parallel=True, cache=True)
def _nchw_to_rows_and_sum(dout, rows, db):
    # One thread owns one filter: it writes that column of rows and that entry of db.
    N, FN, out_h, out_w = dout.shape
    for f in prange(FN):
        total = 0.0
        for n in range(N):
            base = n * out_h * out_w
            for oy in range(out_h):
                for ox in range(out_w):
                    v = dout[n, f, oy, ox]
                    rows[base + oy * out_w + ox, f] = v
                    total += v
        db[f] = total


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    col = np.empty((N * out_h * out_w, C * filter_h * filter_w), dtype=x.dtype)
    _im2col_into(x, filter_h, filter_w, stride, pad, out_h, out_w, col)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    dx = np.empty((N, C, H, W), dtype=col.dtype)
    _col2im_into(np.ascontiguousarray(col), filter_h, filter_w, stride, pad, out_h, out_w, dx)
    return dx


def conv2d_forward(x, W, b, stride=1, pad=0):
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    col = im2col(x, FH, FW, stride, pad)
    rows = col @ W.reshape(FN, -1).T
    out = np.empty((N, FN, out_h, out_w), dtype=rows.dtype)
    _rows_to_nchw_bias(rows, b, out)
    return out, col


def conv2d_backward(dout, col, W, x_shape, stride=1, pad=0, need_dx=True):
    FN, C, FH, FW = W.shape
    N, _, out_h, out_w = dout.shape
    rows = np.empty((N * out_h * out_w, FN), dtype=dout.dtype)
    db = np.empty(FN, dtype=dout.dtype)
    _nchw_to_rows_and_sum(np.ascontiguousarray(dout), rows, db)
    dW = (rows.T @ col).reshape(FN, C, FH, FW)
    dx = None
    if need_dx:
        dx = col2im(rows @ W.reshape(FN, -1), x_shape, FH, FW, stride, pad)
    return dx, dW, db
