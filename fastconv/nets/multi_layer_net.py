"""The book's ``common/multi_layer_net.py``: a fully connected net with weight decay.

Same constructor, ``params`` keys (W1, b1, ...), ``layers`` (OrderedDict Affine1,
Activation_function1, ..., Affine<L+1>) and ``last_layer`` as the book; ``loss`` adds
``0.5 * weight_decay_lambda * sum(W**2)`` over all weights and ``gradient`` adds
``weight_decay_lambda * W`` to each weight's gradient, like the book. Additions: see
``fastconv.nets.base`` (``dtype=``, ``last_loss``, ``accuracy(batch_size=)``, params I/O).
"""
from collections import OrderedDict

import numpy as np

from fastconv._validate import check_real
from fastconv.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
from fastconv.nets.base import Network, check_sizes, he_or_xavier_scale

__all__ = ["MultiLayerNet"]

ACTIVATIONS = {'relu': Relu, 'sigmoid': Sigmoid}


def init_mlp_params(input_size, hidden_size_list, output_size, weight_init_std):
    """W1, b1, ..., drawn in the book's order and scales (float64), after checking the sizes
    (np.random is not moved by a bad one)."""
    if isinstance(hidden_size_list, (str, bytes)) or not hasattr(hidden_size_list, "__len__"):
        raise TypeError(f"hidden_size_list must be a list of layer sizes; got "
                        f"{hidden_size_list!r}")
    check_sizes(input_size=input_size, output_size=output_size,
                **{f"hidden_size_list[{i}]": n for i, n in enumerate(hidden_size_list)})
    he_or_xavier_scale(weight_init_std, 1)  # (raises for a bad one)
    sizes = [input_size] + list(hidden_size_list) + [output_size]
    params = {}
    for idx in range(1, len(sizes)):
        scale = he_or_xavier_scale(weight_init_std, sizes[idx - 1])
        params['W' + str(idx)] = scale * np.random.randn(sizes[idx - 1], sizes[idx])
        params['b' + str(idx)] = np.zeros(sizes[idx])
    return params


def activation_class(activation):
    try:
        return ACTIVATIONS[str(activation).lower()]
    except KeyError:
        raise ValueError(f"activation must be 'relu' or 'sigmoid'; got {activation!r}") from None


class MultiLayerNet(Network):
    """input_size -> hidden_size_list... -> output_size, 'relu' or 'sigmoid' activations.

    ``weight_init_std``: a number, 'relu'/'he' (He init) or 'sigmoid'/'xavier'.
    ``dtype`` (keyword-only): ``None`` (default: the mode's, see ``fastconv.mode``), ``np.float32`` or ``np.float64``.
    ``accuracy(x, t, batch_size=None)`` may evaluate in chunks.
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation='relu', weight_init_std='relu', weight_decay_lambda=0, *,
                 dtype=None):
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.weight_decay_lambda = check_real("weight_decay_lambda", weight_decay_lambda)
        act = activation_class(activation)
        self._init_params(init_mlp_params(input_size, hidden_size_list, output_size,
                                          weight_init_std), dtype)
        self.hidden_layer_num = len(hidden_size_list)

        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 2):
            affine = Affine(self.params['W' + str(idx)], self.params['b' + str(idx)])
            self.layers['Affine' + str(idx)] = affine
            self._bind(affine, 'W' + str(idx), 'b' + str(idx))
            if idx <= self.hidden_layer_num:
                self.layers['Activation_function' + str(idx)] = act()
        self.last_layer = SoftmaxWithLoss()
        self._finish()
