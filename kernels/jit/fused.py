"""Convolution -> ReLU -> max pool in one pass per image, compiled by Numba.

The forward pass convolves directly (no im2col), one (image, filter) plane at a time in a
small buffer that stays in cache, then adds the bias, applies ReLU and pools from that buffer,
so only the pooled output and its argmax reach memory. The backward pass needs no saved
activations: ReLU passed the gradient at a pooled maximum exactly when that maximum is > 0,
so only those positions are visited, a quarter of the convolution outputs for 2x2 pooling.
"""
import numpy as np
from numba import njit, prange

from ..shapes import conv_output_hw
from .pool import _window_argmax

__all__ = ["conv_relu_pool_forward", "conv_relu_pool_backward"]


@njit(cache=True)
def _valid_range(size_in, size_out, stride, offset):
    """[lo, hi) of output positions o with 0 <= o*stride + offset < size_in."""
    lo = 0
    while lo < size_out and lo * stride + offset < 0:
        lo += 1
    hi = size_out
    while hi > lo and (hi - 1) * stride + offset >= size_in:
        hi -= 1
    return lo, hi


@njit(parallel=True, cache=True)
def _conv_relu_pool_forward_into(x, W, b, stride, pad, conv_h, conv_w,
                                 pool_h, pool_w, pool_stride, pool_pad, out, argmax):
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    _, _, out_h, out_w = out.shape
    for n in prange(N):
        plane = np.empty((conv_h, conv_w), dtype=out.dtype)
        for f in range(FN):
            plane[:, :] = b[f]
            for c in range(C):
                for ky in range(FH):
                    oy_lo, oy_hi = _valid_range(H, conv_h, stride, ky - pad)
                    for kx in range(FW):
                        w = W[f, c, ky, kx]
                        ox_lo, ox_hi = _valid_range(Wd, conv_w, stride, kx - pad)
                        for oy in range(oy_lo, oy_hi):
                            row = x[n, c, oy * stride + ky - pad]
                            for ox in range(ox_lo, ox_hi):
                                plane[oy, ox] += w * row[ox * stride + kx - pad]
            for oy in range(conv_h):
                for ox in range(conv_w):
                    if plane[oy, ox] <= 0:  # the book's ReLU: NaN passes through
                        plane[oy, ox] = 0
            for py in range(out_h):
                for px in range(out_w):
                    best, k = _window_argmax(plane, py * pool_stride - pool_pad,
                                             px * pool_stride - pool_pad, pool_h, pool_w)
                    out[n, f, py, px] = best
                    argmax[n, f, py, px] = k


@njit(parallel=True, cache=True)
def _conv_relu_pool_weight_grad(dout, x, out, argmax, stride, pad, pool_w, pool_stride,
                                pool_pad, dW, db):
    # one thread owns one filter's dW and db: no races, same sums for any thread count
    N, C, H, Wd = x.shape
    FN, _, FH, FW = dW.shape
    _, _, out_h, out_w = out.shape
    for f in prange(FN):
        acc = np.zeros((C, FH, FW))  # float64: thousands of terms per entry
        total = 0.0
        for n in range(N):
            for py in range(out_h):
                for px in range(out_w):
                    if not out[n, f, py, px] > 0:
                        continue
                    g = dout[n, f, py, px]
                    total += g
                    k = argmax[n, f, py, px]
                    y0 = (py * pool_stride - pool_pad + k // pool_w) * stride - pad
                    x0 = (px * pool_stride - pool_pad + k % pool_w) * stride - pad
                    for c in range(C):
                        for ky in range(FH):
                            iy = y0 + ky
                            if iy < 0 or iy >= H:
                                continue
                            for kx in range(FW):
                                ix = x0 + kx
                                if 0 <= ix < Wd:
                                    acc[c, ky, kx] += g * x[n, c, iy, ix]
        dW[f] = acc
        db[f] = total


@njit(parallel=True, cache=True)
def _conv_relu_pool_input_grad(dout, W, out, argmax, stride, pad, pool_w, pool_stride,
                               pool_pad, dx):
    # one thread owns one image of dx
    N, C, H, Wd = dx.shape
    FN, _, FH, FW = W.shape
    _, _, out_h, out_w = out.shape
    for n in prange(N):
        dx[n] = 0
        for f in range(FN):
            for py in range(out_h):
                for px in range(out_w):
                    if not out[n, f, py, px] > 0:
                        continue
                    g = dout[n, f, py, px]
                    k = argmax[n, f, py, px]
                    y0 = (py * pool_stride - pool_pad + k // pool_w) * stride - pad
                    x0 = (px * pool_stride - pool_pad + k % pool_w) * stride - pad
                    for c in range(C):
                        for ky in range(FH):
                            iy = y0 + ky
                            if iy < 0 or iy >= H:
                                continue
                            for kx in range(FW):
                                ix = x0 + kx
                                if 0 <= ix < Wd:
                                    dx[n, c, iy, ix] += g * W[f, c, ky, kx]


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad):
    x = np.ascontiguousarray(x)
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    conv_h, conv_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    out_h, out_w = conv_output_hw(conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad)
    out = np.empty((N, FN, out_h, out_w), dtype=x.dtype)
    argmax = np.empty((N, FN, out_h, out_w), dtype=np.intp)
    _conv_relu_pool_forward_into(x, np.ascontiguousarray(W), b, stride, pad, conv_h, conv_w,
                                 pool_h, pool_w, pool_stride, pool_pad, out, argmax)
    return out, argmax


def conv_relu_pool_backward(dout, x, W, b, out, argmax, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    dout = np.ascontiguousarray(dout)
    W = np.ascontiguousarray(W)
    dW = np.empty_like(W)
    db = np.empty(W.shape[0], dtype=W.dtype)
    _conv_relu_pool_weight_grad(dout, x, out, argmax, stride, pad, pool_w, pool_stride,
                                pool_pad, dW, db)
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        _conv_relu_pool_input_grad(dout, W, out, argmax, stride, pad, pool_w, pool_stride,
                                   pool_pad, dx)
    return dx, dW, db
