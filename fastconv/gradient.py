"""Drop-in for the book's ``common/gradient.py``: central differences, h = 1e-4."""
import numpy as np

# np too: the book's module has no __all__, so its star import brings np
__all__ = ["np", "numerical_gradient", "numerical_gradient_2d"]

_H = 1e-4


def _check_arguments(f, x):
    """Raises before x is touched where the central differences cannot be taken."""
    if not callable(f):
        raise TypeError(f"f must be a function of x (the loss); got {type(f).__name__}")
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        got = f"{x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"x must be a NumPy array of floats, the values f reads (a step of "
                        f"h={_H} is lost in integers); got {got}")
    if not x.flags.writeable:
        raise ValueError("x must be writable: each entry is moved by h in place and put back")


def _numerical_gradient_1d(f, x):
    grad = np.zeros_like(x)
    for idx in range(x.size):
        grad[idx] = _central_difference(f, x, idx)
    return grad


def numerical_gradient_2d(f, X):
    _check_arguments(f, X)
    if X.ndim == 1:
        return _numerical_gradient_1d(f, X)
    grad = np.zeros_like(X)
    for idx, x in enumerate(X):
        grad[idx] = _numerical_gradient_1d(f, x)
    return grad


def numerical_gradient(f, x):
    """d f(x) / dx, perturbing x in place one entry at a time and restoring it."""
    _check_arguments(f, x)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        grad[idx] = _central_difference(f, x, idx)
    return grad


def _central_difference(f, x, idx):
    saved = x[idx]
    try:
        x[idx] = float(saved) + _H
        f_plus = f(x)
        x[idx] = saved - _H
        f_minus = f(x)
    finally:
        x[idx] = saved
    difference = (f_plus - f_minus) / (2 * _H)
    if np.ndim(difference) != 0:
        raise ValueError(f"f must return one number (a loss); got shape {np.shape(difference)}")
    return difference
