"""asv: whole training steps, inference, peak memory and fastconv's time relative to its twin.

A training step is what the book's ``Trainer`` does per mini-batch: ``grads =
net.gradient(x, t)`` then ``optimizer.update(net.params, grads)``, at batch 100 on random
data with random labels (the speed does not depend on the values). ``mode`` is fastconv's
mode (``fastconv.set_mode``): ``fast`` builds the networks in float32, ``parity`` in float64
(the book's dtype); ``backend`` is ``numba`` (fastconv) or ``numpy`` (the twins: the book's
algorithms); ``threads`` is pinned for Numba and BLAS alike (``_threads``).

One class per network, so that each graph holds one network (step times range from 0.2 ms to
seconds, and on one linear axis the small networks were flattened onto zero). DeepConvNet on
the NumPy backend takes seconds per step, so it appears only in ``Slowdown``.
"""
import numpy as np

import fastconv
from fastconv.backend import use_backend
from fastconv.bench import best_time

from ._threads import THREADS, Pinned

MODES = ["fast", "parity"]
BACKENDS = ["numba", "numpy"]
BATCH = 100
N_INFER = 10_000  # images of the inference benchmarks, 1x28x28 each


def _nets():
    from fastconv.nets import (DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet,
                               TwoLayerNet)
    # dtype is left to the mode, as a user's script leaves it
    return {
        "TwoLayerNet": (lambda: TwoLayerNet(784, 50, 10), (784,)),
        "MultiLayerNet": (lambda: MultiLayerNet(784, [100] * 5, 10), (784,)),
        "MultiLayerNetExtend": (
            lambda: MultiLayerNetExtend(784, [100] * 5, 10, use_batchnorm=True), (784,)),
        "SimpleConvNet": (lambda: SimpleConvNet(), (1, 28, 28)),
        "DeepConvNet": (lambda: DeepConvNet(), (1, 28, 28)),
    }


def _optimizer(name):
    from fastconv.optimizer import SGD, Adam
    return {"SGD": SGD, "Adam": Adam}[name]()


class Step:
    """``net`` with random weights and a random batch in the current mode's dtype;
    ``run()`` is one training step."""

    def __init__(self, net, optimizer, batch=BATCH, seed=0):
        make, in_shape = _nets()[net]
        np.random.seed(seed)  # the nets draw their weights (and dropout masks) from np.random
        self.net = make()
        self.optimizer = _optimizer(optimizer)
        rng = np.random.default_rng(seed)
        dtype = fastconv.mode.default_dtype()
        self.x = rng.random((batch,) + in_shape).astype(dtype)
        self.t = rng.integers(0, 10, batch)

    def run(self):
        grads = self.net.gradient(self.x, self.t)
        self.optimizer.update(self.net.params, grads)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, 28, 28)).astype(fastconv.mode.default_dtype()),
            rng.integers(0, 10, n))


class _Configured(Pinned):
    """Pins the threads and selects mode and backend in setup; restores all in teardown."""

    def configure(self, mode, backend, threads):
        self.pin(threads)
        self._mode_before = fastconv.get_mode()
        fastconv.set_mode(mode)
        use_backend(backend)

    def teardown(self, *params):
        use_backend("numba")
        fastconv.set_mode(getattr(self, "_mode_before", "parity"))
        super().teardown(*params)


class _TrainingStep(_Configured):
    """gradient + update at batch 100."""

    net, optimizer = None, None  # set by each subclass
    params = (MODES, BACKENDS, THREADS)
    param_names = ["mode", "backend", "threads"]
    repeat = (5, 10, 30.0)
    timeout = 180

    def setup(self, mode, backend, threads):
        self.configure(mode, backend, threads)
        self.step = Step(self.net, self.optimizer)
        self.step.run()  # compiles (or loads from the cache) every kernel of the step

    def time_step(self, mode, backend, threads):
        self.step.run()


class TwoLayerNetSGD(_TrainingStep):
    net, optimizer = "TwoLayerNet", "SGD"


class MultiLayerAdam(_TrainingStep):
    """MultiLayerNet, 5 hidden layers of 100 with ReLU (ch06's optimizer comparison), Adam:
    its gradient is one compiled call (``dense_relu_gradient``)."""
    net, optimizer = "MultiLayerNet", "Adam"


class MultiLayerBnSGD(_TrainingStep):
    """MultiLayerNetExtend, 5 hidden layers of 100 with batch norm, SGD."""
    net, optimizer = "MultiLayerNetExtend", "SGD"


class MultiLayerBnAdam(_TrainingStep):
    """MultiLayerNetExtend, 5 hidden layers of 100 with batch norm, Adam."""
    net, optimizer = "MultiLayerNetExtend", "Adam"


class SimpleConvNetAdam(_TrainingStep):
    net, optimizer = "SimpleConvNet", "Adam"


class DeepConvNetAdam(_TrainingStep):
    """DeepConvNet, Adam, on fastconv only (the NumPy twin takes seconds a step)."""
    net, optimizer = "DeepConvNet", "Adam"
    params = (MODES, ["numba"], THREADS)
    repeat = (3, 10, 60.0)
    timeout = 300


class Inference(_Configured):
    """SimpleConvNet ``accuracy`` over 10k random images, batch_size 100."""

    params = (MODES, BACKENDS, THREADS)
    param_names = ["mode", "backend", "threads"]
    repeat = (3, 10, 60.0)
    timeout = 300

    def setup(self, mode, backend, threads):
        from fastconv.nets import SimpleConvNet
        self.configure(mode, backend, threads)
        np.random.seed(0)
        self.net = SimpleConvNet()
        self.x, self.t = _images(N_INFER)
        self.net.accuracy(self.x[:BATCH], self.t[:BATCH], batch_size=BATCH)  # JIT warm-up

    def time_accuracy(self, mode, backend, threads):
        self.net.accuracy(self.x, self.t, batch_size=BATCH)


class _PeakMemory(_Configured):
    """Peak RSS of the benchmark process (asv ``peakmem_``), SimpleConvNet in fast mode.

    It includes the interpreter, NumPy, Numba and the compiled kernels (a floor of a few
    hundred MB that the two backends share), so it is compared across commits rather than
    read as the network's own footprint. ``batch`` 1000 lifts the network's arrays, where
    the backends differ (the NumPy twins' im2col copies), above that floor.
    """

    params = ([100, 1000], BACKENDS, THREADS)
    param_names = ["batch", "backend", "threads"]
    timeout = 300


class StepMemory(_PeakMemory):
    def setup(self, batch, backend, threads):
        self.configure("fast", backend, threads)
        self.step = Step("SimpleConvNet", "Adam", batch=batch)
        self.step.run()

    def peakmem_step(self, batch, backend, threads):
        self.step.run()


class InferenceMemory(_PeakMemory):
    """``accuracy`` over 10k images with ``batch_size=batch``."""

    def setup(self, batch, backend, threads):
        from fastconv.nets import SimpleConvNet
        self.configure("fast", backend, threads)
        np.random.seed(0)
        self.net = SimpleConvNet()
        self.x, self.t = _images(N_INFER)
        self.net.accuracy(self.x[:batch], self.t[:batch], batch_size=batch)

    def peakmem_accuracy(self, batch, backend, threads):
        self.net.accuracy(self.x, self.t, batch_size=batch)


class Slowdown(_Configured):
    """fastconv's step time divided by its NumPy twin's, float32, Adam, batch 100.

    LOWER IS BETTER: 0.1 means fastconv takes a tenth of the twin's time (10x faster). asv
    reads a rise of a ``track_`` value as a regression, and a rise here is fastconv getting
    slower relative to the book's algorithms. Both sides are timed here and now, in one
    process, as the best of several repeats after an untimed warm-up call.
    """

    params = (["SimpleConvNet", "DeepConvNet"], THREADS)
    param_names = ["net", "threads"]
    unit = "ratio"
    timeout = 600
    # (repeat, min_time) of fastconv.bench.best_time; a DeepConvNet step on NumPy is seconds
    TIMING = {"SimpleConvNet": {"numpy": (5, 0.5), "numba": (5, 0.5)},
              "DeepConvNet": {"numpy": (3, 0.0), "numba": (5, 0.5)}}

    def setup(self, net, threads):
        self.configure("fast", "numba", threads)
        self.steps = {}
        for backend in ("numpy", "numba"):
            use_backend(backend)
            self.steps[backend] = Step(net, "Adam")
        use_backend("numba")
        self.steps["numba"].run()  # compiles; the NumPy warm-up is best_time's own first call

    def track_step(self, net, threads):
        seconds = {}
        for backend, (repeat, min_time) in self.TIMING[net].items():
            use_backend(backend)
            seconds[backend] = best_time(self.steps[backend].run, repeat=repeat,
                                         min_time=min_time)
        use_backend("numba")
        return seconds["numba"] / seconds["numpy"]
