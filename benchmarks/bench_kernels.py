"""asv: the kernels one by one, at the SimpleConvNet and DeepConvNet geometries (batch 100).

Parameters: ``shape`` (a key of ``fastconv.bench.CONV_SHAPES``), ``dtype``, ``backend``
(``numba``: the compiled kernels; ``numpy``: their twins, the book's algorithms) and
``threads`` (Numba's and BLAS's thread count, pinned: see ``_threads``). The max
pool and ReLU benchmarks run on the convolution output of the geometry, with the networks'
2x2 window and stride 2. The optimizer updates run over every parameter array of a network,
as one ``update`` call does.
"""
import numpy as np

from fastconv.backend import kernels
from fastconv.bench import CONV_SHAPES

from ._threads import THREADS, Pinned

SHAPES = list(CONV_SHAPES)
DTYPES = ["float32", "float64"]
BACKENDS = ["numba", "numpy"]
POOL = (2, 2, 2, 0)  # pool_h, pool_w, stride, pad: the networks' pooling
# at least 5 samples a round (asv runs 2 rounds), up to 10 while under 20 s: the NumPy twins'
# slow cases would otherwise get a single sample per round
REPEAT = (5, 10, 20.0)


def conv_data(shape, dtype, seed=0):
    """(x, W, b, stride, pad) of one geometry, random, in ``dtype``."""
    x_shape, w_shape, stride, pad = CONV_SHAPES[shape]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    W = (0.1 * rng.standard_normal(w_shape)).astype(dtype)
    b = (0.1 * rng.standard_normal(w_shape[0])).astype(dtype)
    return x, W, b, stride, pad


class _Kernel(Pinned):
    params = (SHAPES, DTYPES, BACKENDS, THREADS)
    param_names = ["shape", "dtype", "backend", "threads"]
    repeat = REPEAT
    timeout = 300  # setup compiles (or loads) the kernels; on a loaded machine that is slow

    def _common(self, shape, dtype, backend, threads):
        self.pin(threads)
        self.k = kernels(backend)
        self.x, self.W, self.b, self.stride, self.pad = conv_data(shape, dtype)
        self.fh, self.fw = self.W.shape[2:]
        self.rng = np.random.default_rng(1)

    def _conv_out(self):
        # computed with the reference kernels, so the data never depends on the backend
        out, _ = kernels("numpy").conv2d_forward(self.x, self.W, self.b, self.stride, self.pad)
        return np.ascontiguousarray(out)


class Im2col(_Kernel):
    """im2col of the input and col2im of a gradient of the same shape."""

    def setup(self, shape, dtype, backend, threads):
        self._common(shape, dtype, backend, threads)
        col = self.k.im2col(self.x, self.fh, self.fw, self.stride, self.pad)
        self.dcol = self.rng.standard_normal(col.shape).astype(dtype)
        self.k.col2im(self.dcol, self.x.shape, self.fh, self.fw, self.stride, self.pad)

    def time_im2col(self, shape, dtype, backend, threads):
        self.k.im2col(self.x, self.fh, self.fw, self.stride, self.pad)

    def time_col2im(self, shape, dtype, backend, threads):
        self.k.col2im(self.dcol, self.x.shape, self.fh, self.fw, self.stride, self.pad)


class Conv(_Kernel):
    """Convolution forward (im2col + GEMM + bias) and backward (dW, db and dx)."""

    def setup(self, shape, dtype, backend, threads):
        self._common(shape, dtype, backend, threads)
        out, self.ctx = self.k.conv2d_forward(self.x, self.W, self.b, self.stride, self.pad)
        self.dout = self.rng.standard_normal(out.shape).astype(dtype)
        self.time_backward(shape, dtype, backend, threads)

    def time_forward(self, shape, dtype, backend, threads):
        self.k.conv2d_forward(self.x, self.W, self.b, self.stride, self.pad)

    def time_backward(self, shape, dtype, backend, threads):
        self.k.conv2d_backward(self.dout, self.x, self.W, self.ctx, self.stride, self.pad, True)


class MaxPool(_Kernel):
    """2x2 stride-2 max pooling of the convolution output, forward and backward."""

    def setup(self, shape, dtype, backend, threads):
        self._common(shape, dtype, backend, threads)
        self.h = self._conv_out()
        out, self.argmax = self.k.maxpool_forward(self.h, *POOL)
        self.dout = self.rng.standard_normal(out.shape).astype(dtype)
        self.k.maxpool_backward(self.dout, self.argmax, self.h.shape, *POOL)

    def time_forward(self, shape, dtype, backend, threads):
        self.k.maxpool_forward(self.h, *POOL)

    def time_backward(self, shape, dtype, backend, threads):
        self.k.maxpool_backward(self.dout, self.argmax, self.h.shape, *POOL)


class Relu(_Kernel):
    """ReLU of the convolution output; the backward pass zeroes its gradient in place."""

    def setup(self, shape, dtype, backend, threads):
        self._common(shape, dtype, backend, threads)
        self.h = self._conv_out()
        _, self.mask = self.k.relu_forward(self.h)
        self.dout = self.rng.standard_normal(self.h.shape).astype(dtype)
        # in place, so every timed call after the first does the same work on the same zeros
        self.k.relu_backward(self.dout, self.mask)

    def time_forward(self, shape, dtype, backend, threads):
        self.k.relu_forward(self.h)

    def time_backward(self, shape, dtype, backend, threads):
        self.k.relu_backward(self.dout, self.mask)


class ConvReluPool(_Kernel):
    """The fused convolution + ReLU + 2x2 max pool block, forward and backward: with dx, and
    without it as a network's first layer runs it (where the layer runs directly, its weight
    gradient is then summed directly too)."""

    def setup(self, shape, dtype, backend, threads):
        self._common(shape, dtype, backend, threads)
        self.out, self.argmax, self.ctx = self._forward()
        self.dout = self.rng.standard_normal(self.out.shape).astype(dtype)
        self._backward(True)
        self._backward(False)

    def _forward(self):
        return self.k.conv_relu_pool_forward(self.x, self.W, self.b, self.stride, self.pad,
                                             *POOL)

    def _backward(self, need_dx):
        return self.k.conv_relu_pool_backward(self.dout, self.out, self.argmax, self.x, self.W,
                                              self.ctx, self.stride, self.pad, *POOL, need_dx)

    def time_forward(self, shape, dtype, backend, threads):
        self._forward()

    def time_backward(self, shape, dtype, backend, threads):
        self._backward(True)

    def time_backward_first_layer(self, shape, dtype, backend, threads):
        self._backward(False)


# --- optimizer updates ---------------------------------------------------------------------

def _param_sizes(net):
    """Sizes of the parameter arrays of the book's default SimpleConvNet or DeepConvNet."""
    from fastconv.nets import DeepConvNet, SimpleConvNet
    state = np.random.get_state()
    try:
        network = SimpleConvNet() if net == "SimpleConvNet" else DeepConvNet()
    finally:
        np.random.set_state(state)
    return [p.size for p in network.params.values()]


# rule -> (kernel name, number of state arrays, hyperparameters after the state arrays)
RULES = {
    "sgd": ("sgd_update", 0, (0.01,)),
    "momentum": ("momentum_update", 1, (0.01, 0.9)),
    "nesterov": ("nesterov_update", 1, (0.01, 0.9)),
    "adagrad": ("adagrad_update", 1, (0.01, 1e-7)),
    "rmsprop": ("rmsprop_update", 1, (0.01, 0.99, 1e-7)),
    "adam": ("adam_update", 2, (0.001, 0.9, 0.999, 1e-7)),
}


class _Update(Pinned):
    """One optimizer step over all parameters of a network: one kernel call per array.

    One class per rule (UpdateSGD ... UpdateAdam, made below), so each rule's graph has its
    own 8 curves (net x dtype x backend), which fits asv's default cap on the number of curves
    drawn."""

    rule = None  # a key of RULES, set by each subclass
    params = (["SimpleConvNet", "DeepConvNet"], DTYPES, BACKENDS, THREADS)
    param_names = ["net", "dtype", "backend", "threads"]
    repeat = REPEAT

    def setup(self, net, dtype, backend, threads):
        self.pin(threads)
        name, n_state, hyper = RULES[self.rule]
        self.update = getattr(kernels(backend), name)
        rng = np.random.default_rng(0)
        self.jobs = []
        for size in _param_sizes(net):
            param = (0.1 * rng.standard_normal(size)).astype(dtype)
            grad = (0.01 * rng.standard_normal(size)).astype(dtype)
            states = [np.zeros(size, dtype) for _ in range(n_state)]
            if self.rule == "adam":  # v as after a few steps, away from the eps regime
                states[1] += 1e-4
            self.jobs.append((param, grad, *states))
        self.hyper = tuple(np.dtype(dtype).type(h) for h in hyper)
        self.time_update(net, dtype, backend, threads)

    def time_update(self, net, dtype, backend, threads):
        update, hyper = self.update, self.hyper
        for arrays in self.jobs:
            update(*arrays, *hyper)


# UpdateSGD, ..., UpdateAdam: named as the book's optimizers; asv finds a class by its name
# in the module, and its results' version by _Update's source, so history carries over
for _name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
    globals()["Update" + _name] = type("Update" + _name, (_Update,), {"rule": _name.lower()})
del _name


class BatchNorm(Pinned):
    """Training-mode batch norm of a batch of 100, forward and backward: the hidden layers of
    the book's ch06 MultiLayerNetExtend (100 features) and a 784-feature input."""

    params = ([100, 784], DTYPES, BACKENDS, THREADS)
    param_names = ["features", "dtype", "backend", "threads"]
    repeat = REPEAT

    def setup(self, features, dtype, backend, threads):
        self.pin(threads)
        self.k = kernels(backend)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((100, features)).astype(dtype)
        self.gamma = (1 + 0.1 * rng.standard_normal(features)).astype(dtype)
        self.beta = (0.1 * rng.standard_normal(features)).astype(dtype)
        self.eps = np.dtype(dtype).type(10e-7)
        _, _, _, self.xc, self.xn, self.std = self.k.batchnorm_forward(
            self.x, self.gamma, self.beta, self.eps)
        self.dout = rng.standard_normal(self.x.shape).astype(dtype)
        self.time_backward(features, dtype, backend, threads)

    def time_forward(self, features, dtype, backend, threads):
        self.k.batchnorm_forward(self.x, self.gamma, self.beta, self.eps)

    def time_backward(self, features, dtype, backend, threads):
        self.k.batchnorm_backward(self.dout, self.xc, self.xn, self.std, self.gamma)
