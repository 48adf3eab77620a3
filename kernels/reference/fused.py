"""Convolution -> ReLU -> max pool as one block: the NumPy twin composes the three kernels."""
from .conv import conv2d_backward, conv2d_forward
from .elementwise import relu_backward, relu_forward
from .pool import maxpool_backward, maxpool_forward

__all__ = ["conv_relu_pool_forward", "conv_relu_pool_backward"]


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad):
    """Returns (out, argmax), both (N, FN, pooled_h, pooled_w); argmax indexes the pool window."""
    conv, _ = conv2d_forward(x, W, b, stride, pad)
    activated, _ = relu_forward(conv)
    return maxpool_forward(activated, pool_h, pool_w, pool_stride, pool_pad)


def conv_relu_pool_backward(dout, x, W, b, out, argmax, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    """Returns (dx or None, dW, db). The twin recomputes what the forward pass did not keep."""
    conv, col = conv2d_forward(x, W, b, stride, pad)
    _, mask = relu_forward(conv)
    dconv = maxpool_backward(dout, argmax, conv.shape, pool_h, pool_w, pool_stride, pool_pad)
    dconv = relu_backward(dconv, mask)
    return conv2d_backward(dconv, col, W, x.shape, stride, pad, need_dx)
