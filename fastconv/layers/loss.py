import numpy as np

from fastconv.backend import kernels
from fastconv._validate import as_float_array


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy; t is one-hot (N, K) or labels (N,)."""

    def __init__(self):
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # targets as given

    def forward(self, x, t):
        x = as_float_array("x", x, ndim=2)
        labels = _labels(np.asarray(t), x.shape)
        self.y, self.loss = kernels().softmax_cross_entropy_forward(x, labels)
        self.t = t
        self._labels = labels
        return self.loss

    def backward(self, dout=1):
        t = np.asarray(self.t)
        if t.ndim == 2:
            # exactly the book's (y - t) / N, which also covers soft targets
            dx = (self.y - t.astype(self.y.dtype, copy=False)) / self.y.dtype.type(t.shape[0])
        else:
            dx = kernels().softmax_cross_entropy_backward(self.y, self._labels)
        if not (np.isscalar(dout) and dout == 1):
            # the book drops dout; the chain rule does not
            dx *= self.y.dtype.type(dout)
        return dx


def _labels(t, x_shape):
    """Integer label per row, from labels (N,) or one-hot rows (N, K)."""
    N, K = x_shape
    if t.shape == (N, K):
        return np.argmax(t, axis=1)
    if t.shape != (N,):
        raise ValueError(f"t must be labels of shape ({N},) or one-hot of shape ({N}, {K}); "
                         f"got shape {t.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"t labels must be integers; got dtype {t.dtype}")
    if N and (t.min() < 0 or t.max() >= K):
        raise ValueError(f"t labels must lie in [0, {K}); got min {t.min()}, max {t.max()}")
    return t
