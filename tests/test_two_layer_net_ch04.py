"""ch04's sigmoid TwoLayerNet: hand-written backprop against central differences, and the
book's weight draws."""
import numpy as np
import pytest

from fastconv import using_mode
from fastconv.nets.two_layer_net import TwoLayerNet as Ch05Net
from fastconv.nets.two_layer_net_ch04 import TwoLayerNet


@pytest.fixture
def batch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 9))
    t = np.eye(5)[rng.integers(0, 5, 6)]
    return x, t


def test_gradient_matches_numerical_gradient(batch):
    x, t = batch
    np.random.seed(1)
    net = TwoLayerNet(9, 7, 5, weight_init_std=0.5)
    backprop, numeric = net.gradient(x, t), net.numerical_gradient(x, t)
    for key in ('W1', 'b1', 'W2', 'b2'):
        scale = np.max(np.abs(backprop[key]))
        assert scale > 1e-4, key  # a dead gradient would match trivially
        np.testing.assert_allclose(backprop[key], numeric[key], rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=key)


def test_predict_is_a_probability_and_accuracy_takes_one_hot_or_labels(batch):
    x, t = batch
    net = TwoLayerNet(9, 7, 5)
    y = net.predict(x)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    assert net.accuracy(x, t) == net.accuracy(x, t.argmax(axis=1))
    assert net.loss(x, t) > 0


def test_same_draws_as_the_book_and_the_mode_sets_the_dtype():
    np.random.seed(7)
    ch04 = TwoLayerNet(9, 7, 5)
    np.random.seed(7)
    ch05 = Ch05Net(9, 7, 5)
    for key in ch04.params:  # both nets draw W1 then W2 from np.random, like the book
        np.testing.assert_array_equal(ch04.params[key], ch05.params[key])
    assert ch04.params['W1'].dtype == np.float64
    with using_mode("fast"):
        assert TwoLayerNet(9, 7, 5).params['W1'].dtype == np.float32
    with pytest.raises(TypeError, match="dtype"):
        TwoLayerNet(9, 7, 5, dtype=np.int32)


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((4, 0, 2), {}, ValueError, "hidden_size must be >= 1; got 0"),
    ((4.0, 3, 2), {}, TypeError, "input_size must be an integer; got 4.0"),
    ((4, 3, 2), {"weight_init_std": None}, TypeError, "weight_init_std must be a real number"),
])
def test_impossible_sizes_are_refused_before_any_draw(args, kwargs, error, words):
    draws = np.random.get_state()[1].copy()
    with pytest.raises(error, match=words):
        TwoLayerNet(*args, **kwargs)
    np.testing.assert_array_equal(np.random.get_state()[1], draws)
