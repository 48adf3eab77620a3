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
           "conv_relu_pool_affine_forward"]


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


def conv_relu_pool_affine_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                                  W2, with_argmax=True):
    """``conv_relu_pool_forward``, then the product of its output, one row per image, with
    an affine layer's weights W2: (out, argmax, ctx, product)."""
    out, argmax, ctx = conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w,
                                              pool_stride, pool_pad, with_argmax)
    return out, argmax, ctx, out.reshape(out.shape[0], -1) @ W2


def conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    """Returns (dx or None, dW, db)."""
    N, _, H, Wd = x.shape
    conv_shape = (N, W.shape[0]) + conv_output_hw(H, Wd, W.shape[2], W.shape[3], stride, pad)
    dconv = maxpool_backward(np.where(out != 0, dout, 0), argmax, conv_shape,
                             pool_h, pool_w, pool_stride, pool_pad)
    return conv2d_backward(dconv, x, W, ctx, stride, pad, need_dx)
