"""Computations that tests/test_concurrency.py runs in threads, forked children and spawned
processes, and once alone to compare with. Each returns a list of arrays.

A module of its own (not a test file) so that spawned and forkserver children can import it.
"""
import numpy as np

MILLION = 1 << 20  # elements: the Relu and Adam kernels run their parallel build from here


def seeded_net(seed, dtype=np.float32):
    """A SimpleConvNet whose initial weights come from np.random.seed(seed).

    Build nets in one thread: np.random's global state is shared by all threads."""
    from fastconv.nets import SimpleConvNet
    np.random.seed(seed)
    return SimpleConvNet(dtype=dtype)


def gradient(net, seed, images=20):
    """The net's gradients, sorted by name, on a batch drawn from seed: 20 images are cut
    into parts that the gemm pool's threads run."""
    rng = np.random.default_rng(seed)
    x = rng.random((images, 1, 28, 28)).astype(net.dtype)
    grads = net.gradient(x, rng.integers(0, 10, images))
    return [grads[name] for name in sorted(grads)]


def seeded_gradient(seed):
    """gradient(seeded_net(seed), seed): a whole step of work for a child process."""
    return gradient(seeded_net(seed), seed)


def layers_and_optimizer(seed):
    """Standalone Relu and Adam on a million elements (parallel builds) and Pooling."""
    from fastconv.layers import Pooling, Relu
    from fastconv.optimizer import Adam
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(MILLION).astype(np.float32).reshape(256, -1)
    relu = Relu()
    relu_out = relu.forward(x)
    relu_dx = relu.backward(x.copy())  # it may zero its argument in place, as the book does
    images = rng.standard_normal((32, 16, 24, 24)).astype(np.float32)
    pool = Pooling(2, 2, stride=2)
    pooled = pool.forward(images)
    pool_dx = pool.backward(pooled)
    params = {"W": x.copy()}
    adam = Adam(lr=0.01)
    for _ in range(2):
        adam.update(params, {"W": relu_out})
    return [relu_out, relu_dx, pooled, pool_dx, params["W"]]


def blas_product(seed):
    """A plain NumPy product large enough for OpenBLAS to use its own threads."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((400, 300))
    return [a @ a.T]


TASKS = {"gradient": seeded_gradient, "layers": layers_and_optimizer, "blas": blas_product}


def run_task(name_and_seed):
    """One TASKS entry by name: what a multiprocessing pool can pickle."""
    name, seed = name_and_seed
    return TASKS[name](seed)
