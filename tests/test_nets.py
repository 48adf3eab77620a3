"""The book's networks: gradients, init parity, dtypes, backends, accuracy and params I/O."""
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from fastconv import using_backend
from fastconv.layers import Affine, BatchNormalization, Convolution, Dropout, Pooling
from fastconv.nets import (DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet,
                           TwoLayerNet)

TINY_CONV = {'filter_num': 3, 'filter_size': 3, 'pad': 0, 'stride': 1}


# --- tiny instances of every net; each factory seeds np.random itself ------------------------

def two_layer(dtype=np.float64):
    return TwoLayerNet(6, 7, 3, weight_init_std=1.0, dtype=dtype)


def mlp_relu(dtype=np.float64):
    return MultiLayerNet(6, [7, 5], 3, weight_decay_lambda=0.1, dtype=dtype)


def mlp_sigmoid(dtype=np.float64):
    return MultiLayerNet(6, [7, 5], 3, activation='sigmoid', weight_init_std='xavier',
                         weight_decay_lambda=0.05, dtype=dtype)


def extend_bn(dtype=np.float64):
    return MultiLayerNetExtend(6, [7, 5], 3, weight_decay_lambda=0.1, use_batchnorm=True,
                               dtype=dtype)


def extend_dropout(dtype=np.float64):
    return MultiLayerNetExtend(6, [7, 5], 3, use_dropout=True, dropout_ration=0.3,
                               use_batchnorm=True, dtype=dtype)


def simple_conv(dtype=np.float64):
    return SimpleConvNet(input_dim=(1, 10, 10), conv_param=TINY_CONV, hidden_size=10,
                         output_size=3, weight_init_std=0.3, dtype=dtype)


def deep_conv(dtype=np.float64):
    return DeepConvNet(hidden_size=10, output_size=3, dtype=dtype)


MLPS = {"two_layer": two_layer, "mlp_relu": mlp_relu, "mlp_sigmoid": mlp_sigmoid,
        "extend_bn": extend_bn, "extend_dropout": extend_dropout}
ALL = dict(MLPS, simple_conv=simple_conv, deep_conv=deep_conv)


def make(name, dtype=np.float64, seed=0):
    np.random.seed(seed)
    return ALL[name](dtype)


def inputs(name, n=5, seed=1):
    rng = np.random.default_rng(seed)
    if name == "simple_conv":
        return rng.standard_normal((n, 1, 10, 10))
    if name == "deep_conv":
        return rng.random((n, 1, 28, 28))
    return rng.standard_normal((n, 6))


def fix_dropout(net, seed=5):
    """Reseed np.random before every loss so each evaluation draws the same dropout masks."""
    loss = net._loss

    def seeded(*args, **kwargs):
        np.random.seed(seed)
        return loss(*args, **kwargs)
    net._loss = seeded


def rel_error(a, b):
    """max |a - b| relative to the larger gradient, floored: b before BatchNorm is 0 in
    theory, and there both sides are rounding noise. The numerical gradient's own (the loss's
    rounding, about 2e-16, over 2h = 2e-4) is about 1e-12: 2.2e-12 was seen for such a b with
    NumPy 1.24 on an Intel Xeon, 2.2e-6 against a floor of 1e-6. Against 1e-4 it is 2.2e-8,
    45x under the tests' 1e-6, and an error of 1e-10 in any gradient still fails."""
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-4)


# --- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MLPS) + ["simple_conv"])
def test_gradient_matches_numerical_gradient(name):
    net = make(name)
    x = inputs(name)
    # labels = the predicted class: a large softmax probability keeps the book's 1e-7 inside
    # the log (which backprop ignores) from showing in the comparison
    t = np.argmax(net.predict(x), axis=1)
    if "dropout" in name:
        fix_dropout(net)
    grads = net.gradient(x, t)  # default backend (numba)
    with using_backend("numpy"):  # hundreds of tiny calls: no thread start-up per call
        numeric = net.numerical_gradient(x, t)
    assert list(grads) == list(numeric)
    for key in net.params:
        assert rel_error(grads[key], numeric[key]) < 1e-6, key


def test_deep_convnet_gradient_by_central_differences():
    net = make("deep_conv")
    x = inputs("deep_conv", n=2)
    t = np.argmax(net.predict(x), axis=1)
    fix_dropout(net)  # the loss of DeepConvNet always runs dropout
    grads = net.gradient(x, t)
    assert net.layers[0].need_input_grad is False
    rng = np.random.default_rng(3)
    h = 1e-4
    with using_backend("numpy"):
        _central_differences(net, x, t, grads, rng, h)


def _central_differences(net, x, t, grads, rng, h):
    for i in range(1, 9):
        W = net.params['W%d' % i]
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in W.shape)
            saved = W[idx]
            W[idx] = saved + h
            plus = net.loss(x, t)
            W[idx] = saved - h
            minus = net.loss(x, t)
            W[idx] = saved
            numeric = (plus - minus) / (2 * h)
            scale = max(np.max(np.abs(grads['W%d' % i])), 1e-6)
            assert abs(grads['W%d' % i][idx] - numeric) / scale < 1e-6, ('W%d' % i, idx)


def test_weight_decay_in_loss_and_grads():
    net = make("mlp_relu")
    x, t = inputs("mlp_relu"), np.arange(5) % 3
    decay = sum(0.5 * 0.1 * np.sum(net.params[k] ** 2) for k in ("W1", "W2", "W3"))
    net.weight_decay_lambda = 0
    plain = net.loss(x, t)
    g0 = {k: v.copy() for k, v in net.gradient(x, t).items()}
    net.weight_decay_lambda = 0.1
    assert np.isclose(net.loss(x, t), plain + decay, rtol=1e-14)
    g1 = net.gradient(x, t)
    np.testing.assert_allclose(g1["W2"], g0["W2"] + 0.1 * net.params["W2"], rtol=1e-14)
    np.testing.assert_array_equal(g1["b2"], g0["b2"])


def test_gradient_stores_its_loss():
    net = make("extend_bn")
    x, t = inputs("extend_bn"), np.arange(5) % 3
    assert net.last_loss is None
    net.gradient(x, t)
    # the training-mode loss, before any update
    assert net.last_loss == net.loss(x, t, train_flg=True)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_book_style_backward_by_hand_after_loss(backend):
    # the book's SimpleConvNet.gradient: loss(), then backward through last_layer and the
    # layers in reverse; the fused blocks of predict must not break that walk
    np.random.seed(0)
    with using_backend(backend):
        net = SimpleConvNet(input_dim=(1, 10, 10), conv_param={
            'filter_num': 3, 'filter_size': 3, 'pad': 0, 'stride': 1}, hidden_size=6,
            output_size=4, weight_init_std=0.3, dtype=np.float64)
        rng = np.random.default_rng(1)
        x, t = rng.standard_normal((5, 1, 10, 10)), rng.integers(0, 4, 5)
        want = net.gradient(x, t)
        want = {key: value.copy() for key, value in want.items()}
        assert net.layers['Pool1'].argmax is not None  # a gradient's forward keeps it
        net.predict(x)
        assert net.layers['Pool1'].argmax is None  # an inference forward does not

        net.loss(x, t)
        dout = net.last_layer.backward(1)
        for layer in reversed(list(net.layers.values())):
            dout = layer.backward(dout)
    for key, layer, attr in (("W1", "Conv1", "dW"), ("b1", "Conv1", "db"),
                             ("W2", "Affine1", "dW"), ("W3", "Affine2", "dW")):
        np.testing.assert_allclose(getattr(net.layers[layer], attr), want[key],
                                   rtol=1e-12, atol=1e-14)


# --- same initial weights as the book ----------------------------------------------------------

def _book_draws(seed, shapes, scales):
    np.random.seed(seed)
    return [scale * np.random.randn(*shape) for shape, scale in zip(shapes, scales)]


def test_init_draws_like_the_book():
    np.random.seed(7)
    net = SimpleConvNet(dtype=np.float64)
    expected = _book_draws(7, [(30, 1, 5, 5), (30 * 12 * 12, 100), (100, 10)], [0.01] * 3)
    for i, W in enumerate(expected, start=1):
        np.testing.assert_array_equal(net.params['W%d' % i], W)
        np.testing.assert_array_equal(net.params['b%d' % i], 0)

    np.random.seed(7)
    net = DeepConvNet(dtype=np.float64)
    fan_in = np.array([1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3,
                       64 * 4 * 4, 50])
    shapes = [(16, 1, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3),
              (64, 64, 3, 3), (64 * 4 * 4, 50), (50, 10)]
    for i, W in enumerate(_book_draws(7, shapes, np.sqrt(2.0 / fan_in)), start=1):
        np.testing.assert_array_equal(net.params['W%d' % i], W)

    np.random.seed(7)
    net = MultiLayerNetExtend(784, [100, 50], 10, use_batchnorm=True, dtype=np.float64)
    sizes = [784, 100, 50, 10]
    expected = _book_draws(7, list(zip(sizes, sizes[1:])),
                           [np.sqrt(2.0 / n) for n in sizes[:-1]])
    for i, W in enumerate(expected, start=1):
        np.testing.assert_array_equal(net.params['W%d' % i], W)
    assert list(net.params) == ['W1', 'b1', 'W2', 'b2', 'W3', 'b3',
                                'gamma1', 'beta1', 'gamma2', 'beta2']

    np.random.seed(7)
    net = TwoLayerNet(784, 50, 10, dtype=np.float64)
    for i, W in enumerate(_book_draws(7, [(784, 50), (50, 10)], [0.01] * 2), start=1):
        np.testing.assert_array_equal(net.params['W%d' % i], W)
    np.random.seed(7)
    net32 = TwoLayerNet(784, 50, 10, dtype=np.float32)
    assert net32.params['W1'].dtype == np.float32
    np.testing.assert_array_equal(net32.params['W1'], net.params['W1'].astype(np.float32))


def test_layer_containers_like_the_book():
    net = make("simple_conv")
    assert isinstance(net.layers, OrderedDict)
    assert list(net.layers) == ['Conv1', 'Relu1', 'Pool1', 'Affine1', 'Relu2', 'Affine2']
    assert net.layers['Pool1'].stride == 2
    two = make("two_layer")
    assert list(two.layers) == ['Affine1', 'Relu1', 'Affine2'] and two.lastLayer is not None
    ext = make("extend_dropout")
    assert list(ext.layers) == ['Affine1', 'BatchNorm1', 'Activation_function1', 'Dropout1',
                                'Affine2', 'BatchNorm2', 'Activation_function2', 'Dropout2',
                                'Affine3']
    deep = make("deep_conv")
    assert isinstance(deep.layers, list) and len(deep.layers) == 20
    for i, idx in enumerate((0, 2, 5, 7, 10, 12, 15, 18), start=1):
        assert isinstance(deep.layers[idx], Convolution if i <= 6 else Affine)
        assert deep.layers[idx].W is deep.params['W%d' % i]
    assert [type(deep.layers[i]) for i in (4, 9, 14, 17, 19)] == [Pooling] * 3 + [Dropout] * 2
    for net in (net, two, ext, deep):
        first = net._layer_list()[0]
        assert first.need_input_grad is False


def test_module_aliases():
    from fastconv.deep_convnet import DeepConvNet as D
    from fastconv.multi_layer_net import MultiLayerNet as M
    from fastconv.multi_layer_net_extend import MultiLayerNetExtend as E
    from fastconv.simple_convnet import SimpleConvNet as S
    from fastconv.two_layer_net import TwoLayerNet as T
    assert (D, M, E, S, T) == (DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet,
                               TwoLayerNet)


# --- backends and dtypes -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL))
def test_backends_agree_in_float64(name):
    results = []
    for which in ("numpy", "numba"):
        net = make(name)
        x = inputs(name, n=4)
        np.random.seed(11)
        with using_backend(which):
            grads = net.gradient(x, np.arange(4) % 3)
        results.append((net.last_loss, grads))
    (loss_a, ga), (loss_b, gb) = results
    assert abs(loss_a - loss_b) <= 1e-12 * abs(loss_a)
    # A bias ahead of batch norm has a gradient that is zero in theory: what is left is
    # rounding noise, which differs with the SIMD width. Measure every key against the scale
    # of the net's gradients, not against its own noise.
    scale = max(np.max(np.abs(g)) for g in ga.values())
    for key in ga:
        np.testing.assert_allclose(gb[key], ga[key], rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=key)


@pytest.mark.parametrize("name", list(ALL))
def test_float32_net_stays_float32(name):
    net = make(name, dtype=np.float32)
    x = inputs(name, n=4)  # float64 input: cast by predict
    assert all(p.dtype == np.float32 for p in net.params.values())
    assert net.predict(x).dtype == np.float32
    grads = net.gradient(x, np.arange(4) % 3)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert np.asarray(net.last_loss).dtype == np.float32
    assert np.asarray(net.loss(x, np.arange(4) % 3)).dtype == np.float32


def test_integer_input_is_cast():
    net = make("simple_conv", dtype=np.float32)
    x = (np.random.default_rng(0).random((3, 1, 10, 10)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(net.predict(x), net.predict(x.astype(np.float32)))


def _layer_state(net):
    return [{key: value.copy() if isinstance(value, np.ndarray) else value
             for key, value in vars(layer).items()} for layer in net._layer_list()]


def _same_state(before, after):
    assert len(before) == len(after)
    for was, now in zip(before, after):
        assert was.keys() == now.keys()
        for key in was:
            if isinstance(was[key], np.ndarray):
                np.testing.assert_array_equal(was[key], now[key])
            else:
                assert was[key] is now[key], key


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("t, message", [
    (np.array([0, 1, 2, 3, 99]), r"t labels must lie in \[0, "),
    (np.array([0, 1]), r"t must be labels of shape \(5,\)"),
    (np.zeros((5, 4)), r"one-hot of shape \(5, "),
])
def test_targets_that_cannot_fit_are_refused_before_the_forward_pass(name, t, message):
    # the loss found them only after the forward pass had moved the layers' saved inputs,
    # masks and argmax, and drawn DeepConvNet's dropout masks from np.random
    net = make(name)
    x = inputs(name)
    net.gradient(x, np.arange(5) % 3)
    layers, draws = _layer_state(net), np.random.get_state()[1].copy()
    for call in (net.loss, net.gradient):
        with pytest.raises(ValueError, match=message):
            call(2 * x, t)
        _same_state(layers, _layer_state(net))
    np.testing.assert_array_equal(np.random.get_state()[1], draws)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, size, message", [
    ("simple_conv", 12, r"x of shape \(5, 1, 12, 12\) does not fit this network: Affine1 would "
                        r"get shape \(5, 3, 5, 5\) from the layers before it, and that is 75 "
                        r"features per sample, but its W expects 48"),
    ("simple_conv", 8, r"Affine1 would get shape \(5, 3, 3, 3\) .* 27 features per sample"),
    ("deep_conv", 16, r"layers\[15\] \(Affine\) would get shape \(5, 64, 2, 2\) from the "
                      r"layers before it, and that is 256 features per sample, but its W "
                      r"expects 1024"),
    ("deep_conv", 2, r"layers\[14\] \(Pooling\) would get shape \(5, 64, 1, 1\) from the "
                     r"layers before it, and its pool window of 2x2 does not fit images of 1x1"),
])
def test_images_of_another_size_are_refused_before_any_layer_runs(name, size, message, dtype):
    # each layer checks its own input: a later one's check came after the conv layers had
    # kept the refused batch (their x, argmax, fused blocks), which a backward walk by hand
    # then met
    net = make(name, dtype)
    net.gradient(inputs(name).astype(dtype), np.arange(5) % 3)
    layers, steps = _layer_state(net), net._steps
    x = np.random.default_rng(2).random((5, 1, size, size))
    for call in (net.predict, lambda x: net.loss(x, np.arange(5) % 3),
                 lambda x: net.gradient(x, np.arange(5) % 3)):
        with pytest.raises(ValueError, match=message):
            call(x)
        _same_state(layers, _layer_state(net))
        assert net._steps is steps


def test_a_misfit_at_the_first_layer_keeps_that_layers_own_words():
    net = make("simple_conv")
    net.gradient(inputs("simple_conv"), np.arange(5) % 3)
    steps = net._steps  # what a backward walk of the last pass takes
    with pytest.raises(ValueError, match=r"^x has 2 channels \(shape \(4, 2, 10, 10\)\) but W "
                                         r"expects 1"):
        net.predict(np.zeros((4, 2, 10, 10)))
    assert net._steps is steps


def test_the_shape_check_stops_at_a_layer_of_the_users_own():
    # it cannot tell what shape a course's own layer gives: from there on each layer's own
    # check speaks, and nothing the network takes is refused
    class Halve:
        def forward(self, x):
            return x[:, :, ::2, ::2]

    net = make("simple_conv")
    layers = list(net.layers.items())
    net.layers = OrderedDict([layers[0], layers[1], ("Halve", Halve())] + layers[3:])
    assert net.predict(np.zeros((2, 1, 10, 10))).shape == (2, 3)
    with pytest.raises(ValueError, match=r"x has 27 features per sample"):
        net.predict(np.zeros((2, 1, 8, 8)))


def test_targets_are_left_to_the_loss_after_a_layer_of_the_users_own():
    # a course's own layer after the last Affine may change the number of scores: the
    # classes are not the Affine's, and the user's definition wins
    class Widen:
        def __init__(self):
            self.W = np.full((3, 12), 0.1)

        def forward(self, x):
            return x @ self.W

    net = make("mlp_relu")
    net.layers["Widen"] = Widen()
    assert np.isfinite(net.loss(inputs("mlp_relu"), np.array([11, 3, 0, 1, 2])))


@pytest.mark.parametrize("lam", [None, "0.1"])
def test_a_weight_decay_that_is_not_a_number_is_refused_before_the_forward_pass(lam):
    # None counted as 0, and text failed only after the forward pass
    for cls in (MultiLayerNet, MultiLayerNetExtend):
        with pytest.raises(TypeError, match="weight_decay_lambda must be a real number"):
            cls(6, [5], 3, weight_decay_lambda=lam)
    net = MultiLayerNet(6, [5], 3)
    net.weight_decay_lambda = lam  # (a script may set the attribute)
    x, t = inputs("mlp_relu"), np.arange(5) % 3
    for call in (net.loss, net.gradient):
        with pytest.raises(TypeError, match="weight_decay_lambda must be a real number"):
            call(x, t)
    assert all(getattr(layer, "x", None) is None for layer in net._layer_list())


@pytest.mark.parametrize("name", ["two_layer", "simple_conv"])
@pytest.mark.parametrize("kind", ["complex", "text"])
def test_complex_or_text_input_is_refused(name, kind):
    # NumPy would drop the imaginary part with a warning, or parse the text
    net = make(name)
    x = inputs(name)
    x = x + 1j if kind == "complex" else x.astype(str)
    for call in (net.predict, lambda x: net.gradient(x, np.arange(5) % 3)):
        with pytest.raises(TypeError, match="x must be a real numeric array"):
            call(x)


_CONV = {'filter_num': 3, 'filter_size': 3, 'pad': 0, 'stride': 1}


@pytest.mark.parametrize("build, error, message", [
    (lambda: TwoLayerNet(4, -1, 3), ValueError, "hidden_size must be >= 1; got -1"),
    (lambda: TwoLayerNet(4, 2.5, 3), TypeError, "hidden_size must be an integer; got 2.5"),
    (lambda: TwoLayerNet(4, 5, 3, weight_init_std=None), TypeError,
     "weight_init_std must be a real number"),
    (lambda: MultiLayerNet(4, [5, 0], 3), ValueError, r"hidden_size_list\[1\] must be >= 1; got 0"),
    (lambda: MultiLayerNet(4, 5, 3), TypeError, "hidden_size_list must be a list of layer sizes"),
    (lambda: MultiLayerNetExtend(4, [5], 3, weight_init_std=None), TypeError,
     "weight_init_std must be a real number"),
    (lambda: SimpleConvNet((1, 8, 8), dict(_CONV, stride=0)), ValueError,
     r"conv_param\['stride'\] must be >= 1; got 0"),
    (lambda: SimpleConvNet((1, 8, 8), dict(_CONV, pad=-1)), ValueError,
     r"conv_param\['pad'\] must be >= 0; got -1"),
    (lambda: SimpleConvNet((1, 8, 8), {'filter_num': 3, 'filter_size': 3, 'stride': 1}),
     ValueError, "conv_param must be a dict with 'filter_num', 'filter_size', 'pad' and"),
    (lambda: SimpleConvNet((28, 28)), ValueError, r"input_dim must be \(C, H, W\)"),
    (lambda: SimpleConvNet((1, 8, 8), _CONV, hidden_size=0), ValueError,
     "hidden_size must be >= 1; got 0"),
    (lambda: DeepConvNet(conv_param_3=dict(_CONV, stride=0)), ValueError,
     r"conv_param_3\['stride'\] must be >= 1; got 0"),
])
def test_a_network_of_impossible_sizes_is_refused_before_it_draws_weights(build, error,
                                                                          message):
    # these raised NumPy's or Python's words (negative dimensions, a division by zero, an
    # unpacking, a KeyError) or drew weights first
    draws = np.random.get_state()[1].copy()
    with pytest.raises(error, match=message):
        build()
    np.testing.assert_array_equal(np.random.get_state()[1], draws)


def test_bad_dtype():
    with pytest.raises(TypeError):
        TwoLayerNet(4, 3, 2, dtype=np.int32)
    with pytest.raises(TypeError):
        TwoLayerNet(4, 3, 2, dtype=np.float16)


def test_dtype_follows_the_mode_unless_given():
    from fastconv import using_mode
    assert TwoLayerNet(4, 3, 2).dtype == np.float64  # parity, the default: the book's dtype
    with using_mode("fast"):
        assert TwoLayerNet(4, 3, 2).dtype == np.float32
        assert TwoLayerNet(4, 3, 2, dtype=np.float64).dtype == np.float64
    assert TwoLayerNet(4, 3, 2, dtype=np.float32).dtype == np.float32


# --- accuracy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,n", [("simple_conv", 250), ("extend_dropout", 250),
                                    ("deep_conv", 140)])
def test_accuracy_counts_a_partial_batch(name, n):
    net = make(name)
    x = inputs(name, n=n)
    t = np.random.default_rng(2).integers(0, 3, n)
    t[:n // 2] = np.argmax(net.predict(x[:n // 2]), axis=1)  # a count far from trivial
    scores = net.predict(x, train_flg=False)
    by_hand = np.sum(np.argmax(scores, axis=1) == t) / n
    assert net.accuracy(x, t, batch_size=100) == pytest.approx(by_hand, abs=1e-15)
    assert net.accuracy(x, np.eye(3)[t], batch_size=100) == pytest.approx(by_hand, abs=1e-15)
    m = n - 20
    assert net.accuracy(x[:m], t[:m], batch_size=100) == pytest.approx(
        np.sum(np.argmax(scores[:m], axis=1) == t[:m]) / m, abs=1e-15)


@pytest.mark.parametrize("t", [None, "labels", np.zeros((5, 3, 1))])
def test_accuracy_names_targets_that_are_not_labels(t):
    # an AxisError from argmax before
    with pytest.raises(TypeError, match=r"t must hold labels \(N,\) or one-hot rows"):
        make("two_layer").accuracy(inputs("two_layer"), t)


def test_accuracy_reads_integer_labels_in_a_column_as_the_loss_does():
    # the book's argmax over a column of labels makes every label 0
    net = make("two_layer")
    x = inputs("two_layer", n=40)
    t = np.argmax(net.predict(x), axis=1)
    assert net.accuracy(x, t[:, None]) == net.accuracy(x, t) == 1.0


@pytest.mark.parametrize("x", [None, 3.0])
def test_accuracy_names_an_x_that_is_no_batch(x):
    with pytest.raises(TypeError, match=r"x must be an array of samples \(N first\); got"):
        make("two_layer").accuracy(x, np.array([0]))


@pytest.mark.parametrize("call", ["loss", "gradient"])
def test_a_one_dimensional_x_is_named_before_the_targets(call):
    net = make("two_layer")
    with pytest.raises(ValueError, match=r"x must be at least 2-D \(batch first\); got shape "
                                         r"\(6,\)"):
        getattr(net, call)(inputs("two_layer")[0], np.arange(5) % 3)


def test_accuracy_default_batching():
    net = make("mlp_relu")
    x, t = inputs("mlp_relu", n=37), np.arange(37) % 3
    assert net.accuracy(x, t) == net.accuracy(x, t, batch_size=10)
    with pytest.raises(ValueError):
        net.accuracy(x, t, batch_size=0)
    with pytest.raises(ValueError):
        net.accuracy(x[:0], t[:0])


# --- save/load --------------------------------------------------------------------------------

def snapshot(net):
    return {k: v.copy() for k, v in net.params.items()}


def assert_layers_share_params(net):
    for key, layer, attr, _ in net._slots:
        assert getattr(layer, attr) is net.params[key], key


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
@pytest.mark.parametrize("name", ["simple_conv", "extend_bn"])
def test_round_trip(tmp_path, name, suffix):
    src = make(name, seed=0)
    x = inputs(name, n=6)
    src.gradient(x, np.arange(6) % 3)  # BatchNorm gets running statistics
    path = str(tmp_path / ("params" + suffix))
    src.save_params(path)
    dst = make(name, seed=1)
    before = {k: id(v) for k, v in dst.params.items()}
    dst.load_params(path)
    assert {k: id(v) for k, v in dst.params.items()} == before
    assert_layers_share_params(dst)
    for key in src.params:
        np.testing.assert_array_equal(dst.params[key], src.params[key])
    np.testing.assert_array_equal(dst.predict(x), src.predict(x))


@pytest.mark.parametrize("method", ["save_params", "load_params"])
def test_a_file_name_that_is_no_path_is_named(method):
    net = make("two_layer")
    before = snapshot(net)
    with pytest.raises(TypeError, match=r"file_name must be a path .*; got NoneType"):
        getattr(net, method)(None)
    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value)


def test_saved_pickle_is_a_plain_dict(tmp_path):
    net = make("simple_conv")
    path = tmp_path / "params.pkl"
    net.save_params(str(path))
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert type(data) is dict and list(data) == list(net.params)
    assert all(type(v) is np.ndarray for v in data.values())


def test_book_deep_convnet_pickle_loads(tmp_path):
    """A dict of float64 W1..W8, b1..b8 pickled with the plain pickle module, as the book's
    ch08/deep_convnet_params.pkl is, gives a fresh net the source net's predictions."""
    np.random.seed(3)
    src = DeepConvNet(dtype=np.float64)
    params = {k: np.array(v) for k, v in src.params.items()}
    assert all(v.dtype == np.float64 for v in params.values())
    x = np.random.default_rng(4).random((40, 1, 28, 28))
    expected = src.predict(x)
    for protocol in (2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / ("deep_convnet_params_%d.pkl" % protocol)
        with open(path, "wb") as f:
            pickle.dump(params, f, protocol=protocol)
        np.random.seed(99)
        fresh = DeepConvNet(dtype=np.float64)
        fresh.load_params(str(path))
        got = fresh.predict(x)
        np.testing.assert_array_equal(np.argmax(got, axis=1), np.argmax(expected, axis=1))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        assert_layers_share_params(fresh)
    fresh32 = DeepConvNet(dtype=np.float32)
    fresh32.load_params(str(path))
    assert fresh32.params['W1'].dtype == np.float32
    np.testing.assert_allclose(fresh32.predict(x), expected, rtol=1e-3, atol=1e-4)


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickle_runs_nothing(tmp_path):
    net = make("two_layer")
    before = snapshot(net)
    marker = tmp_path / "pwned"
    for i, payload in enumerate([_Evil("touch " + str(marker)), _EvalEvil()]):
        data = {k: v for k, v in net.params.items()}
        data["W1"] = payload
        path = tmp_path / ("evil%d.pkl" % i)
        with open(path, "wb") as f:
            pickle.dump(data, f)
        with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
            net.load_params(str(path))
    assert not marker.exists()
    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value)


def test_npz_with_objects_is_refused(tmp_path):
    net = make("two_layer")
    data = {k: v for k, v in net.params.items()}
    data["W1"] = np.array([{"a": 1}] * 42, dtype=object).reshape(6, 7)
    path = str(tmp_path / "evil.npz")
    np.savez(path, **data)
    with pytest.raises(TypeError, match="'W1' has dtype object"):
        net.load_params(path)


def _write(path, data):
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return str(path)


def test_bad_files_leave_the_net_unchanged(tmp_path):
    net = make("simple_conv")
    before = snapshot(net)
    good = {k: v + 1.0 for k, v in net.params.items()}

    missing = {k: v for k, v in good.items() if k not in ("b2", "W3")}
    with pytest.raises(ValueError, match=r"missing.*'b2'.*'W3'"):
        net.load_params(_write(tmp_path / "missing.pkl", missing))

    wrong = dict(good, W2=np.zeros((5, 10)))
    with pytest.raises(ValueError, match=r"'W2'.*expected \(48, 10\), got \(5, 10\)"):
        net.load_params(_write(tmp_path / "wrong.pkl", wrong))

    extra = dict(good, W4=np.zeros(3))
    with pytest.raises(ValueError, match="unexpected.*'W4'"):
        net.load_params(_write(tmp_path / "extra.pkl", extra))

    with pytest.raises(pickle.UnpicklingError, match="list.pkl.*EMPTY_LIST"):
        net.load_params(_write(tmp_path / "list.pkl", [good]))
    with pytest.raises(TypeError, match="tuple.pkl: expected a dict"):
        net.load_params(_write(tmp_path / "tuple.pkl", (good,)))
    with pytest.raises(TypeError):
        net.load_params(_write(tmp_path / "str.pkl", dict(good, b1=np.array(["a"] * 3))))

    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value)
    assert_layers_share_params(net)


def test_training_step_after_load_reaches_the_layers(tmp_path):
    from fastconv.optimizer import SGD
    net = make("simple_conv", dtype=np.float32)
    path = _write(tmp_path / "p.pkl", {k: v.astype(np.float64) * 2 for k, v in
                                       net.params.items()})
    net.load_params(path)
    assert_layers_share_params(net)
    x, t = inputs("simple_conv", n=4), np.arange(4) % 3
    old = snapshot(net)
    out_before = net.predict(x)
    SGD(lr=0.5).update(net.params, net.gradient(x, t))
    assert_layers_share_params(net)
    assert not np.array_equal(net.params["W1"], old["W1"])
    assert not np.array_equal(net.predict(x), out_before)


def test_batchnorm_running_stats_optional(tmp_path):
    net = make("extend_bn")
    net.gradient(inputs("extend_bn"), np.arange(5) % 3)
    book_style = {k: v * 2 for k, v in net.params.items()}  # no running statistics
    net.load_params(_write(tmp_path / "book.pkl", book_style))
    np.testing.assert_array_equal(net.params["gamma1"], book_style["gamma1"])
    bn = net.layers["BatchNorm1"]
    assert isinstance(bn, BatchNormalization) and bn.gamma is net.params["gamma1"]
    with_stats = dict(book_style, running_mean1=np.full(7, 0.5), running_var1=np.full(7, 2.0))
    net.load_params(_write(tmp_path / "stats.pkl", with_stats))
    np.testing.assert_array_equal(bn.running_mean, 0.5)
    bad = dict(book_style, running_var2=np.ones(3))
    with pytest.raises(ValueError, match="running_var2"):
        net.load_params(_write(tmp_path / "bad.pkl", bad))
    np.testing.assert_array_equal(bn.running_var, 2.0)


@pytest.mark.parametrize("first_call", [True, False])
def test_gradient_with_bad_labels_leaves_batchnorm_statistics(first_call):
    net = make("extend_bn")
    x = inputs("extend_bn", n=4)
    if not first_call:
        net.gradient(x, np.arange(4) % 3)
    before = [(layer.running_mean, layer.running_var) for layer in net._layer_list()
              if isinstance(layer, BatchNormalization)]
    before = [(None if m is None else m.copy(), None if v is None else v.copy())
              for m, v in before]
    with pytest.raises(ValueError, match="t"):
        net.gradient(x, np.array([0, 1, 2, 99]))  # a label out of range: found after forward
    after = [(layer.running_mean, layer.running_var) for layer in net._layer_list()
             if isinstance(layer, BatchNormalization)]
    for (m0, v0), (m1, v1) in zip(before, after):
        if m0 is None:
            assert m1 is None and v1 is None
        else:
            np.testing.assert_array_equal(m1, m0)
            np.testing.assert_array_equal(v1, v0)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("value", [1.0, -1e150, 1e150, 1.1e150, 1e154, 1.4e154, -1e200, np.inf,
                                   np.nan, 0.0])
def test_a_zero_weight_decay_skips_only_sums_that_are_surely_finite(value):
    # float64 skips 0.5 * 0 * sum(W**2) where the sum cannot overflow: the loss keeps the
    # book's bits on both sides of the bound (1.4e154 squared overflows, 1e154 does not),
    # and the gradient is the book's dW + 0 * W, signs of zero included
    from fastconv.nets import MultiLayerNet
    from test_kernels import assert_same_bits
    x = np.zeros((2, 4))
    x[:, 1] = 1.0  # the huge weight meets zero pixels: the forward pass stays finite
    t = np.array([0, 1])
    np.random.seed(1)
    net = MultiLayerNet(4, [3, 3], 2)
    net.params["W1"][0, 0] = value
    scores = net.predict(x)
    book = net.last_layer.forward(scores, t)
    decay = np.float64(0)
    for key in ("W1", "W2", "W3"):
        decay += np.float64(0.5) * np.float64(0) * np.sum(net.params[key] ** 2)
    assert_same_bits(np.array(net.loss(x, t)), np.array(book + decay))
    grads = net.gradient(x, t)
    for i in (1, 2, 3):
        layer = net.layers[f"Affine{i}"]
        want = layer.dW + np.float64(0) * net.params[f"W{i}"]
        assert_same_bits(grads[f"W{i}"], want)
        assert grads[f"W{i}"] is not layer.dW


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_zero_weight_decay_is_the_books_arithmetic_in_float64():
    # the book adds 0.5 * 0 * sum(W**2) anyway: NaN once a square overflows, where a forward
    # pass that multiplies the huge weight by a zero pixel stays finite
    from fastconv.nets import MultiLayerNet
    x = np.zeros((2, 4))
    x[:, 1] = 1.0
    t = np.array([0, 1])
    for dtype, nan in ((np.float64, True), (np.float32, False)):
        np.random.seed(0)
        net = MultiLayerNet(4, [3], 2, dtype=dtype)
        net.params["W1"][0, 0] = 1e200 if dtype == np.float64 else 1e30
        assert np.isnan(net.loss(x, t)) == nan
        grads = net.gradient(x, t)
        assert (grads["W1"] is net.layers["Affine1"].dW) != nan  # the book's: a new array
