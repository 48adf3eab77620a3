"""The book's ch07 ``SimpleConvNet``: conv - relu - pool - affine - relu - affine - softmax.

Same constructor, ``params`` keys (W1..W3, b1..b3), ``layers`` (OrderedDict Conv1, Relu1,
Pool1, Affine1, Relu2, Affine2) and ``last_layer`` as the book. Differences (besides those of
``fastconv.nets.base``): ``accuracy(x, t, batch_size=100)`` also counts the last partial batch
(the book drops it), and the flattened size feeding Affine1 is computed from the actual
convolution and pooling output, height and width separately (the book's formula assumes a
square input and an even convolution output; where it holds, the shapes and the drawn weights
are identical).
"""
from collections import OrderedDict

import numpy as np

from fastconv._validate import check_real
from fastconv.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from fastconv.nets.base import Network, check_sizes, conv_pool_geometry

__all__ = ["SimpleConvNet"]


class SimpleConvNet(Network):
    """A small ConvNet for (C, H, W) inputs.

    ``conv_param``: dict with filter_num, filter_size, pad, stride. ``dtype`` (keyword-only):
    ``None`` (the mode's: float64 in parity mode), ``np.float32`` or ``np.float64``; with the
    same ``np.random.seed`` the initial weights equal the book's.
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01, *, dtype=None):
        pool_output_size = int(np.prod(conv_pool_geometry(input_dim, conv_param, pool=True)))
        check_sizes(hidden_size=hidden_size, output_size=output_size)
        check_real("weight_init_std", weight_init_std)
        filter_num = conv_param['filter_num']
        filter_size = conv_param['filter_size']

        params = {}
        params['W1'] = weight_init_std * np.random.randn(filter_num, input_dim[0],
                                                         filter_size, filter_size)
        params['b1'] = np.zeros(filter_num)
        params['W2'] = weight_init_std * np.random.randn(pool_output_size, hidden_size)
        params['b2'] = np.zeros(hidden_size)
        params['W3'] = weight_init_std * np.random.randn(hidden_size, output_size)
        params['b3'] = np.zeros(output_size)
        self._init_params(params, dtype)

        p = self.params
        self.layers = OrderedDict()
        self.layers['Conv1'] = Convolution(p['W1'], p['b1'], conv_param['stride'],
                                           conv_param['pad'])
        self.layers['Relu1'] = Relu()
        self.layers['Pool1'] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers['Affine1'] = Affine(p['W2'], p['b2'])
        self.layers['Relu2'] = Relu()
        self.layers['Affine2'] = Affine(p['W3'], p['b3'])
        self.last_layer = SoftmaxWithLoss()
        for i, name in enumerate(('Conv1', 'Affine1', 'Affine2'), start=1):
            self._bind(self.layers[name], 'W' + str(i), 'b' + str(i))
        self._finish()

    def accuracy(self, x, t, batch_size=100):
        """Accuracy over ALL samples, evaluated ``batch_size`` at a time."""
        return super().accuracy(x, t, batch_size)
