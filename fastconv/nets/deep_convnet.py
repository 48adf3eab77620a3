"""The book's ch08 ``DeepConvNet`` (over 99% on MNIST).

    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    conv - relu - conv - relu - pool -
    affine - relu - dropout - affine - dropout - softmax

Same constructor, ``params`` keys (W1..W8, b1..b8), ``layers`` (a list, the parametrized
layers at indices 0, 2, 5, 7, 10, 12, 15, 18), ``last_layer``, ``predict(x,
train_flg=False)`` and ``loss`` (training mode, dropout on) as the book, so the book's
``deep_convnet_params.pkl`` loads with ``load_params``. Differences (besides those of
``fastconv.nets.base``): ``accuracy(x, t, batch_size=100)`` counts the last partial batch too;
the size feeding the first Affine is computed from the architecture (the book hardcodes
64*4*4, right for its default 28x28 input); and the He-init scales use each layer's actual
fan-in (the book hardcodes ``[1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4,
hidden_size]``, its own TODO), which are the same numbers for the default architecture, so
there the same ``np.random.seed`` gives the book's initial weights.
"""
import numpy as np

from fastconv.layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from fastconv.nets.base import Network, check_sizes, conv_pool_geometry

__all__ = ["DeepConvNet"]


class DeepConvNet(Network):
    """Six 3x3 convolutions in three pooled pairs, then two Affine layers with dropout.

    ``dtype`` (keyword-only): ``None`` (default: the mode's, see ``fastconv.mode``), ``np.float32`` or ``np.float64``.
    Dropout draws its masks from ``np.random``, like the book.
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param_1={'filter_num': 16, 'filter_size': 3, 'pad': 1, 'stride': 1},
                 conv_param_2={'filter_num': 16, 'filter_size': 3, 'pad': 1, 'stride': 1},
                 conv_param_3={'filter_num': 32, 'filter_size': 3, 'pad': 1, 'stride': 1},
                 conv_param_4={'filter_num': 32, 'filter_size': 3, 'pad': 2, 'stride': 1},
                 conv_param_5={'filter_num': 64, 'filter_size': 3, 'pad': 1, 'stride': 1},
                 conv_param_6={'filter_num': 64, 'filter_size': 3, 'pad': 1, 'stride': 1},
                 hidden_size=50, output_size=10, *, dtype=None):
        conv_params = [conv_param_1, conv_param_2, conv_param_3,
                       conv_param_4, conv_param_5, conv_param_6]
        shape = input_dim
        fan_ins = []
        for idx, cp in enumerate(conv_params):
            # (checks input_dim and cp before they are read)
            out = conv_pool_geometry(shape, cp, pool=(idx % 2 == 1),
                                     names=("input_dim", f"conv_param_{idx + 1}"))
            fan_ins.append(shape[0] * cp['filter_size'] * cp['filter_size'])
            shape = out
        check_sizes(hidden_size=hidden_size, output_size=output_size)
        flat = int(np.prod(shape))
        fan_ins += [flat, hidden_size]
        scales = np.sqrt(2.0 / np.array(fan_ins))  # He init, for ReLU

        params = {}
        pre_channel_num = input_dim[0]
        for idx, cp in enumerate(conv_params):
            params['W' + str(idx + 1)] = scales[idx] * np.random.randn(
                cp['filter_num'], pre_channel_num, cp['filter_size'], cp['filter_size'])
            params['b' + str(idx + 1)] = np.zeros(cp['filter_num'])
            pre_channel_num = cp['filter_num']
        params['W7'] = scales[6] * np.random.randn(flat, hidden_size)
        params['b7'] = np.zeros(hidden_size)
        params['W8'] = scales[7] * np.random.randn(hidden_size, output_size)
        params['b8'] = np.zeros(output_size)
        self._init_params(params, dtype)

        p = self.params
        self.layers = []
        for idx, cp in enumerate(conv_params):
            i = str(idx + 1)
            conv = Convolution(p['W' + i], p['b' + i], cp['stride'], cp['pad'])
            self._bind(conv, 'W' + i, 'b' + i)
            self.layers += [conv, Relu()]
            if idx % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        affine7 = Affine(p['W7'], p['b7'])
        affine8 = Affine(p['W8'], p['b8'])
        self._bind(affine7, 'W7', 'b7')
        self._bind(affine8, 'W8', 'b8')
        self.layers += [affine7, Relu(), Dropout(0.5), affine8, Dropout(0.5)]
        self.last_layer = SoftmaxWithLoss()
        self._finish()

    def loss(self, x, t):
        """Training-mode loss (dropout on), as in the book."""
        return self._loss(x, t, train_flg=True)

    def accuracy(self, x, t, batch_size=100):
        """Accuracy over ALL samples, evaluated ``batch_size`` at a time, dropout off."""
        return super().accuracy(x, t, batch_size)
