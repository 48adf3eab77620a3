"""The book's ch05 ``TwoLayerNet`` (backprop version): Affine - Relu - Affine - softmax.

Same constructor, ``params`` keys, ``layers`` (an OrderedDict Affine1/Relu1/Affine2) and
``lastLayer`` as the book, with the ``fastconv.nets.base`` additions: ``dtype=``,
``last_loss``, a batched ``accuracy`` and safe ``save_params``/``load_params``.
"""
from collections import OrderedDict

import numpy as np

from fastconv._validate import check_real
from fastconv.layers import Affine, Relu, SoftmaxWithLoss
from fastconv.nets.base import Network, check_sizes

__all__ = ["TwoLayerNet"]


class TwoLayerNet(Network):
    """input_size -> hidden_size (ReLU) -> output_size.

    ``dtype`` (keyword-only): ``None`` (the mode's: float64 in parity mode, the book's
    numbers), ``np.float32`` or ``np.float64``; with the same ``np.random.seed`` the initial
    weights equal the book's.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=None):
        check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
        check_real("weight_init_std", weight_init_std)
        params = {}
        params['W1'] = weight_init_std * np.random.randn(input_size, hidden_size)
        params['b1'] = np.zeros(hidden_size)
        params['W2'] = weight_init_std * np.random.randn(hidden_size, output_size)
        params['b2'] = np.zeros(output_size)
        self._init_params(params, dtype)

        p = self.params
        self.layers = OrderedDict()
        self.layers['Affine1'] = Affine(p['W1'], p['b1'])
        self.layers['Relu1'] = Relu()
        self.layers['Affine2'] = Affine(p['W2'], p['b2'])
        self.lastLayer = SoftmaxWithLoss()
        self._bind(self.layers['Affine1'], 'W1', 'b1')
        self._bind(self.layers['Affine2'], 'W2', 'b2')
        self._finish()

    @property
    def last_layer(self):
        """The book names it ``lastLayer`` in this network; both names work."""
        return self.lastLayer
