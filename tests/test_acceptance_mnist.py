"""Acceptance on the real MNIST ($FASTCONV_DATA/mnist): the book's experiments reach the book's results."""
import os

import numpy as np
import pytest

from fastconv import using_mode
from fastconv.datasets import load_mnist
from fastconv.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.optimizer import SGD
from fastconv.simple_convnet import SimpleConvNet
from fastconv.trainer import Trainer

DATA = os.environ.get("FASTCONV_DATA")
pytestmark = [
    pytest.mark.mnist,
    pytest.mark.skipif(not DATA or not os.path.isdir(os.path.join(DATA, "mnist")),
                       reason="set FASTCONV_DATA to a folder whose mnist/ holds MNIST"),
]


@pytest.mark.slow
def test_simple_convnet_reaches_98_percent_in_two_epochs():
    """ch07/train_convnet.py in fast mode: Adam, lr 0.001, batch 100, float32, 2 epochs."""
    (x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
    np.random.seed(0)
    with using_mode("fast"):
        network = SimpleConvNet(input_dim=(1, 28, 28),
                                conv_param={'filter_num': 30, 'filter_size': 5, 'pad': 0,
                                            'stride': 1},
                                hidden_size=100, output_size=10, weight_init_std=0.01)
        trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=2,
                          mini_batch_size=100, optimizer='Adam', optimizer_param={'lr': 0.001},
                          evaluate_sample_num_per_epoch=1000, verbose=False, seed=0)
        trainer.train()
    assert network.params['W1'].dtype == np.float32
    accuracy = network.accuracy(x_test, t_test)
    assert accuracy >= 0.980, f"test accuracy {accuracy:.4f} after 2 epochs"


def train_pair(weight_init_std, x, t, epochs=20, batch_size=100, lr=0.01, seed=0):
    """ch06/batch_norm_test.py: the same nets with and without batch norm, SGD, 1000 images."""
    np.random.seed(seed)
    nets = {bn: MultiLayerNetExtend(input_size=784, hidden_size_list=[100] * 5, output_size=10,
                                    weight_init_std=weight_init_std, use_batchnorm=bn)
            for bn in (True, False)}
    optimizer = SGD(lr=lr)
    curves = {True: [], False: []}
    iter_per_epoch = len(x) // batch_size
    for i in range(epochs * iter_per_epoch):
        mask = np.random.choice(len(x), batch_size)
        for net in nets.values():
            optimizer.update(net.params, net.gradient(x[mask], t[mask]))
        if i % iter_per_epoch == 0:
            for bn, net in nets.items():
                curves[bn].append(net.accuracy(x, t))
    return curves


@pytest.mark.parametrize("weight_init_std", [0.003, 0.01, 0.1])
def test_batch_norm_learns_faster(weight_init_std):
    (x_train, t_train), _ = load_mnist()
    curves = train_pair(weight_init_std, x_train[:1000], t_train[:1000])
    with_bn, without_bn = np.mean(curves[True]), np.mean(curves[False])
    # mean accuracy over the 20 epochs: the area under the learning curve
    assert with_bn > without_bn + 0.1, (with_bn, without_bn)
    assert curves[True][-1] > 0.7
