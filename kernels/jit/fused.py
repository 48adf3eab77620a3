"""Convolution -> ReLU (-> max pool) in one pass over the GEMM output, compiled by Numba.

The convolution is the same im2col + GEMM as ``conv2d_forward``; what is fused is the pass
after it: bias, ReLU and pooling read the GEMM output once and write only the block's output
(and the argmax), instead of three full-size arrays. The backward pass needs no saved mask:
ReLU passed a gradient exactly where its output is not 0, and after pooling that output at a
maximum is the pooled value itself, so only the pooled maxima are visited.
"""
import numpy as np
from numba import njit, prange

from ..shapes import conv_output_hw
from .conv import gemm_backward, im2col_kmajor
from .gemm import matmul
from .pool import _pool_plane

__all__ = ["conv_relu_forward", "conv_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward"]


@njit(parallel=True, cache=True)
def _bias_relu_to_nchw(rowsT, b, out):
    N, FN, P = out.shape
    for n in prange(N):
        for f in range(FN):
            src = rowsT[f, n * P:(n + 1) * P]
            dst = out[n, f]
            bias = b[f]
            for p in range(P):
                v = src[p] + bias
                dst[p] = 0 if v <= 0 else v  # the book's ReLU: NaN passes through


@njit(parallel=True, cache=True)
def _bias_relu_pool(rowsT, b, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad,
                    out, argmax):
    N, FN = out.shape[:2]
    P = conv_h * conv_w
    for n in prange(N):
        for f in range(FN):
            flat = rowsT[f, n * P:(n + 1) * P]  # this image's conv output, bias-free
            bias = b[f]
            for p in range(P):
                v = flat[p] + bias
                flat[p] = 0 if v <= 0 else v
            _pool_plane(flat.reshape((conv_h, conv_w)), pool_h, pool_w, pool_stride, pool_pad,
                        out[n, f], argmax[n, f])


@njit(parallel=True, cache=True)
def _relu_grad_to_gemm(dout, out, rowsT, db):
    # one thread owns one filter's row of rowsT and its bias gradient
    N, FN, P = dout.shape
    for f in prange(FN):
        total = 0.0
        for n in range(N):
            g = dout[n, f]
            o = out[n, f]
            dst = rowsT[f, n * P:(n + 1) * P]
            for p in range(P):
                v = g[p] if o[p] != 0 else 0
                dst[p] = v
                total += v
        db[f] = total


@njit(parallel=True, cache=True)
def _pool_relu_grad_to_gemm(dout, out, argmax, conv_w, P, pool_w, pool_stride, pool_pad,
                            rowsT, db):
    N, FN, out_h, out_w = dout.shape
    for f in prange(FN):
        row = rowsT[f]
        row[:] = 0
        total = 0.0
        for n in range(N):
            base = n * P
            for py in range(out_h):
                for px in range(out_w):
                    if out[n, f, py, px] == 0:
                        continue
                    g = dout[n, f, py, px]
                    k = argmax[n, f, py, px]
                    oy = py * pool_stride - pool_pad + k // pool_w
                    ox = px * pool_stride - pool_pad + k % pool_w
                    row[base + oy * conv_w + ox] += g
                    total += g
        db[f] = total


def conv_relu_forward(x, W, b, stride, pad):
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    colT = im2col_kmajor(x, FH, FW, stride, pad)
    rowsT = matmul(W.reshape(FN, -1), colT)
    out = np.empty((N, FN, conv_h, conv_w), dtype=rowsT.dtype)
    _bias_relu_to_nchw(rowsT, b, out.reshape(N, FN, -1))
    return out, colT


def conv_relu_backward(dout, out, colT, W, x_shape, stride, pad, need_dx=True):
    FN = W.shape[0]
    N = dout.shape[0]
    rowsT = np.empty((FN, dout.size // FN), dtype=dout.dtype)
    db = np.empty(FN, dtype=dout.dtype)
    _relu_grad_to_gemm(np.ascontiguousarray(dout).reshape(N, FN, -1), out.reshape(N, FN, -1),
                       rowsT, db)
    dx, dW = gemm_backward(rowsT, colT, W, x_shape, stride, pad, need_dx)
    return dx, dW, db


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad):
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    out_h, out_w = conv_output_hw(conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad)
    colT = im2col_kmajor(x, FH, FW, stride, pad)
    rowsT = matmul(W.reshape(FN, -1), colT)
    out = np.empty((N, FN, out_h, out_w), dtype=rowsT.dtype)
    argmax = np.empty((N, FN, out_h, out_w), dtype=np.intp)
    _bias_relu_pool(rowsT, b, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad, out, argmax)
    return out, argmax, colT


def conv_relu_pool_backward(dout, out, argmax, colT, W, x_shape, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x_shape
    conv_h, conv_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    rowsT = np.empty((FN, N * conv_h * conv_w), dtype=dout.dtype)
    db = np.empty(FN, dtype=dout.dtype)
    _pool_relu_grad_to_gemm(np.ascontiguousarray(dout), out, argmax, conv_w, conv_h * conv_w,
                            pool_w, pool_stride, pool_pad, rowsT, db)
    dx, dW = gemm_backward(rowsT, colT, W, x_shape, stride, pad, need_dx)
    return dx, dW, db
