"""Convolution -> ReLU (-> max pool) as one block: the NumPy twin composes the single kernels.

ReLU's mask need not be kept: ReLU passed a gradient exactly where its output is not 0, and
after pooling the output at a maximum is the pooled value itself.
"""
import numpy as np

from .conv import conv2d_backward, conv2d_forward
from .elementwise import relu_forward
from .pool import maxpool_backward, maxpool_forward
from ..shapes import conv_output_hw

__all__ = ["conv_relu_forward", "conv_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward",
           "conv_blocks_forward", "conv_blocks_backward"]


def conv_relu_forward(x, W, b, stride, pad):
    """Returns (out, ctx); ctx is what the backward pass needs besides x (here: col)."""
    conv, ctx = conv2d_forward(x, W, b, stride, pad)
    return relu_forward(conv)[0], ctx


def conv_relu_backward(dout, out, x, W, ctx, stride, pad, need_dx=True):
    """Returns (dx or None, dW, db)."""
    dconv = np.where(out != 0, dout, 0)
    return conv2d_backward(dconv, x, W, ctx, stride, pad, need_dx)


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                           with_argmax=True):
    """Returns (out, argmax, ctx); out and argmax are (N, FN, pooled_h, pooled_w), and argmax
    is None when not ``with_argmax`` (inference: nothing will go backward)."""
    activated, ctx = conv_relu_forward(x, W, b, stride, pad)
    out, argmax = maxpool_forward(activated, pool_h, pool_w, pool_stride, pool_pad)
    return out, (argmax if with_argmax else None), ctx


def conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    """Returns (dx or None, dW, db)."""
    N, _, H, Wd = x.shape
    conv_shape = (N, W.shape[0]) + conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    dconv = maxpool_backward(np.where(out != 0, dout, 0), argmax, conv_shape,
                             pool_h, pool_w, pool_stride, pool_pad)
    return conv2d_backward(dconv, x, W, ctx, stride, pad, need_dx)


def conv_blocks_forward(x, blocks, W2=None, with_argmax=True):
    """The blocks one after another, blocks[i] = (W, b, stride, pad, pool) with pool
    (pool_h, pool_w, stride, pad) or None, then the product of the last output (one row per
    image) with W2 if given: ([(out, argmax, ctx)] per block, product or None)."""
    results = []
    for W, b, stride, pad, pool in blocks:
        if pool is None:
            out, ctx = conv_relu_forward(x, W, b, stride, pad)
            argmax = None
        else:
            out, argmax, ctx = conv_relu_pool_forward(x, W, b, stride, pad, *pool, with_argmax)
        results.append((out, argmax, ctx))
        x = out
    return results, (None if W2 is None else x.reshape(len(x), -1) @ W2)


def conv_blocks_backward(dout, blocks, need_dx=True, affine=None):
    """The affine layer's backward pass if affine = (x2, W2) is given, then each block's
    from the last, blocks[i] = (out, argmax, x, W, ctx, stride, pad, pool): (dx or None,
    [(dW, db)] per block, (dW2, db2) or None)."""
    affine_grads = None
    if affine is not None:
        x2, W2 = affine
        affine_grads = (x2.T @ dout, np.sum(dout, axis=0))
        dout = (dout @ W2.T).reshape(blocks[-1][0].shape)
    grads = []
    for i in reversed(range(len(blocks))):
        out, argmax, x, W, ctx, stride, pad, pool = blocks[i]
        if pool is None:
            dout, dW, db = conv_relu_backward(dout, out, x, W, ctx, stride, pad,
                                              need_dx or i > 0)
        else:
            dout, dW, db = conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                                                   *pool, need_dx or i > 0)
        grads.append((dW, db))
    return dout, grads[::-1], affine_grads
