"""The book's ch04 ``TwoLayerNet``: sigmoid hidden layer, softmax output, trained either by
``numerical_gradient`` (central differences) or by the hand-written ``gradient``.

ch05 replaces it with the layer-based net in :mod:`fastconv.nets.two_layer_net`; the two share
a name and a constructor but not their outputs (``predict`` here returns probabilities, and
``accuracy`` expects one-hot labels), so each chapter's scripts get the one they were written
for. Same ``params`` keys and the same arithmetic as the book, so float64 runs print the
book's numbers; ``dtype=None`` follows :mod:`fastconv.mode`.
"""
import numpy as np

from fastconv import mode as _mode
from fastconv._validate import check_real
from fastconv.functions import cross_entropy_error, sigmoid, sigmoid_grad, softmax
from fastconv.gradient import numerical_gradient as _numerical_gradient
from fastconv.nets.base import check_sizes

__all__ = ["TwoLayerNet"]


class TwoLayerNet:
    """input_size -> hidden_size (sigmoid) -> output_size (softmax)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=None):
        dtype = _mode.default_dtype() if dtype is None else np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be np.float32 or np.float64; got {dtype!r}")
        self.dtype = dtype
        # before the draws, as ch05's net checks them (the book's fail in NumPy's words, or
        # make a net of no hidden units)
        check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
        check_real("weight_init_std", weight_init_std)
        # drawn in float64 in the book's order, so a seed gives the book's weights
        params = {'W1': weight_init_std * np.random.randn(input_size, hidden_size),
                  'b1': np.zeros(hidden_size),
                  'W2': weight_init_std * np.random.randn(hidden_size, output_size),
                  'b2': np.zeros(output_size)}
        self.params = {key: value.astype(dtype, copy=False) for key, value in params.items()}

    def _forward(self, x):
        p = self.params
        a1 = np.dot(x, p['W1']) + p['b1']
        z1 = sigmoid(a1)
        return a1, z1, softmax(np.dot(z1, p['W2']) + p['b2'])

    def predict(self, x):
        """Class probabilities (softmax applied), as in the book's ch04."""
        return self._forward(x)[2]

    def loss(self, x, t):
        return cross_entropy_error(self.predict(x), t)

    def accuracy(self, x, t):
        """Fraction of rows whose largest probability is the label (one-hot ``t`` or labels)."""
        y = np.argmax(self.predict(x), axis=1)
        t = np.asarray(t)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        """Central differences of the loss for every parameter (slow: two passes a weight)."""
        def loss_of_current_params(_):
            return self.loss(x, t)
        return {key: _numerical_gradient(loss_of_current_params, self.params[key])
                for key in ('W1', 'b1', 'W2', 'b2')}

    def gradient(self, x, t):
        """Backpropagation written out by hand; ``t`` is one-hot, as in the book."""
        p = self.params
        a1, z1, y = self._forward(x)
        dy = (y - t) / x.shape[0]
        dz1 = np.dot(dy, p['W2'].T)
        da1 = sigmoid_grad(a1) * dz1
        return {'W1': np.dot(x.T, da1), 'b1': np.sum(da1, axis=0),
                'W2': np.dot(z1.T, dy), 'b2': np.sum(dy, axis=0)}
