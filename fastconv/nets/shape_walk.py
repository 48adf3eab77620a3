"""The shapes a network's layers hand one another, checked before any layer runs.

Each layer checks its own input, but a later layer checks only after the layers before it
have run and kept their state: images of another size than a conv network was built for
passed its conv layers and were refused at its first affine layer, which left the conv
layers holding the refused batch. ``check_input_fits`` follows x's shape through the
layers fastconv knows, by shape arithmetic alone, and raises first. It stops without a word
at a layer whose output shape it cannot tell (a course's own layer class, parameters of a
kind it does not read): from there on each layer's own checks speak, as before.
"""
import math

import numpy as np

from fastconv.kernels.shapes import conv_output_hw
from fastconv.layers import (Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu,
                             Sigmoid)

__all__ = ["check_input_fits"]

_SAME_SHAPE = (Relu, Sigmoid, Dropout)


class _Unknown(Exception):
    """The walk cannot tell this layer's output shape."""


class _Misfit(Exception):
    """The layer would refuse its input: the text says why."""


def _count(value, least):
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or value < least):
        raise _Unknown
    return int(value)


def _array_shape(a, ndim):
    if not isinstance(a, np.ndarray) or a.ndim != ndim:
        raise _Unknown
    return a.shape


def _window(what, shape, win_h, win_w, stride, pad):
    if len(shape) != 4:
        raise _Misfit("it takes 4-D images (N, C, H, W)")
    H, W = shape[2], shape[3]
    if H + 2 * pad < win_h or W + 2 * pad < win_w:
        raise _Misfit(f"its {what} of {win_h}x{win_w} does not fit images of {H}x{W} with "
                      f"pad={pad}")
    return shape[:2] + conv_output_hw(H, W, win_h, win_w, stride, pad)


def _output_shape(layer, shape):
    kind = type(layer)  # the exact classes: a subclass may compute other shapes
    if kind in _SAME_SHAPE:
        return shape
    if kind is Convolution:
        FN, C, FH, FW = _array_shape(layer.W, 4)
        stride, pad = _count(layer.stride, 1), _count(layer.pad, 0)
        if len(shape) == 4 and shape[1] != C:
            raise _Misfit(f"its W expects {C} channels")
        return (shape[0], FN) + _window("filter", shape, FH, FW, stride, pad)[2:]
    if kind is Pooling:
        return _window("pool window", shape, _count(layer.pool_h, 1), _count(layer.pool_w, 1),
                       _count(layer.stride, 1), _count(layer.pad, 0))
    if kind is Affine:
        rows, outputs = _array_shape(layer.W, 2)
        if len(shape) < 2:
            raise _Unknown
        features = math.prod(shape[1:])
        if features != rows:
            raise _Misfit(f"that is {features} features per sample, but its W expects {rows}")
        return (shape[0], outputs)
    if kind is BatchNormalization:
        if len(shape) not in (2, 4):
            raise _Misfit("it takes 2-D or 4-D input")
        gamma = layer.gamma
        features = math.prod(shape[1:])
        if isinstance(gamma, np.ndarray) and gamma.size != features:
            raise _Misfit(f"that is {features} features per sample, but its gamma has "
                          f"{gamma.size} entries")
        return shape
    raise _Unknown


def check_input_fits(x_shape, layers, names):
    """Raises a ValueError naming the layer where an input of ``x_shape`` would reach a layer
    after the first with a shape it refuses; names() gives the layers' names. The first
    layer's own check comes before it changes anything, and says it better."""
    shape = tuple(x_shape)
    for i, layer in enumerate(layers):
        try:
            shape = _output_shape(layer, shape)
        except _Unknown:
            return
        except _Misfit as misfit:
            if i == 0:
                return
            raise ValueError(f"x of shape {tuple(x_shape)} does not fit this network: "
                             f"{names()[i]} would get shape {shape} from the layers before "
                             f"it, and {misfit}") from None
