"""fastconv.functions against the book's formulas written out here, and its dtypes."""
import numpy as np
import pytest

from fastconv import functions as F


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 4)), rng.integers(0, 4, 5)


def test_losses_equal_the_books_formulas_in_float64(scores):
    x, t = scores
    y = np.exp(x - x.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(F.softmax(x), y, rtol=1e-15)
    want = -np.sum(np.log(y[np.arange(5), t] + 1e-7)) / 5
    assert F.cross_entropy_error(y, t) == want
    assert F.cross_entropy_error(y, np.eye(4)[t]) == want  # one-hot labels
    assert F.softmax_loss(x, t) == pytest.approx(want, rel=1e-15)
    assert F.cross_entropy_error(y[0], t[:1]) == -np.log(y[0, t[0]] + 1e-7)  # one sample, 1-D
    assert F.sum_squared_error(y[0], np.eye(4)[t[0]]) == 0.5 * np.sum((y[0] - np.eye(4)[t[0]]) ** 2)


def test_float32_in_float32_out(scores):
    """Also on NumPy 1.x, where a float32 scalar combined with a Python number is float64."""
    x, t = scores
    x = x.astype(np.float32)
    y = F.softmax(x)
    assert y.dtype == np.float32
    assert np.asarray(F.cross_entropy_error(y, t)).dtype == np.float32
    assert np.asarray(F.cross_entropy_error(y, np.eye(4, dtype=np.float32)[t])).dtype == np.float32
    assert np.asarray(F.sum_squared_error(y, np.eye(4, dtype=np.float32)[t])).dtype == np.float32
    for f in (F.sigmoid, F.sigmoid_grad, F.relu, F.relu_grad, F.identity_function):
        assert f(x).dtype == np.float32, f.__name__


def test_activations():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(F.step_function(x), [0, 0, 1])
    np.testing.assert_array_equal(F.relu(x), [0, 0, 3])
    np.testing.assert_array_equal(F.relu_grad(x), [0, 1, 1])  # the book's: 1 at x == 0
    np.testing.assert_allclose(F.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(F.sigmoid_grad(x), (1 - s) * s, rtol=1e-15)
