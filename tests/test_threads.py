"""The jit kernels give bit-identical results with 1 thread and with 2."""
import numba
import numpy as np
import pytest

from fastconv.kernels import jit


def all_kernels(dtype):
    """One call of every kernel at a DeepConvNet-like shape, big enough to split across threads."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 8, 14, 14)).astype(dtype)
    W = rng.standard_normal((12, 8, 3, 3)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    out, ctx = jit.conv2d_forward(x, W, b, 1, 1)
    dx, dW, db = jit.conv2d_backward(out, x, W, ctx, 1, 1)
    col = jit.im2col(x, 3, 3, 1, 1)
    dcol = jit.col2im(col, x.shape, 3, 3, 1, 1)
    pooled, argmax = jit.maxpool_forward(out, 3, 3, 1, 1)  # overlapping windows
    dpool = jit.maxpool_backward(pooled, argmax, out.shape, 3, 3, 1, 1)
    r, mask = jit.relu_forward(x)
    dr = jit.relu_backward(x.copy(), mask)
    flat = x.reshape(16, -1)
    A = rng.standard_normal((flat.shape[1], 10)).astype(dtype)
    scores = jit.affine_forward(flat, A, b[:10])
    adx, adW, adb = jit.affine_backward(scores, flat, A)
    y, loss = jit.softmax_cross_entropy_forward(scores, np.arange(16) % 10)
    dy = jit.softmax_cross_entropy_backward(y, np.arange(16) % 10)
    block, block_argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, 3, 3, 2, 1)
    block_grads = jit.conv_relu_pool_backward(block, block, block_argmax, x, W, ctx,
                                              1, 1, 3, 3, 2, 1)
    # the 2x2 fast paths, with the argmax (training) and without it (inference)
    pool2, pool2_argmax, _ = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    pool2_values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0,
                                                    with_argmax=False)
    relu_block, ctx = jit.conv_relu_forward(x, W, b, 1, 1)
    relu_grads = jit.conv_relu_backward(relu_block, relu_block, x, W, ctx, 1, 1)
    # the 3x3 convolutions above of 8 channels run by Winograd; with 4, by im2col
    few = np.ascontiguousarray(x[:, :4]), np.ascontiguousarray(W[:, :4])
    im2col_block, im2col_argmax, ctx = jit.conv_relu_pool_forward(*few, b, 1, 1, 2, 2, 2, 0)
    im2col_grads = jit.conv_relu_pool_backward(im2col_block, im2col_block, im2col_argmax,
                                               *few, ctx, 1, 1, 2, 2, 2, 0)
    from fastconv.kernels.jit.dispatch import PARALLEL_MIN_SIZE
    columns = PARALLEL_MIN_SIZE // 100 + 1
    wide = rng.standard_normal((100, columns)).astype(dtype)  # above the parallel threshold
    scale, shift = rng.standard_normal((2, columns)).astype(dtype)
    decayed = jit.weight_decay_gradient(wide, dtype(0.1), wide[::-1])
    bn = jit.batchnorm_forward(wide, scale, shift, dtype(1e-6))
    bn_grads = jit.batchnorm_backward(wide, *bn[3:6], scale)
    # two blocks (im2col, then Winograd) and an affine layer, each part of the batch through
    # all of them at once, forward and backward
    chain = [(W[:8, :4].copy(), b[:8], 1, 1, None), (W[:, :8].copy(), b, 1, 1, (2, 2, 2, 0))]
    A2 = rng.standard_normal((12 * 7 * 7, 10)).astype(dtype)  # the pooled 12 x 7 x 7
    chained, product = jit.conv_blocks_forward(few[0], chain, A2)
    saved = [(out_i, argmax_i, x_i, spec[0], None, 1, 1, spec[4])
             for (out_i, argmax_i, _), x_i, spec in zip(chained, (few[0], chained[0][0]), chain)]
    chain_dx, chain_grads, affine_grads = jit.conv_blocks_backward(
        product, saved, True, (chained[1][0].reshape(len(x), -1), A2))
    chain_arrays = [chained[0][0], *chained[1][:2], product, chain_dx,
                    *[g for grads in chain_grads for g in grads], *affine_grads]
    # an affine layer wide enough for its product to run by register tiles (tiled_product)
    A2_wide = rng.standard_normal((12 * 7 * 7, 100)).astype(dtype)
    chain_arrays.append(jit.conv_blocks_forward(few[0], chain, A2_wide)[1])
    # a ReLU network's whole gradient in one call
    hidden = rng.standard_normal((flat.shape[1], 20)).astype(dtype)
    dense = ((np.empty((16, 20), dtype),), (np.empty((16, 20), np.bool_),),
             np.empty((16, 10), dtype), np.empty(16, dtype),
             (np.empty(hidden.shape, dtype), np.empty((20, 10), dtype)),
             (np.empty(20, dtype), np.empty(10, dtype)))
    jit.dense_relu_gradient(flat, np.arange(16) % 10, None, (hidden, A[:20].copy()),
                            (b[:10].repeat(2), b[:10]), *dense)
    dense_arrays = [*dense[0], *dense[1], dense[2], dense[3], *dense[4], *dense[5]]
    # TwoLayerNet's sizes: its first layer's products are cut in halves (kernels.jit.halves)
    x784 = rng.standard_normal((100, 784)).astype(dtype)
    W784 = rng.standard_normal((784, 50)).astype(dtype) * dtype(0.05)
    two_layer = ((np.empty((100, 50), dtype),), (np.empty((100, 50), np.bool_),),
                 np.empty((100, 10), dtype), np.empty(100, dtype),
                 (np.empty((784, 50), dtype), np.empty((50, 10), dtype)),
                 (np.empty(50, dtype), np.empty(10, dtype)))
    jit.dense_relu_gradient(x784, np.arange(100) % 10, None, (W784, A[:50].copy()),
                            (b[:10].repeat(5), b[:10]), *two_layer)
    mid_affine = [jit.affine_forward(x784, W784, b[:10].repeat(5)),
                  *jit.affine_backward(x784[:, :50].copy(), x784, W784)]
    dense_arrays += [*two_layer[0], *two_layer[1], *two_layer[2:4], *two_layer[4],
                     *two_layer[5], *mid_affine]
    return [out, col, dcol, dx, dW, db, pooled, argmax, dpool, r, mask, dr, scores, adx, adW, adb,
            y, np.asarray(loss), dy, block, block_argmax, *block_grads, pool2, pool2_argmax,
            pool2_values, relu_block, *relu_grads, im2col_block, im2col_argmax, *im2col_grads,
            *bn, *bn_grads, *chain_arrays, decayed, *dense_arrays]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_equals_two(run_with_threads, dtype):
    one = run_with_threads(1, lambda: all_kernels(dtype))
    two = run_with_threads(2, lambda: all_kernels(dtype))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(16, 144, 20000),   # long output rows: split columns
                                   (4000, 100, 100),   # tall output: split rows
                                   (16, 20000, 144),   # short output, long inner: split k
                                   (100, 4320, 100),   # inner 8x+ the output sides: split k
                                   (3, 4, 5)])         # small: one call
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [None, 3, 8])  # this machine's, and other machines' counts
def test_split_matmul_is_thread_count_independent(run_with_threads, monkeypatch, shape, dtype,
                                                  parts):
    from fastconv.kernels.jit import gemm
    from fastconv.kernels.jit.gemm import matmul
    if parts is not None:
        monkeypatch.setattr(gemm, "PARTS", parts)
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T  # a transposed view, as the kernels pass
    one = run_with_threads(1, lambda: matmul(a, b))
    two = run_with_threads(2, lambda: matmul(a, b))
    np.testing.assert_array_equal(one, two)
    assert one.dtype == dtype and one.shape == (m, n)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(one, a @ b, rtol=rtol, atol=rtol * np.sqrt(k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [None, 3, 8])
def test_affine_backward_products_side_by_side_are_thread_count_independent(run_with_threads,
                                                                            monkeypatch,
                                                                            dtype, parts):
    # SimpleConvNet's hidden Affine: big enough that dx and dW run side by side
    from fastconv.kernels.jit import gemm
    if parts is not None:
        monkeypatch.setattr(gemm, "PARTS", parts)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 4320)).astype(dtype)
    W = rng.standard_normal((4320, 100)).astype(dtype)
    dout = rng.standard_normal((100, 100)).astype(dtype)
    one = run_with_threads(1, lambda: jit.affine_backward(dout, x, W))
    two = run_with_threads(2, lambda: jit.affine_backward(dout, x, W))
    for a, b, want in zip(one, two, (dout @ W.T, x.T @ dout, dout.sum(axis=0))):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == dtype and a.shape == want.shape
        rtol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, want, rtol=rtol, atol=rtol * 100)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_parallel_build_only_when_big_and_threads_to_share(run_with_threads, monkeypatch):
    """The parallel build runs for big arrays on 2+ threads; with one thread the serial one
    does, since workqueue would hand even a one-thread loop to its worker and wait. The
    optimizer updates run in parts from their own sizes on, by the same rule."""
    from fastconv.kernels.jit import elementwise, optim
    from fastconv.kernels.jit.dispatch import PARALLEL_MIN_SIZE
    for kernel, size, args in (
            (elementwise._add_row_vector, PARALLEL_MIN_SIZE,
             lambda a: (a.reshape(-1, 1), a[:1])),
            (elementwise._add_scaled_flat, elementwise.ELEMENTWISE_IN_PARTS_BYTES // 4,
             lambda a: (a, np.float32(1), a, a)),
            (optim.sgd_update, optim.PLAIN_UPDATE_IN_PARTS_BYTES // 4,
             lambda a: (a, a, np.float32(0.1))),
            (optim.adam_update, optim.SQRT_UPDATE_IN_PARTS_BYTES // 4,
             lambda a: (a, a, a, a) + (np.float32(0.1),) * 4)):
        calls = []
        monkeypatch.setattr(kernel, "parallel", lambda *a: calls.append("parallel"))
        monkeypatch.setattr(kernel, "serial", lambda *a: calls.append("serial"))
        big = np.zeros(size, dtype=np.float32)
        for threads, array in ((2, big), (1, big), (2, big[:-1]), (1, big[:1000])):
            run_with_threads(threads, lambda: kernel(*args(array)))
        assert calls == ["parallel", "serial", "serial", "serial"], kernel.__name__


def test_serial_and_parallel_builds_agree(run_with_threads):
    """parallel_above and in_parts_above pick a way to run by size; every way (the parallel
    loop or serial; serial, or in parts on one thread or on two) must give the same bits:
    ReLU, Adam over three steps, the standalone max-pool forward and backward."""
    from fastconv.kernels.jit import elementwise, optim
    rng = np.random.default_rng(5)
    x = rng.standard_normal(200_003).astype(np.float32)
    outs = []
    for build in (elementwise._relu_forward_flat.parallel, elementwise._relu_forward_flat.serial):
        out, mask = np.empty_like(x), np.empty(x.shape, bool)
        build(x, out, mask)
        outs.append((out, mask))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    runs = [(optim.adam_update.serial, 1), (optim.adam_update.parallel, 1),
            (optim.adam_update.parallel, 2)]
    states = []
    for build, threads in runs:
        param, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
        for step in range(3):
            run_with_threads(threads, lambda: build(
                param, np.roll(x, step), m, v, np.float32(1e-3), np.float32(0.9),
                np.float32(0.999), np.float32(1e-7)))
        states.append((param, m, v))
    for got in states[1:]:
        for a, b in zip(got, states[0]):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(states[0][0], x)
    # the standalone max-pool, in parts of the batch: overlapping 3x3 windows of stride 2
    from fastconv.kernels.jit import pool
    images = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    pooled = []
    for build, threads in ((pool._maxpool_forward_into.serial, 1),
                           (pool._maxpool_forward_into.parallel, 1),
                           (pool._maxpool_forward_into.parallel, 2)):
        out, argmax = np.empty((5, 3, 4, 4), np.float32), np.empty((5, 3, 4, 4), np.intp)
        run_with_threads(threads, lambda: build(images, 3, 3, 2, 0, out, argmax))
        dx = np.empty_like(images)
        backward = (pool._maxpool_backward_into.serial if threads == 1 and not pooled
                    else pool._maxpool_backward_into.parallel)
        run_with_threads(threads, lambda: backward(out, argmax, 3, 3, 2, 0, dx))
        pooled.append((out, argmax, dx))
    for got in pooled[1:]:
        for a, b in zip(got, pooled[0]):
            np.testing.assert_array_equal(a, b)


def test_in_parts_cuts_every_array_of_the_batch_and_nothing_else(monkeypatch):
    """Each piece gets its images of every batch array, and the scalars whole."""
    from fastconv.kernels.jit import gemm, pool
    kernel = pool._maxpool_backward_into
    seen = []
    monkeypatch.setattr(kernel, "serial", lambda *args: seen.append(
        [getattr(a, "shape", a) for a in args]))
    dout, argmax = np.zeros((5, 3, 4, 4)), np.zeros((5, 3, 4, 4), np.intp)
    dx = np.zeros((5, 3, 9, 9))
    kernel.parallel(dout, argmax, 3, 3, 2, 0, dx)
    assert seen == [[(hi - lo, 3, 4, 4), (hi - lo, 3, 4, 4), 3, 3, 2, 0, (hi - lo, 3, 9, 9)]
                    for lo, hi in gemm.pieces(5)]


@pytest.mark.parametrize("name, hyper", [("adagrad_update", (0.1, 0.0)),
                                         ("rmsprop_update", (0.1, 0.99, 0.0)),
                                         ("adam_update", (0.1, 0.9, 0.999, 0.0))])
def test_both_builds_divide_by_zero_like_numpy(name, hyper):
    # eps = 0 with a zero gradient and zero state divides 0 by 0. NumPy (the twin) gives NaN;
    # the serial build used to raise ZeroDivisionError after updating the first element's
    # state, so the same call gave NaN or an exception, and half-written state, by size
    from fastconv.kernels import reference
    from fastconv.kernels.jit import optim
    dtype = np.float32
    scalars = [dtype(h) for h in hyper]
    n_state = 2 if name == "adam_update" else 1
    results = []
    for run in (getattr(optim, name).serial, getattr(optim, name).parallel,
                getattr(reference, name)):
        param, grad = np.ones(8, dtype), np.zeros(8, dtype)
        state = [np.zeros(8, dtype) for _ in range(n_state)]
        with np.errstate(divide="ignore", invalid="ignore"):
            run(param, grad, *state, *scalars)
        results.append([param, *state])
    for got in results[:2]:
        for a, b in zip(got, results[2]):
            np.testing.assert_array_equal(a, b)  # NaN equals NaN here
    assert np.isnan(results[0][0]).all()



class _FakeBlas:
    """Stands in for a threadpoolctl controller and records what it was asked."""

    def __init__(self, threads):
        self.threads = threads
        self.calls = 0

    def get_num_threads(self):
        self.calls += 1
        return self.threads

    def set_num_threads(self, n):
        self.calls += 1
        self.threads = n


@pytest.mark.parametrize("process_wide", [True, False])
def test_blas_pin_is_reentrant_and_restores_the_outer_count(monkeypatch, process_wide):
    from fastconv.kernels.jit import blas_pin, gemm
    lib = _FakeBlas(threads=2)
    monkeypatch.setattr(blas_pin, "_libraries", ([lib], []) if process_wide else ([], [lib]))
    with gemm.single_threaded_blas():
        assert lib.threads == 1
        calls = lib.calls
        with gemm.single_threaded_blas():  # nested: no pin, no restore, no calls at all
            assert lib.threads == 1
        assert lib.calls == calls and lib.threads == 1
    assert lib.threads == 2
    with pytest.raises(RuntimeError):
        with gemm.single_threaded_blas():
            raise RuntimeError("restored even when the block raises")
    assert lib.threads == 2
    with gemm.single_threaded_blas():  # the depth went back to 0: this block pins again
        assert lib.threads == 1
    assert lib.threads == 2


def test_each_thread_runs_a_contiguous_group_of_parts(run_with_threads):
    import threading

    from fastconv.kernels.jit.gemm import run_parts
    tasks = [lambda i=i: (i, threading.get_ident()) for i in range(5)]
    main = threading.get_ident()
    one = run_with_threads(1, lambda: run_parts(tasks))
    assert one == [(i, main) for i in range(5)]
    if numba.config.NUMBA_NUM_THREADS < 2:
        return
    two = run_with_threads(2, lambda: run_parts(tasks))
    assert [i for i, _ in two] == list(range(5))  # results in task order
    threads = [ident for _, ident in two]
    assert threads[:2] == [main, main]            # pieces(5, 2): tasks 0-1, then 2-4
    assert len(set(threads[2:])) == 1 and threads[2] != main


@pytest.mark.parametrize("setting, cpus, parts", [(None, 2, 2), (None, 64, 8), (None, None, 1),
                                                  ("3", 64, 3), ("1", 2, 1)])
def test_parts_follow_the_cpu_count_or_the_environment(monkeypatch, setting, cpus, parts):
    from fastconv.kernels.jit import gemm
    if setting is None:
        monkeypatch.delenv("FASTCONV_PARTS", raising=False)
    else:
        monkeypatch.setenv("FASTCONV_PARTS", setting)
    monkeypatch.setattr(gemm.os, "cpu_count", lambda: cpus)
    assert gemm._parts_from_environment() == parts


@pytest.mark.parametrize("setting", ["0", "-2", "four", ""])
def test_a_bad_parts_setting_is_refused_by_name(monkeypatch, setting):
    from fastconv.kernels.jit import gemm
    monkeypatch.setenv("FASTCONV_PARTS", setting)
    with pytest.raises(ValueError, match="FASTCONV_PARTS must be a positive integer"):
        gemm._parts_from_environment()


# Runs in a fresh process: the Numba thread count is fixed when Numba starts.
MORE_THREADS_SCRIPT = """
import sys
import numba
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_threads import all_kernels
from fastconv.kernels.jit import gemm
from fastconv.nets import SimpleConvNet
assert gemm.PARTS == 4 and numba.config.NUMBA_NUM_THREADS == 4

def step():
    rng = np.random.default_rng(3)
    np.random.seed(3)  # the book's initial weights come from np.random
    net = SimpleConvNet(dtype=np.float32)
    x = rng.random((30, 1, 28, 28), dtype=np.float32)
    grads = net.gradient(x, rng.integers(0, 10, 30))
    return all_kernels(np.float32) + all_kernels(np.float64) + list(grads.values())

results = {}
for threads in (1, 2, 3, 4):
    numba.set_num_threads(threads)
    results[threads] = step()
for threads in (2, 3, 4):
    for a, b in zip(results[1], results[threads]):
        np.testing.assert_array_equal(a, b, err_msg=f"{threads} threads")
np.savez(sys.argv[2], *results[1])
"""


def test_four_parts_give_the_same_bits_on_one_to_four_threads(tmp_path):
    """A 4-core machine's partition, on 1, 2, 3 and 4 threads (oversubscribed here), and
    the same numbers as this machine's partition to rounding."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, FASTCONV_PARTS="4", NUMBA_NUM_THREADS="4")
    out = tmp_path / "four_parts.npz"
    proc = subprocess.run([sys.executable, "-c", MORE_THREADS_SCRIPT,
                           str(Path(__file__).parent), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as saved:
        four_parts = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    rng = np.random.default_rng(3)
    np.random.seed(3)
    from fastconv.nets import SimpleConvNet
    net = SimpleConvNet(dtype=np.float32)
    x = rng.random((30, 1, 28, 28), dtype=np.float32)
    here = (all_kernels(np.float32) + all_kernels(np.float64)
            + list(net.gradient(x, rng.integers(0, 10, 30)).values()))
    assert len(here) == len(four_parts)
    for a, b in zip(here, four_parts):  # partial sums differ: compare at the array's scale
        scale = max(1.0, float(np.max(np.abs(b), initial=0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)


def test_using_mode_and_using_backend_switch_only_their_own_thread():
    import threading

    from fastconv import backend, get_backend, get_mode, using_backend, using_mode
    inside, seen = threading.Event(), {}
    release = threading.Event()

    def switched():
        with using_mode("fast"), using_backend("numpy"):
            seen["own"] = (get_mode(), get_backend(), backend.kernels().__name__)
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=switched)
    thread.start()
    assert inside.wait(30)
    seen["other"] = (get_mode(), get_backend(), backend.kernels().__name__)
    release.set()
    thread.join(30)
    assert seen["own"] == ("fast", "numpy", "fastconv.kernels.reference")
    assert seen["other"] == ("parity", "numba", "fastconv.kernels.jit")
