"""The book's ``common/multi_layer_net_extend.py``: MLP with weight decay, Dropout, BatchNorm.

Same constructor (``use_dropout``, ``dropout_ration``, ``use_batchnorm``), ``params`` keys
(W1, b1, ..., then gamma1, beta1, ...), ``layers`` (OrderedDict Affine1, BatchNorm1,
Activation_function1, Dropout1, ...) and ``last_layer``; ``predict(x, train_flg=False)`` and
``loss(x, t, train_flg=False)`` like the book, ``gradient`` in training mode. Additions: see
``fastconv.nets.base``. ``save_params`` also writes the BatchNorm running statistics
(``running_mean1``, ``running_var1``, ...) once they exist; ``load_params`` accepts them but
does not require them (the book's files have none), and leaves them as they are when absent.
"""
from collections import OrderedDict

import numpy as np

from fastconv._validate import check_real
from fastconv.layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss
from fastconv.nets.base import Network
from fastconv.nets.multi_layer_net import activation_class, init_mlp_params

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(Network):
    """MultiLayerNet plus optional Dropout and Batch Normalization after each hidden Affine.

    ``dtype`` (keyword-only): ``None`` (default: the mode's, see ``fastconv.mode``), ``np.float32`` or ``np.float64``.
    Dropout draws its masks from ``np.random``, like the book.
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation='relu', weight_init_std='relu', weight_decay_lambda=0,
                 use_dropout=False, dropout_ration=0.5, use_batchnorm=False, *,
                 dtype=None):
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.use_dropout = use_dropout
        self.weight_decay_lambda = check_real("weight_decay_lambda", weight_decay_lambda)
        self.use_batchnorm = use_batchnorm
        act = activation_class(activation)
        params = init_mlp_params(input_size, hidden_size_list, output_size, weight_init_std)
        self.hidden_layer_num = len(hidden_size_list)
        if use_batchnorm:
            for idx, size in enumerate(hidden_size_list, start=1):
                params['gamma' + str(idx)] = np.ones(size)
                params['beta' + str(idx)] = np.zeros(size)
        self._init_params(params, dtype)

        p = self.params
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 2):
            i = str(idx)
            affine = Affine(p['W' + i], p['b' + i])
            self.layers['Affine' + i] = affine
            self._bind(affine, 'W' + i, 'b' + i)
            if idx > self.hidden_layer_num:
                break
            if use_batchnorm:
                bn = BatchNormalization(p['gamma' + i], p['beta' + i])
                self.layers['BatchNorm' + i] = bn
                self._bind(bn, 'gamma' + i, 'beta' + i, attrs=('gamma', 'beta'),
                           grad_attrs=('dgamma', 'dbeta'))
            self.layers['Activation_function' + i] = act()
            if use_dropout:
                self.layers['Dropout' + i] = Dropout(dropout_ration)
        self.last_layer = SoftmaxWithLoss()
        self._finish()

    def loss(self, x, t, train_flg=False):
        """Loss plus weight decay; ``train_flg`` switches Dropout/BatchNorm to training mode."""
        return self._loss(x, t, train_flg)
