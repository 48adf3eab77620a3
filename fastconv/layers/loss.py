import numbers

import numpy as np

from fastconv.backend import kernels
from fastconv._validate import as_float_array, check_batch, check_ran_forward, check_saved

__all__ = ["SoftmaxWithLoss", "target_labels"]


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy; t is one-hot (N, K) or labels (N,) or (N, 1)."""

    def __init__(self):
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # targets as given
        self._t_given = None
        self._y_saved = None  # (shape, dtype) of the y that forward left

    def forward(self, x, t):
        x = as_float_array("x", x, ndim=(1, 2))
        if x.ndim == 1:
            return self._forward_one_sample(x, t)
        check_batch("x", x)
        if x.shape[1] == 0:  # (a softmax over no classes is undefined)
            raise ValueError(f"x must hold at least one class score per sample; got shape "
                             f"{x.shape}")
        t_array = np.asarray(t)
        labels = target_labels(t_array, x.shape)
        y, loss = kernels().softmax_cross_entropy_forward(x, labels)
        self.keep_pass(t, t_array, labels, y, loss)
        return self.loss

    def _forward_one_sample(self, x, t):
        """The book's loss of one sample given as a 1-D x (its softmax and cross_entropy_error
        take it as a batch of one); y stays 1-D, as the book's."""
        t_array = np.asarray(t)
        if t_array.size not in (1, x.size):
            raise ValueError(f"t must be one label or a one-hot row of {x.size} entries for a 1-D "
                             f"x; got shape {t_array.shape}")
        self.forward(x.reshape(1, -1), t_array.reshape(1, -1))
        self.y = self.y.reshape(-1)
        self._y_saved = (self.y.shape, self.y.dtype)
        self.t = self._t_given = t
        return self.loss

    def keep_pass(self, t, t_array, labels, y, loss):
        """What ``forward(x, t)`` leaves, given the softmax y of x and the loss (also a
        network's fused gradient); t_array is t as an array, labels its classes."""
        self.y, self.loss = y, loss
        self._y_saved = (y.shape, y.dtype)
        self.t = self._t_given = t
        self._labels = labels
        # one-hot (or soft) rows take the book's (y - t) / N in backward
        self._rows = t_array if t_array.shape == y.shape else None

    def _targets(self):
        """(labels, rows) for backward: those of forward's t, or of a t put in its place (the
        book's backward reads self.t), checked against y."""
        if self.t is self._t_given:
            return self._labels, self._rows
        t_array = np.asarray(self.t)
        labels = target_labels(t_array, self.y.shape)
        return labels, (t_array if t_array.shape == self.y.shape else None)

    def backward(self, dout=1):
        check_ran_forward(self, self._y_saved is not None)
        if len(self._y_saved[0]) == 1:
            # the book's backward divides such a gradient by the number of classes (t.shape[0])
            # or fails to index y: refused, rather than a wrong gradient
            raise ValueError("SoftmaxWithLoss.backward after a forward of a 1-D x: give x as "
                             f"one row of shape (1, {self._y_saved[0][0]}) for a gradient")
        if isinstance(dout, np.ndarray) and dout.size == 1:
            dout = dout.reshape(())[()]
        if not isinstance(dout, numbers.Real) or isinstance(dout, (bool, np.bool_)):
            raise TypeError(f"dout must be a real number (the loss is a scalar); got {dout!r}")
        check_saved(self, "y", *self._y_saved)
        labels, rows = self._targets()
        if rows is not None:
            # exactly the book's (y - t) / N, which also covers soft targets
            dx = (self.y - rows.astype(self.y.dtype, copy=False)) / self.y.dtype.type(
                rows.shape[0])
        else:
            dx = kernels().softmax_cross_entropy_backward(self.y, labels)
        if dout != 1:
            # the book drops dout; the chain rule does not
            dx *= self.y.dtype.type(dout)
        return dx


def target_labels(t, x_shape):
    """Integer label per row, from labels (N,) or (N, 1), or one-hot rows (N, K).

    Raises before anything changes, so a caller (a network) can check its targets first.
    """
    t = np.asarray(t)
    N, K = x_shape
    if t.shape == (N, K):
        if t.dtype.kind not in "biuf":
            raise TypeError(f"t must be real one-hot rows; got dtype {t.dtype}")
        return np.argmax(t, axis=1)
    if t.shape == (N, 1):  # labels in a column, as the book's ch07/gradient_check.py has them
        t = t.reshape(N)
    if t.shape != (N,):
        raise ValueError(f"t must be labels of shape ({N},) or ({N}, 1), or one-hot of shape "
                         f"({N}, {K}); got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"t labels must be integers; got dtype {t.dtype}")
    if N and (t.min() < 0 or t.max() >= K):
        raise ValueError(f"t labels must lie in [0, {K}); got min {t.min()}, max {t.max()}")
    return t
