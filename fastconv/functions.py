"""Drop-in for the book's ``common/functions.py``. float32 inputs stay float32. Where the
book's arithmetic fails on an argument, the error names it (``names_bad_arguments``).

``np`` is in ``__all__`` because the book's module has no ``__all__``: its star import brings
``np`` too, and the book's scripts rely on it.
"""
import numpy as np

from fastconv._validate import names_bad_arguments

__all__ = ["np", "identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu",
           "relu_grad", "softmax", "sum_squared_error", "cross_entropy_error", "softmax_loss"]


def identity_function(x):
    return x


@names_bad_arguments
def step_function(x):
    return np.array(x > 0, dtype=int)


@names_bad_arguments
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@names_bad_arguments
def sigmoid_grad(x):
    s = sigmoid(x)
    return (1.0 - s) * s


@names_bad_arguments
def relu(x):
    return np.maximum(0, x)


@names_bad_arguments
def relu_grad(x):
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


@names_bad_arguments
def softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)  # keeps exp from overflowing
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def _in_dtype_of(total, number):
    """number as total's float type: NumPy 1.x makes a float32 scalar combined with a Python
    number float64 (NumPy 2 keeps float32)."""
    return total.dtype.type(number) if total.dtype.kind == "f" else number


@names_bad_arguments
def sum_squared_error(y, t):
    total = np.sum((y - t) ** 2)
    return _in_dtype_of(total, 0.5) * total


@names_bad_arguments
def cross_entropy_error(y, t):
    t = np.asarray(t)
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot rows -> label indices
        t = t.argmax(axis=1)
    elif t.ndim == 2 and t.shape[1] == 1:
        # labels in a column (the book's ch07/gradient_check.py): the book's indexing would
        # pair every row with every label for more than one row
        t = t.reshape(-1)
    batch_size = y.shape[0]
    total = np.sum(np.log(y[np.arange(batch_size), t] + 1e-7))
    return -total / _in_dtype_of(total, batch_size)


@names_bad_arguments
def softmax_loss(X, t):
    return cross_entropy_error(softmax(X), t)
