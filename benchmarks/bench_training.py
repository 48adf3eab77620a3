"""asv: whole training steps, inference, peak memory and the speed-up over the NumPy backend.

A training step is what the book's ``Trainer`` does per mini-batch: ``grads =
net.gradient(x, t)`` then ``optimizer.update(net.params, grads)``, at batch 100 on random
data with random labels (the speed does not depend on the values). DeepConvNet on the NumPy
backend takes over a second per step, so it is timed only inside ``track_`` ratios, with few
repeats.
"""
import numpy as np

from fastconv.backend import use_backend
from fastconv.bench import best_time

DTYPES = ["float32", "float64"]
BACKENDS = ["numba", "numpy"]
BATCH = 100
N_INFER = 10_000  # images of the inference benchmarks, 1x28x28 each


def _nets():
    from fastconv.nets import DeepConvNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
    return {
        "TwoLayerNet": (lambda dt: TwoLayerNet(784, 50, 10, dtype=dt), (784,)),
        "MultiLayerNetExtend": (
            lambda dt: MultiLayerNetExtend(784, [100] * 5, 10, use_batchnorm=True, dtype=dt),
            (784,)),
        "SimpleConvNet": (lambda dt: SimpleConvNet(dtype=dt), (1, 28, 28)),
        "DeepConvNet": (lambda dt: DeepConvNet(dtype=dt), (1, 28, 28)),
    }


def _optimizer(name):
    from fastconv.optimizer import SGD, Adam
    return {"SGD": SGD, "Adam": Adam}[name]()


class Step:
    """Build ``net`` with random weights and a random batch; ``run()`` is one training step."""

    def __init__(self, net, optimizer, dtype, batch=BATCH, seed=0):
        make, in_shape = _nets()[net]
        np.random.seed(seed)  # the nets draw their weights (and dropout masks) from np.random
        self.net = make(np.dtype(dtype).type)
        self.optimizer = _optimizer(optimizer)
        rng = np.random.default_rng(seed)
        self.x = rng.random((batch,) + in_shape).astype(dtype)
        self.t = rng.integers(0, 10, batch)

    def run(self):
        grads = self.net.gradient(self.x, self.t)
        self.optimizer.update(self.net.params, grads)


def _images(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


class _Backend:
    """Selects the backend in setup and restores the default in teardown."""

    def _use(self, backend):
        use_backend(backend)

    def teardown(self, *params):
        use_backend("numba")


class TrainingStep(_Backend):
    """gradient + update at batch 100, per network/optimizer, dtype and backend."""

    params = (["TwoLayerNet/SGD", "MultiLayerNetExtend-bn/SGD", "MultiLayerNetExtend-bn/Adam",
               "SimpleConvNet/Adam", "DeepConvNet/Adam"], DTYPES, BACKENDS)
    param_names = ["net", "dtype", "backend"]
    timeout = 180

    def setup(self, net, dtype, backend):
        if net.startswith("DeepConvNet") and backend == "numpy":
            raise NotImplementedError("too slow for a time_ benchmark; see track_ speed-ups")
        name, optimizer = net.split("/")
        self._use(backend)
        self.step = Step(name.replace("-bn", ""), optimizer, dtype)
        self.step.run()  # compiles (or loads from the cache) every kernel of the step

    def time_step(self, net, dtype, backend):
        self.step.run()


class Inference(_Backend):
    """SimpleConvNet ``accuracy`` over 10k random images, batch_size 100."""

    params = (DTYPES, BACKENDS)
    param_names = ["dtype", "backend"]
    timeout = 300

    def setup(self, dtype, backend):
        from fastconv.nets import SimpleConvNet
        self._use(backend)
        np.random.seed(0)
        self.net = SimpleConvNet(dtype=np.dtype(dtype).type)
        self.x, self.t = _images(N_INFER, dtype)
        self.net.accuracy(self.x[:BATCH], self.t[:BATCH], batch_size=BATCH)  # JIT warm-up

    def time_accuracy(self, dtype, backend):
        self.net.accuracy(self.x, self.t, batch_size=BATCH)


class _PeakMemory(_Backend):
    """Peak RSS of the benchmark process (asv ``peakmem_``), float32.

    It includes the interpreter, NumPy, Numba and the compiled kernels, so compare it across
    commits rather than read it as the network's own footprint.
    """

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300


class PeakMemoryStep(_PeakMemory):
    def setup(self, backend):
        self._use(backend)
        self.step = Step("SimpleConvNet", "Adam", "float32")
        self.step.run()

    def peakmem_simple_convnet_step(self, backend):
        self.step.run()


class PeakMemoryInference(_PeakMemory):
    def setup(self, backend):
        from fastconv.nets import SimpleConvNet
        self._use(backend)
        np.random.seed(0)
        self.net = SimpleConvNet(dtype=np.float32)
        self.x, self.t = _images(N_INFER, "float32")
        self.net.accuracy(self.x[:BATCH], self.t[:BATCH], batch_size=BATCH)

    def peakmem_simple_convnet_inference(self, backend):
        self.net.accuracy(self.x, self.t, batch_size=BATCH)


def _speedup(steps, numpy_timing, numba_timing=(5, 0.5)):
    """NumPy-backend time / Numba-backend time of one step, both measured here and now.

    ``*_timing`` are ``(repeat, min_time)`` of ``fastconv.bench.best_time``, whose first
    call is an untimed warm-up.
    """
    seconds = {}
    for backend, (repeat, min_time) in (("numpy", numpy_timing), ("numba", numba_timing)):
        use_backend(backend)
        seconds[backend] = best_time(steps[backend].run, repeat=repeat, min_time=min_time)
    use_backend("numba")
    return seconds["numpy"] / seconds["numba"]


class SpeedupSimpleConvNet(_Backend):
    """How many times faster a SimpleConvNet step (float32, Adam) runs on Numba than on NumPy."""

    timeout = 300
    unit = "x"

    def setup(self):
        self.steps = {}
        for backend in ("numpy", "numba"):
            self._use(backend)
            self.steps[backend] = Step("SimpleConvNet", "Adam", "float32")
            self.steps[backend].run()

    def track_speedup_simple_convnet_step(self):
        return _speedup(self.steps, numpy_timing=(5, 0.5))


class SpeedupDeepConvNet(_Backend):
    """The same for a DeepConvNet step (float32, Adam); the NumPy side runs only 3 steps."""

    timeout = 600
    unit = "x"

    def setup(self):
        self.steps = {}
        for backend in ("numpy", "numba"):
            self._use(backend)
            self.steps[backend] = Step("DeepConvNet", "Adam", "float32")
        self.steps["numba"].run()  # the NumPy warm-up is best_time's own first call

    def track_speedup_deep_convnet_step(self):
        return _speedup(self.steps, numpy_timing=(2, 0.0))
