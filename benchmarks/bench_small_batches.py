"""asv: one loss of a network on the few samples of the book's gradient checks.

``ch05/gradient_check.py`` computes 80,000 losses of ``TwoLayerNet(784, 50, 10)`` on 3
samples and ``ch06/batch_norm_gradient_check.py`` 180,000 of a batch-norm
``MultiLayerNetExtend(784, [100, 100], 10)`` on 1 sample, all in float64: there the arithmetic
is the book's own (fastconv's NumPy twins) and a loss's cost is mostly the Python around it,
each layer's checks and the network's. ``implementation`` ``book`` is the book-style
``TwoLayerNet`` of the tests' fixture (tests/fixtures/book_tree: plain NumPy), the baseline;
the fixture has no batch-norm network, so ``BatchNormNetLoss`` times fastconv alone.
"""
import importlib
import os
import sys

import numpy as np

from ._threads import THREADS, Pinned

BOOK_TREE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                         "fixtures", "book_tree")


def _book_two_layer_net():
    """The fixture's ch05 TwoLayerNet class, imported as the book's scripts import it."""
    for folder in (os.path.join(BOOK_TREE, "ch05"), BOOK_TREE):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return importlib.import_module("two_layer_net").TwoLayerNet


def _one_hot(rng, n):
    return np.eye(10)[rng.integers(0, 10, n)]


class TwoLayerNetLoss(Pinned):
    """``net.loss(x, t)`` of ``TwoLayerNet(784, 50, 10)`` on 3 float64 samples, one-hot t."""

    params = (["fastconv", "book"], THREADS)
    param_names = ["implementation", "threads"]

    def setup(self, implementation, threads):
        # fastconv imported before pin starts Numba's threads, as a script imports it
        if implementation == "book":
            make = _book_two_layer_net()
        else:
            from fastconv.nets import TwoLayerNet

            def make(*sizes):
                return TwoLayerNet(*sizes, dtype=np.float64)
        self.pin(threads)
        np.random.seed(0)
        self.net = make(784, 50, 10)
        rng = np.random.default_rng(0)
        self.x, self.t = rng.random((3, 784)), _one_hot(rng, 3)
        self.net.loss(self.x, self.t)

    def time_loss(self, implementation, threads):
        self.net.loss(self.x, self.t)


class BatchNormNetLoss(Pinned):
    """The training-mode loss of ``MultiLayerNetExtend(784, [100, 100], 10,
    use_batchnorm=True)`` on 1 float64 sample, as its numerical gradient computes it."""

    params = (THREADS,)
    param_names = ["threads"]

    def setup(self, threads):
        from fastconv.nets import MultiLayerNetExtend  # (before pin: see above)
        self.pin(threads)
        np.random.seed(0)
        self.net = MultiLayerNetExtend(784, [100, 100], 10, use_batchnorm=True,
                                       dtype=np.float64)
        rng = np.random.default_rng(0)
        self.x, self.t = rng.random((1, 784)), _one_hot(rng, 1)
        self.net.loss(self.x, self.t, train_flg=True)

    def time_loss(self, threads):
        self.net.loss(self.x, self.t, train_flg=True)
