"""Max pooling in plain NumPy, the oracle for the jit twin.

argmax has the output's shape (N, C, out_h, out_w) and holds the window-local index
ky * pool_w + kx of the first maximum. Padding takes part as -inf, so it is never chosen
over a real value (the book pads with 0 and, with pad > 0, crashes on the output size).
"""
import numpy as np

from ..shapes import conv_output_hw

__all__ = ["maxpool_forward", "maxpool_backward"]


def _windows(x, pool_h, pool_w, stride, pad):
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, pool_h, pool_w, stride, pad)
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=-np.inf)
    win = np.empty((N, C, out_h, out_w, pool_h * pool_w), dtype=x.dtype)
    for ky in range(pool_h):
        for kx in range(pool_w):
            win[..., ky * pool_w + kx] = padded[:, :, ky:ky + stride * out_h:stride,
                                                kx:kx + stride * out_w:stride]
    return win


def maxpool_forward(x, pool_h, pool_w, stride, pad=0):
    """Returns (out, argmax), both (N, C, out_h, out_w)."""
    win = _windows(x, pool_h, pool_w, stride, pad)
    argmax = np.argmax(win, axis=-1)
    out = np.take_along_axis(win, argmax[..., None], axis=-1)[..., 0]
    return out, argmax


def maxpool_backward(dout, argmax, x_shape, pool_h, pool_w, stride, pad=0):
    N, C, H, W = x_shape
    _, _, out_h, out_w = dout.shape
    padded = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=dout.dtype)
    for ky in range(pool_h):
        for kx in range(pool_w):
            routed = np.where(argmax == ky * pool_w + kx, dout, 0)
            padded[:, :, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride] += routed
    return np.ascontiguousarray(padded[:, :, pad:H + pad, pad:W + pad])
