"""Convolution by im2col + GEMM in plain NumPy: the book's algorithm, the oracle for the jit twin.

Layouts (both backends):
  x    (N, C, H, W)
  W    (FN, C, FH, FW)
  col  (N*out_h*out_w, C*FH*FW), rows ordered (n, oy, ox), columns (c, ky, kx)
  ctx  what conv2d_forward hands to conv2d_backward besides x: here col; the jit twin
       rebuilds its im2col in the backward pass and hands over None
  out  (N, FN, out_h, out_w)
"""
import numpy as np

from ..shapes import conv_output_hw

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
    windows = np.zeros((N, C, filter_h, filter_w, out_h, out_w), dtype=x.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            windows[:, :, ky, kx] = padded[:, :, ky:ky + stride * out_h:stride,
                                           kx:kx + stride * out_w:stride]
    # (the columns by number: -1 cannot be inferred for an empty batch, which the jit
    # kernel returns as an empty matrix)
    return windows.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w,
                                                        C * filter_h * filter_w)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    windows = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    # stride - 1 extra rows/columns let every strided slice below have out_h (out_w) entries
    padded = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            padded[:, :, ky:ky + stride * out_h:stride,
                   kx:kx + stride * out_w:stride] += windows[:, :, ky, kx]
    return np.ascontiguousarray(padded[:, :, pad:H + pad, pad:W + pad])


def conv2d_forward(x, W, b, stride=1, pad=0):
    """Returns (out, ctx); ctx (here col) is what conv2d_backward needs besides x."""
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    col = im2col(x, FH, FW, stride, pad)
    rows = col @ W.reshape(FN, -1).T + b
    return rows.reshape(N, out_h, out_w, FN).transpose(0, 3, 1, 2), col


def conv2d_backward(dout, x, W, ctx, stride=1, pad=0, need_dx=True):
    """Returns (dx or None, dW, db)."""
    col = ctx
    FN, C, FH, FW = W.shape
    rows = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
    db = rows.sum(axis=0)
    dW = (col.T @ rows).T.reshape(FN, C, FH, FW)
    dx = None
    if need_dx:
        dx = col2im(rows @ W.reshape(FN, -1), x.shape, FH, FW, stride, pad)
    return dx, dW, db
