"""Optimizer updates compiled by Numba: one fused pass over the elements, in parts at once for
large parameters.

Same signatures as ``fastconv.kernels.reference.optim``: 1-D contiguous arrays updated in
place, None returned. Each element is read once, every term of the book's NumPy expression is
computed in the same order in a register, and the results are written back, so there are no
temporary arrays. There is no fastmath: float64 results equal the NumPy twin bit for bit.

The scalars must already have the arrays' dtype (``fastconv.optimizer`` casts them); a
Python float would make a float32 update run in float64. Constants such as the ``1`` in
``1 - beta1`` are made with ``param.dtype.type`` for the same reason. Every iteration touches
only its own element, so the result does not depend on the number of threads.

The arrays must not overlap (``m`` passed as ``v``, ``param`` as its own ``grad``): each
element is read once, before any is written, where the book's statements each read what the
one before wrote. Not checked here, since it costs every call; ``fastconv.optimizer`` finds
such keys and updates them by the twins, with the book's numbers.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .dispatch import in_parts_above

__all__ = ["sgd_update", "momentum_update", "nesterov_update", "adagrad_update",
           "rmsprop_update", "adam_update"]


# From these sizes of the parameter on, an update runs in parts on two or more threads
# (``dispatch.in_parts_above``); below them the hand-over costs more than the second core
# saves. Zen 5, 2 threads: Adam broke even at 200,000 float32 and 100,000 float64 elements
# (800 KB), SGD at about 2.5 MB (float32 432,000: 34 us serial against 44 us in parts; 1M:
# 84 against 68 us).
SQRT_UPDATE_IN_PARTS_BYTES = 1 << 20  # AdaGrad, RMSprop, Adam: a square root and a divide
PLAIN_UPDATE_IN_PARTS_BYTES = 3 << 20  # SGD, Momentum, Nesterov
CONTRACT = ("param, grad and the state arrays must be 1-D float32 or float64 arrays of one "
            "size (param and the states writable), the hyperparameters numbers")


def _float_elements(a):
    """Whether a holds floats: answered when the kernel compiles (below), so that it costs
    nothing; this body serves NUMBA_DISABLE_JIT."""
    return a.dtype.kind == "f"


@overload(_float_elements)
def _float_elements_typed(a):
    floats = isinstance(a, types.Array) and isinstance(a.dtype, types.Float)
    return lambda a: floats


@njit(cache=True)
def _check_size(param, other):
    # Without bounds checks a short array would be read past its end, and a 2-D one indexed
    # by row up to its size: refuse both up front (ndim is known when this compiles). An
    # integer array would be updated in integers where NumPy refuses to cast.
    if param.ndim != 1 or other.ndim != 1:
        raise ValueError("optimizer kernel: param, grad and the state arrays must be 1-D")
    if not (_float_elements(param) and _float_elements(other)):
        raise TypeError("optimizer kernel: param, grad and the state arrays must hold "
                        "float32 or float64")
    if other.size != param.size:
        raise ValueError("optimizer kernel: every array must have the parameter's size")


@in_parts_above(PLAIN_UPDATE_IN_PARTS_BYTES, CONTRACT)
def sgd_update(param, grad, lr):
    """param -= lr * grad."""
    _check_size(param, grad)
    for i in range(param.size):
        param[i] = param[i] - lr * grad[i]


@in_parts_above(PLAIN_UPDATE_IN_PARTS_BYTES, CONTRACT)
def momentum_update(param, grad, v, lr, momentum):
    """v = momentum * v - lr * grad; param += v."""
    _check_size(param, grad)
    _check_size(param, v)
    for i in range(param.size):
        vi = momentum * v[i] - lr * grad[i]
        v[i] = vi
        param[i] = param[i] + vi


@in_parts_above(PLAIN_UPDATE_IN_PARTS_BYTES, CONTRACT)
def nesterov_update(param, grad, v, lr, momentum):
    """The book's Nesterov step as upstream has it since January 2021: param moves with the
    old v first (param += momentum**2 * v; param -= (1 + momentum) * lr * grad), then
    v = momentum * v - lr * grad."""
    _check_size(param, grad)
    _check_size(param, v)
    momentum_sq = momentum * momentum
    grad_scale = (param.dtype.type(1) + momentum) * lr
    for i in range(param.size):
        g = grad[i]
        v_old = v[i]
        p = param[i] + momentum_sq * v_old
        param[i] = p - grad_scale * g
        vi = v_old * momentum
        v[i] = vi - lr * g


@in_parts_above(SQRT_UPDATE_IN_PARTS_BYTES, CONTRACT)
def adagrad_update(param, grad, h, lr, eps):
    """h += grad**2; param -= lr * grad / (sqrt(h) + eps)."""
    _check_size(param, grad)
    _check_size(param, h)
    for i in range(param.size):
        g = grad[i]
        hi = h[i] + g * g
        h[i] = hi
        param[i] = param[i] - lr * g / (np.sqrt(hi) + eps)


@in_parts_above(SQRT_UPDATE_IN_PARTS_BYTES, CONTRACT)
def rmsprop_update(param, grad, h, lr, decay_rate, eps):
    """h = decay_rate * h + (1 - decay_rate) * grad**2; param -= lr * grad / (sqrt(h) + eps)."""
    _check_size(param, grad)
    _check_size(param, h)
    new_weight = param.dtype.type(1) - decay_rate
    for i in range(param.size):
        g = grad[i]
        hi = h[i] * decay_rate
        hi = hi + new_weight * g * g
        h[i] = hi
        param[i] = param[i] - lr * g / (np.sqrt(hi) + eps)


@in_parts_above(SQRT_UPDATE_IN_PARTS_BYTES, CONTRACT)
def adam_update(param, grad, m, v, lr_t, beta1, beta2, eps):
    """One Adam step with the bias correction already folded into ``lr_t``."""
    _check_size(param, grad)
    _check_size(param, m)
    _check_size(param, v)
    one = param.dtype.type(1)
    c1 = one - beta1
    c2 = one - beta2
    for i in range(param.size):
        g = grad[i]
        mi = m[i]
        mi = mi + c1 * (g - mi)
        vi = v[i]
        vi = vi + c2 * (g * g - vi)
        m[i] = mi
        v[i] = vi
        param[i] = param[i] - lr_t * mi / (np.sqrt(vi) + eps)
