"""Convolution and the book's im2col/col2im, compiled by Numba.

Same contract as ``fastconv.kernels.reference.conv``. The convolution runs the chunked
im2col + GEMM pipeline of ``pipeline.py``; im2col and col2im build the book's layout (see
``im2col.py``) for ``fastconv.util``.
"""
import numpy as np

from . import recycle
from .contracts import (bias, conv_geometry, float_array, image_shape, same_dtype, shaped,
                        windows)
from .epilogues import GRADIENT, NO_ARGMAX, NO_POOL, OUTPUT_BIAS
from .im2col import _col2im_rows, _im2col_rows
from .pipeline import backward_pipeline, forward_pipeline, images_parallel

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    x = np.ascontiguousarray(float_array("im2col", "x", x, 4))
    N, C, H, W = x.shape
    out_h, out_w = windows("im2col", H, W, filter_h, filter_w, stride, pad)
    col = recycle.empty((N * out_h * out_w, C * filter_h * filter_w), x.dtype)
    P = out_h * out_w
    images_parallel(lambda lo, hi: _im2col_rows(
        x, lo, hi, filter_h, filter_w, stride, pad, out_h, out_w, col[lo * P:hi * P]), N)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = image_shape("col2im", "input_shape", input_shape, least_images=0)
    out_h, out_w = windows("col2im", H, W, filter_h, filter_w, stride, pad)
    float_array("col2im", "col", col)
    shaped("col2im", "col", col, (N * out_h * out_w, C * filter_h * filter_w),
           f" (one row for each window of input_shape {(N, C, H, W)})")
    col = np.ascontiguousarray(col)
    dx = recycle.empty((N, C, H, W), col.dtype)
    P = out_h * out_w
    images_parallel(lambda lo, hi: _col2im_rows(
        col[lo * P:hi * P], lo, hi, filter_h, filter_w, stride, pad, out_h, out_w, dx), N)
    return dx


def conv2d_forward(x, W, b, stride=1, pad=0):
    """Returns (out, None): nothing but x is needed for the backward pass."""
    out_h, out_w = conv_geometry("conv2d_forward", x, W, stride, pad)
    same_dtype("conv2d_forward", "x", x, b=bias("conv2d_forward", b, W.shape[0]))
    N = x.shape[0]
    out = recycle.empty((N, W.shape[0], out_h, out_w), x.dtype)
    forward_pipeline(x, W, stride, pad, (OUTPUT_BIAS, b, NO_POOL, out, NO_ARGMAX))
    return out, None


def conv2d_backward(dout, x, W, ctx, stride=1, pad=0, need_dx=True):
    out_h, out_w = conv_geometry("conv2d_backward", x, W, stride, pad)
    same_dtype("conv2d_backward", "x", x, dout=float_array("conv2d_backward", "dout", dout))
    shaped("conv2d_backward", "dout", dout, (x.shape[0], W.shape[0], out_h, out_w),
           " (the output of x under W)")
    dout = np.ascontiguousarray(dout)
    return backward_pipeline(x, W, stride, pad, need_dx,
                             (GRADIENT, NO_POOL, dout, dout, NO_ARGMAX))
