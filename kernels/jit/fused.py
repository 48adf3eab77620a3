"""Convolution -> ReLU (-> max pool) compiled by Numba, fused into the conv pipeline.

The convolution is the chunked im2col + GEMM pipeline of ``pipeline.py``; what is fused is
the pass after each chunk's GEMM (``epilogues``): bias, ReLU and pooling read the GEMM output
while it is in cache and write only the block's output (and the argmax). The backward pass
needs no saved mask, see ``epilogues``.
"""
import numpy as np

from ..shapes import conv_output_hw
from .epilogues import (GRADIENT_RELU, GRADIENT_RELU_POOL, NO_ARGMAX, NO_POOL, OUTPUT_RELU,
                        OUTPUT_RELU_POOL, OUTPUT_RELU_POOL_VALUES)
from .pipeline import backward_pipeline, forward_pipeline

__all__ = ["conv_relu_forward", "conv_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward",
           "conv_relu_pool_affine_forward"]


def conv_relu_forward(x, W, b, stride, pad):
    """Returns (out, None)."""
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    out = np.empty((N, W.shape[0], conv_h, conv_w), dtype=x.dtype)
    forward_pipeline(x, W, stride, pad, (OUTPUT_RELU, b, NO_POOL, out, NO_ARGMAX))
    return out, None


def conv_relu_backward(dout, out, x, W, ctx, stride, pad, need_dx=True):
    prologue = (GRADIENT_RELU, NO_POOL, np.ascontiguousarray(dout), np.ascontiguousarray(out),
                NO_ARGMAX)
    return backward_pipeline(x, W, stride, pad, need_dx, prologue)


def _pool_epilogue(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad, with_argmax):
    """The epilogue (kind, b, pool, out, argmax) of a conv -> relu -> pool block, its out and
    argmax allocated."""
    N, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    out_h, out_w = conv_output_hw(conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad)
    out = np.empty((N, W.shape[0], out_h, out_w), dtype=x.dtype)
    argmax = np.empty((N if with_argmax else 0,) + out.shape[1:], dtype=np.intp)
    kind = OUTPUT_RELU_POOL if with_argmax else OUTPUT_RELU_POOL_VALUES
    return kind, b, (pool_h, pool_w, pool_stride, pool_pad), out, argmax


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                           with_argmax=True):
    """Returns (out, argmax, None); argmax is None when not ``with_argmax`` (inference)."""
    epilogue = _pool_epilogue(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                              with_argmax)
    forward_pipeline(x, W, stride, pad, epilogue)
    _, _, _, out, argmax = epilogue
    return out, (argmax if with_argmax else None), None


def conv_relu_pool_affine_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                                  W2, with_argmax=True):
    """``conv_relu_pool_forward``, and the product of its output (flattened per image) with
    W2, an affine layer's weights: (out, argmax, ctx, product). Each part of the batch
    multiplies its own images' rows as soon as they are pooled, so the product takes no
    hand-over to the pool thread of its own (1 of SimpleConvNet's 4 a step)."""
    epilogue = _pool_epilogue(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                              with_argmax)
    _, _, _, out, argmax = epilogue
    rows = out.reshape(len(out), -1)
    W2 = np.ascontiguousarray(W2, dtype=x.dtype)
    product = np.empty((len(out), W2.shape[1]), dtype=x.dtype)

    def multiply(lo, hi):
        np.matmul(rows[lo:hi], W2, out=product[lo:hi])

    forward_pipeline(x, W, stride, pad, epilogue, after_part=multiply)
    return out, (argmax if with_argmax else None), None, product


def conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    prologue = (GRADIENT_RELU_POOL, (pool_h, pool_w, pool_stride, pool_pad),
                np.ascontiguousarray(dout), np.ascontiguousarray(out),
                np.ascontiguousarray(argmax))
    return backward_pipeline(x, W, stride, pad, need_dx, prologue)
