"""A ReLU network's gradient in one call: the kernel against its NumPy twin, and a network's
fused gradient against its layer-by-layer pass, bit for bit."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv import backend
from fastconv.kernels import jit, reference
from fastconv.layers import Affine
from fastconv.nets import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from fastconv.nets import base

SETTINGS = settings(max_examples=40, deadline=None)


def dense_operands(sizes, N, dtype, targets, seed):
    """(x, labels, rows, weights, biases) for layers of the given sizes; targets is
    "labels", "one-hot" or "soft" (rows that are not one-hot, which the book's (y - t) / N
    takes as they are)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, sizes[0])).astype(dtype)
    weights = tuple((rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype)
                    for a, b in zip(sizes[:-1], sizes[1:]))
    biases = tuple(rng.standard_normal(b).astype(dtype) for b in sizes[1:])
    K = sizes[-1]
    labels = rng.integers(0, K, N).astype(np.intp)
    rows = None
    if targets == "one-hot":
        rows = np.eye(K, dtype=dtype)[labels]
    elif targets == "soft":
        rows = rng.random((N, K)).astype(dtype)
        labels = np.argmax(rows, axis=1).astype(np.intp)
    return x, labels, rows, weights, biases


def gradient_with(kernels, x, labels, rows, weights, biases):
    N, dtype = x.shape[0], x.dtype
    activations = tuple(np.full((N, W.shape[1]), np.nan, dtype) for W in weights[:-1])
    masks = tuple(np.zeros((N, W.shape[1]), np.bool_) for W in weights[:-1])
    y = np.full((N, weights[-1].shape[1]), np.nan, dtype)
    row_loss = np.full(N, np.nan, dtype)
    dW = tuple(np.full(W.shape, np.nan, dtype) for W in weights)
    db = tuple(np.full(W.shape[1], np.nan, dtype) for W in weights)
    kernels.dense_relu_gradient(x, labels, rows, weights, biases, activations, masks, y,
                                row_loss, dW, db)
    return [*activations, *masks, y, row_loss, *dW, *db]


def assert_close_to_scale(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype == np.bool_:
        np.testing.assert_array_equal(actual, expected)
        return
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    tol = 1e-4 if actual.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=3, max_size=5), st.integers(1, 30),
       st.sampled_from([np.float32, np.float64]), st.sampled_from(["labels", "one-hot", "soft"]),
       st.integers(0, 2**32 - 1))
def test_kernel_matches_its_twin(sizes, N, dtype, targets, seed):
    operands = dense_operands(sizes, N, dtype, targets, seed)
    got = gradient_with(jit, *operands)
    want = gradient_with(reference, *operands)
    for g, w in zip(got, want):
        assert_close_to_scale(g, w)


def layer_by_layer(monkeypatch):
    monkeypatch.setattr(base, "fused_gradient", lambda *args: None)


NETS = {
    "TwoLayerNet": lambda dtype: TwoLayerNet(784, 50, 10, dtype=dtype),
    "MultiLayerNet, L2": lambda dtype: MultiLayerNet(784, [40, 30, 20], 10,
                                                     weight_decay_lambda=0.1, dtype=dtype),
}


def batch(N, targets, seed=3, shape=(784,)):
    rng = np.random.default_rng(seed)
    x = rng.random((N,) + shape)
    t = rng.integers(0, 10, N)
    return x, (np.eye(10)[t] if targets == "one-hot" else t)


def net_state(net):
    """Everything a forward and backward pass leave in the net's layers."""
    state = []
    for layer in net.layers.values():
        if isinstance(layer, Affine):
            state += [layer.x, np.array(layer.original_x_shape), layer.dW, layer.db]
        else:
            state.append(layer.mask)
    last = net.last_layer
    return state + [last.y, np.asarray(last.loss), np.asarray(last.t), np.asarray(net.last_loss)]


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["labels", "one-hot"])
def test_fused_gradient_is_the_layer_by_layer_one_bit_for_bit(monkeypatch, name, dtype,
                                                               targets):
    x, t = batch(100, targets)
    results = []
    for fused in (True, False):
        np.random.seed(0)
        net = NETS[name](dtype)
        for key, value in net.params.items():  # biases that are not 0, so that adding counts
            if key.startswith("b"):
                value[...] = np.random.standard_normal(value.shape)
        with monkeypatch.context() as patch:
            calls = counted(patch)
            if not fused:
                layer_by_layer(patch)
            grads = net.gradient(x, t)
        assert calls == ([1] if fused else [])  # the kernel ran, or did not
        results.append(([grads[k] for k in sorted(grads)], net_state(net), net))
    (fused_grads, fused_state, fused_net), (grads, state, layered_net) = results
    for a, b in zip(fused_grads + fused_state, grads + state):
        np.testing.assert_array_equal(a, b)
    # and a layer's own backward pass after it works on what the fused pass left
    dout = np.ones_like(fused_net.layers["Affine1"].x @ fused_net.params["W1"])
    for net in (fused_net, layered_net):
        net.layers["Affine1"].backward(dout)
    np.testing.assert_array_equal(fused_net.layers["Affine1"].dW,
                                  layered_net.layers["Affine1"].dW)


def test_images_are_flattened_as_the_affine_layer_flattens_them(monkeypatch):
    x, t = batch(20, "labels", shape=(1, 28, 28))
    got = []
    for fused in (True, False):
        np.random.seed(0)
        net = MultiLayerNet(784, [30], 10, dtype=np.float32)
        with monkeypatch.context() as patch:
            if not fused:
                layer_by_layer(patch)
            got.append((net.gradient(x, t)["W1"], net.layers["Affine1"].original_x_shape))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1] == (20, 1, 28, 28)


def counted(monkeypatch):
    calls = []
    original = jit.dense_relu_gradient
    monkeypatch.setattr(jit, "dense_relu_gradient", lambda *a: calls.append(1) or original(*a))
    return calls


class OwnPredict(TwoLayerNet):
    def predict(self, x, train_flg=False):
        return 2 * super().predict(x, train_flg)


class OwnAffine(Affine):
    pass


def wrapped_predict():
    net = TwoLayerNet(784, 50, 10, dtype=np.float32)
    inner = net.predict
    net.predict = lambda x, train_flg=False: inner(x, train_flg) + 1
    return net


def own_affine():
    net = TwoLayerNet(784, 50, 10, dtype=np.float32)
    net.layers["Affine2"].__class__ = OwnAffine
    return net


@pytest.mark.parametrize("make", [
    lambda: MultiLayerNet(784, [30, 30], 10, activation="sigmoid", dtype=np.float32),
    lambda: MultiLayerNetExtend(784, [30], 10, use_batchnorm=True, dtype=np.float32),
    lambda: OwnPredict(784, 50, 10, dtype=np.float32),
    wrapped_predict,
    own_affine,
], ids=["sigmoid", "batchnorm", "subclass predict", "wrapped predict", "subclassed layer"])
def test_what_the_kernel_does_not_cover_runs_layer_by_layer(monkeypatch, make):
    np.random.seed(0)
    net = make()
    calls = counted(monkeypatch)
    x, t = batch(20, "labels")
    grads = net.gradient(x, t)
    assert calls == []
    assert np.isfinite(net.last_loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_numpy_backend_and_small_float64_batches_run_the_books_layers(monkeypatch):
    calls = counted(monkeypatch)
    net = TwoLayerNet(784, 50, 10, dtype=np.float64)
    net.gradient(*batch(base.BOOK_BATCH, "labels"))  # the book's gradient checks' size
    with backend.using_backend("numpy"):
        net.gradient(*batch(100, "labels"))
    assert calls == []
    net.gradient(*batch(base.BOOK_BATCH + 1, "labels"))
    assert calls == [1]


def test_bad_labels_raise_before_anything_changes():
    net = TwoLayerNet(784, 50, 10, dtype=np.float32)
    x, t = batch(10, "labels")
    net.gradient(x, t)
    before = net_state(net)
    with pytest.raises(ValueError, match=r"t labels must lie in \[0, 10\)"):
        net.gradient(x, t + 10)
    for a, b in zip(before, net_state(net)):
        np.testing.assert_array_equal(a, b)


def test_python_threads_get_their_own_results():
    np.random.seed(0)
    net = TwoLayerNet(784, 50, 10, dtype=np.float32)
    batches = [batch(100, "labels", seed=s) for s in range(4)]
    alone = [net.gradient(x, t)["W1"].copy() for x, t in batches]
    nets = []
    for _ in batches:
        np.random.seed(0)
        nets.append(TwoLayerNet(784, 50, 10, dtype=np.float32))
    got = [None] * len(batches)

    def work(i):
        for _ in range(20):
            got[i] = nets[i].gradient(*batches[i])["W1"]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(alone, got):
        np.testing.assert_array_equal(a, b)


def kernel_arguments():
    """dense_relu_gradient's keyword arguments for a 6-5-3 float32 network on 4 rows, its
    outputs zeroed, that the refusal tests then spoil one at a time."""
    x, labels, rows, weights, biases = dense_operands([6, 5, 3], 4, np.float32, "labels", 0)
    return dict(x=x, labels=labels, rows=rows, weights=weights, biases=biases,
                activations=(np.zeros((4, 5), np.float32),), masks=(np.zeros((4, 5), np.bool_),),
                y=np.zeros((4, 3), np.float32), row_loss=np.zeros(4, np.float32),
                dW=tuple(np.zeros(W.shape, np.float32) for W in weights),
                db=tuple(np.zeros(W.shape[1], np.float32) for W in weights))


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(labels=a["labels"] + 10), "labels must lie in"),
    (lambda a: a.update(labels=np.full_like(a["labels"], 3)), "labels must lie in"),  # = K
    (lambda a: a.update(labels=a["labels"][:-1]), "labels"),
    (lambda a: a.update(y=a["y"][:-1]), "y and rows"),
    (lambda a: a.update(dW=(a["dW"][0][:-1], a["dW"][1])), "dW"),
    (lambda a: a.update(masks=()), "a mask array"),
    (lambda a: a.update(activations=(np.zeros((4, 4), np.float32),)), "activations"),
    (lambda a: a.update(x=a["x"][:0]), r"x must be \(N, features\) with N >= 1; got shape "
                                        r"\(0, 6\)"),
])
def test_kernel_refuses_arrays_that_do_not_fit_before_writing(edit, message):
    args = kernel_arguments()
    edit(args)
    with pytest.raises(ValueError, match=message):
        jit.dense_relu_gradient(**args)
    assert not args["y"].any() and not any(d.any() for d in args["dW"])


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(y=a["y"].astype(np.float64)), "y must hold C-contiguous arrays of "
                                                      "dtype float32; got float64"),
    (lambda a: a.update(masks=(a["masks"][0].astype(np.int8),)), "masks .* dtype bool"),
    (lambda a: a.update(labels=a["labels"].astype(np.int8)),
     f"labels .* dtype {np.dtype(np.intp)}"),
    (lambda a: a.update(weights=(a["weights"][0].T.copy().T, a["weights"][1])),
     "weights must hold C-contiguous"),
    (lambda a: a.update(row_loss=a["row_loss"][:, None]),
     r"row_loss must hold 1-D arrays; got shape \(4, 1\)"),
    (lambda a: a.update(masks=(a["masks"][0][None],)), "masks must hold 2-D arrays"),
])
def test_kernel_names_an_argument_of_the_wrong_type(edit, message):
    args = kernel_arguments()
    edit(args)
    with pytest.raises(TypeError, match=message):
        jit.dense_relu_gradient(**args)
