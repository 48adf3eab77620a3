"""ReLU, affine and softmax-cross-entropy in plain NumPy, the oracles for the jit twins."""
import contextlib

import numpy as np

__all__ = ["blas_scope", "relu_forward", "relu_backward", "affine_forward", "affine_backward",
           "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
           "weight_decay_gradient"]


def blas_scope():
    """What a network step runs inside: nothing here, BLAS keeps its threads as in the book."""
    return contextlib.nullcontext()


def relu_forward(x):
    """Returns (out, mask) with mask = x <= 0, as the book's Relu keeps it."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    return out, mask


def relu_backward(dout, mask):
    """Zeroes dout where the input was <= 0, in place (as the book does), and returns it."""
    dout[mask] = 0
    return dout


def affine_forward(x, W, b):
    """x (N, D) @ W (D, M) + b (M,)."""
    return x @ W + b


def affine_backward(dout, x, W, need_dx=True):
    """Returns (dx or None, dW, db) for x (N, D), W (D, M), dout (N, M)."""
    dx = dout @ W.T if need_dx else None
    return dx, x.T @ dout, dout.sum(axis=0)


def softmax_cross_entropy_forward(x, t):
    """x (N, K) scores, t (N,) integer labels. Returns (y, loss) with y = softmax(x)."""
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    y = e / e.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.sum(np.log(y[np.arange(n), t] + x.dtype.type(1e-7))) / n
    return y, x.dtype.type(loss)


def softmax_cross_entropy_backward(y, t):
    """d(mean loss)/dx for integer labels t."""
    n = y.shape[0]
    dx = y.copy()
    dx[np.arange(n), t] -= 1
    return dx / y.dtype.type(n)


def weight_decay_gradient(grad, lam, W):
    """The book's weight gradient with its L2 term: grad + lam * W, a new array."""
    return grad + lam * W
