"""Optimizer updates in plain NumPy, the oracles for the jit twins.

Each function updates ``param`` and its state arrays in place and returns None. The arrays are
1-D, contiguous and of one floating dtype; the scalars should already be of that dtype (the
optimizers in ``fastconv.optimizer`` cast them) so nothing is promoted. The expressions are
the book's, term for term, so float64 results are the book's to the last bit.
"""
import numpy as np

__all__ = ["sgd_update", "momentum_update", "nesterov_update", "adagrad_update",
           "rmsprop_update", "adam_update"]


def sgd_update(param, grad, lr):
    """param -= lr * grad."""
    param -= lr * grad


def momentum_update(param, grad, v, lr, momentum):
    """v = momentum * v - lr * grad; param += v."""
    v[...] = momentum * v - lr * grad
    param += v


def nesterov_update(param, grad, v, lr, momentum):
    """The book's Nesterov step as upstream has it since January 2021 (param first, old v)."""
    param += momentum * momentum * v
    param -= (1 + momentum) * lr * grad
    v *= momentum
    v -= lr * grad


def adagrad_update(param, grad, h, lr, eps):
    """h += grad**2; param -= lr * grad / (sqrt(h) + eps)."""
    h += grad * grad
    param -= lr * grad / (np.sqrt(h) + eps)


def rmsprop_update(param, grad, h, lr, decay_rate, eps):
    """h = decay_rate * h + (1 - decay_rate) * grad**2; param -= lr * grad / (sqrt(h) + eps)."""
    h *= decay_rate
    h += (1 - decay_rate) * grad * grad
    param -= lr * grad / (np.sqrt(h) + eps)


def adam_update(param, grad, m, v, lr_t, beta1, beta2, eps):
    """One Adam step with the bias correction already folded into ``lr_t``."""
    m += (1 - beta1) * (grad - m)
    v += (1 - beta2) * (grad ** 2 - v)
    param -= lr_t * m / (np.sqrt(v) + eps)
