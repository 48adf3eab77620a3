"""Convolution -> ReLU (-> max pool) compiled by Numba, fused into the conv pipeline.

The convolution is the chunked im2col + GEMM pipeline of ``conv.py``; what is fused is the
pass after each chunk's GEMM: bias, ReLU and pooling read the GEMM output while it is in
cache and write only the block's output (and the argmax). The backward pass needs no saved
mask: ReLU passed a gradient exactly where its output is not 0, and after pooling that output
at a maximum is the pooled value itself, so only the pooled maxima are visited.
"""
import numpy as np
from numba import njit

from ..shapes import conv_output_hw
from .conv import _bias_to_nchw, backward_pipeline, forward_pipeline
from .pool import _bias_relu, _has_nan, _pool_2x2, _pool_2x2_relu_values, _pool_plane

__all__ = ["conv_relu_forward", "conv_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward"]


@njit(nogil=True, cache=True)
def _bias_relu_pool(rows, b, n0, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad,
                    out, argmax, with_argmax):
    FN = out.shape[1]
    P = conv_h * conv_w
    fast = pool_h == 2 and pool_w == 2 and pool_pad == 0
    zero = out.dtype.type(0)
    column_max = np.empty(conv_w, dtype=out.dtype)
    unread_argmax = np.empty(out.shape[2:], dtype=np.intp)  # where no argmax is kept
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            flat = rows[f, i * P:(i + 1) * P]
            plane = flat.reshape((conv_h, conv_w))
            bias = b[f]
            # with a finite bias, relu(plane + bias) holds a NaN only where plane does
            if fast and np.isfinite(bias) and not _has_nan(plane):
                if with_argmax:
                    _pool_2x2(plane, pool_stride, out[n0 + i, f], argmax[n0 + i, f], bias,
                              True)
                else:
                    _pool_2x2_relu_values(plane, pool_stride, out[n0 + i, f], bias,
                                          column_max)
                continue
            for p in range(P):
                flat[p] = _bias_relu(flat[p], bias, zero)
            _pool_plane(plane, pool_h, pool_w, pool_stride, pool_pad, out[n0 + i, f],
                        argmax[n0 + i, f] if with_argmax else unread_argmax)


@njit(nogil=True, cache=True)
def _relu_grad_to_rows(dout, out, n0, rows):
    _, FN, P = dout.shape
    zero = rows.dtype.type(0)
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            grad = dout[n0 + i, f]
            kept = out[n0 + i, f]
            dst = rows[f, i * P:(i + 1) * P]
            for p in range(P):
                dst[p] = grad[p] if kept[p] != 0 else zero


@njit(nogil=True, cache=True)
def _pool_relu_grad_to_rows(dout, out, argmax, n0, n1, conv_w, P, pool_w, pool_stride,
                            pool_pad, rows):
    _, FN, out_h, out_w = dout.shape
    rows[:] = 0
    for n in range(n0, n1):
        base = (n - n0) * P
        for f in range(FN):
            for py in range(out_h):
                for px in range(out_w):
                    if out[n, f, py, px] == 0:
                        continue
                    g = dout[n, f, py, px]
                    k = argmax[n, f, py, px]
                    oy = py * pool_stride - pool_pad + k // pool_w
                    ox = px * pool_stride - pool_pad + k % pool_w
                    rows[f, base + oy * conv_w + ox] += g


def conv_relu_forward(x, W, b, stride, pad):
    """Returns (out, None)."""
    FN = W.shape[0]
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    out = np.empty((N, FN, conv_h * conv_w), dtype=x.dtype)
    forward_pipeline(x, W, stride, pad,
                     lambda rows, n0: _bias_to_nchw(rows, b, n0, out, True))
    return out.reshape(N, FN, conv_h, conv_w), None


def conv_relu_backward(dout, out, x, W, ctx, stride, pad, need_dx=True):
    N, FN = dout.shape[:2]
    dout = np.ascontiguousarray(dout).reshape(N, FN, -1)
    out = out.reshape(N, FN, -1)
    return backward_pipeline(x, W, stride, pad, need_dx,
                             lambda n0, n1, rows: _relu_grad_to_rows(dout, out, n0, rows))


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                           with_argmax=True):
    """Returns (out, argmax, None); argmax is None when not ``with_argmax`` (inference)."""
    FN = W.shape[0]
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    out_h, out_w = conv_output_hw(conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad)
    out = np.empty((N, FN, out_h, out_w), dtype=x.dtype)
    shape = (N, FN, out_h, out_w) if with_argmax else (0, FN, out_h, out_w)
    argmax = np.empty(shape, dtype=np.intp)
    forward_pipeline(x, W, stride, pad, lambda rows, n0: _bias_relu_pool(
        rows, b, n0, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad, out, argmax,
        with_argmax))
    return out, (argmax if with_argmax else None), None


def conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    dout = np.ascontiguousarray(dout)
    return backward_pipeline(x, W, stride, pad, need_dx, lambda n0, n1, rows:
                             _pool_relu_grad_to_rows(dout, out, argmax, n0, n1, conv_w,
                                                     conv_h * conv_w, pool_w, pool_stride,
                                                     pool_pad, rows))
