"""Small float64 batches compute as the NumPy twins (the book's algorithm) do, to the bit, so
the book's gradient checks print the book's digits; and Affine's unchecked path for the usual
call gives exactly what its checked path gives."""
import copy
import sys
import threading

import numpy as np
import pytest

import fastconv
import fastconv.kernels.reference as reference
from fastconv.layers import Affine
from fastconv.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.nets.base import BOOK_BATCH
from fastconv.two_layer_net import TwoLayerNet


def _one_hot(rng, n, k):
    return np.eye(k)[rng.randint(0, k, n)]


@pytest.mark.parametrize("make", [lambda: TwoLayerNet(6, 5, 10, weight_init_std=1.0),
                                  lambda: MultiLayerNetExtend(6, [5, 5], 10, use_batchnorm=True)],
                         ids=["two_layer", "extend_bn"])
def test_a_small_batch_gives_the_numpy_twins_bits(make):
    # a numerical gradient divides each loss's last bit by 2h = 2e-4: the compiled softmax
    # (another exp, another summation order) differs there on some of these 100+ losses
    rng = np.random.RandomState(0)
    x, t = 3.0 * rng.randn(3, 6), _one_hot(rng, 3, 10)  # 10 classes, as MNIST
    np.random.seed(0)
    net = make()
    twin = copy.deepcopy(net)  # training passes move BatchNorm's running statistics
    got = net.numerical_gradient(x, t), net.gradient(x, t), net.loss(x, t), net.predict(x)
    with fastconv.using_backend("numpy"):
        want = (twin.numerical_gradient(x, t), twin.gradient(x, t), twin.loss(x, t),
                twin.predict(x))
    for key in want[0]:
        np.testing.assert_array_equal(got[0][key], want[0][key], err_msg=key)
        np.testing.assert_array_equal(got[1][key], want[1][key], err_msg=key)
    assert got[2] == want[2] and type(got[2]) is type(want[2])
    np.testing.assert_array_equal(got[3], want[3])


def test_only_small_float64_batches_leave_the_compiled_kernels(monkeypatch):
    calls = []
    twin = reference.softmax_cross_entropy_forward
    monkeypatch.setattr(reference, "softmax_cross_entropy_forward",
                        lambda x, t: calls.append(len(x)) or twin(x, t))
    rng = np.random.RandomState(1)
    net = TwoLayerNet(6, 5, 4)
    for n in (1, BOOK_BATCH, BOOK_BATCH + 1, 100):
        net.loss(rng.randn(n, 6), rng.randint(0, 4, n))
    assert calls == [1, BOOK_BATCH]
    net32 = TwoLayerNet(6, 5, 4, dtype=np.float32)  # fast mode's dtype: always compiled
    net32.loss(rng.randn(2, 6), rng.randint(0, 4, 2))
    with fastconv.using_backend("numpy"):  # the numpy backend stays the numpy backend
        net.loss(rng.randn(100, 6), rng.randint(0, 4, 100))
    assert calls == [1, BOOK_BATCH, 100]


class _Subclass(np.ndarray):
    pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_usual_call_matches_the_checked_path(dtype):
    rng = np.random.RandomState(2)
    W, b = rng.randn(12, 5).astype(dtype), rng.randn(5).astype(dtype)
    x, dout = rng.randn(2, 3, 2, 2).astype(dtype), rng.randn(2, 5).astype(dtype)
    usual, checked = Affine(W, b), Affine(W, b.view(_Subclass))  # not an ndarray: checked
    out = usual.forward(x)
    np.testing.assert_array_equal(out, checked.forward(x))
    assert out.dtype == dtype
    dx = usual.backward(dout.copy())
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, checked.backward(dout.copy()))
    np.testing.assert_array_equal(usual.dW, checked.dW)
    with pytest.raises(ValueError, match="features per sample"):
        usual.forward(rng.randn(2, 11).astype(dtype))


@pytest.mark.parametrize("make", [lambda: TwoLayerNet(6, 5, 10),
                                  lambda: MultiLayerNetExtend(6, [5, 5], 10, use_batchnorm=True,
                                                              use_dropout=True)],
                         ids=["two_layer", "extend_bn_dropout"])
def test_numerical_gradient_checks_its_arguments_on_the_first_pass_only(make, monkeypatch):
    # the later passes differ from the first only in a parameter's values; their checks were
    # a quarter of each of the book's 3-sample losses
    rng = np.random.RandomState(1)
    x, t = rng.randn(3, 6), _one_hot(rng, 3, 10)
    np.random.seed(0)
    net = make()
    every_pass = copy.deepcopy(net)
    checks = []
    original = type(net)._check_loss_arguments
    monkeypatch.setattr(type(net), "_check_loss_arguments",
                        lambda self, *a: checks.append(self) or original(self, *a))
    np.random.seed(5)
    got = net.numerical_gradient(x, t)
    assert checks == [net] and net._checked_for_thread is None
    # the same bits as passes that each check (dropout's masks drawn alike)
    np.random.seed(5)
    for key, _, _, _ in every_pass._slots:  # (in the order that draws the masks)
        want = fastconv.gradient.numerical_gradient(
            lambda _: every_pass._loss(x, t, train_flg=True), every_pass.params[key])
        np.testing.assert_array_equal(got[key], want, err_msg=key)
    assert len(checks) > 100  # (each pass of every_pass checked)
    # a bad t is still refused, by the first pass, before anything moves
    with pytest.raises(ValueError, match="t must be labels"):
        net.numerical_gradient(x, t[:2])
    assert net._checked_for_thread is None


def test_a_loss_from_another_thread_during_numerical_gradient_is_checked():
    rng = np.random.RandomState(2)
    x, t = rng.randn(3, 6), _one_hot(rng, 3, 10)
    net = TwoLayerNet(6, 5, 10)
    layer_forward, seen = net.last_layer.forward, []

    def forward_meanwhile(y, targets):
        if len(seen) == 0 and net._checked_for_thread is not None:
            def other():
                try:
                    net.loss(x, t[:2])
                except ValueError as error:
                    seen.append(error)
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        return layer_forward(y, targets)
    net.last_layer.forward = forward_meanwhile
    net.numerical_gradient(x, t)
    assert len(seen) == 1 and "t must be labels" in str(seen[0])


def test_numerical_gradient_in_two_threads_on_one_network_runs_through():
    # unsound (both move the same parameters), but no crash: each thread's end of its mark
    # must not fail on the mark the other took or removed
    rng = np.random.RandomState(3)
    x, t = rng.randn(2, 20), _one_hot(rng, 2, 3)
    net, errors = TwoLayerNet(20, 10, 3), []  # (500 passes each: the threads overlap)

    def run():
        try:
            net.numerical_gradient(x, t)
        except Exception as error:  # noqa: BLE001 -- collected for the assertion
            errors.append(error)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside the passes
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and net._checked_for_thread is None
