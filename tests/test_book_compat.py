"""What the book's own scripts do with its package, done with fastconv's (issue 14): star
imports, labels of shape (N, 1), a number as a bias, integer weights."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
from fastconv.functions import cross_entropy_error, softmax
from fastconv.layers import Affine, Convolution, Pooling, SoftmaxWithLoss

rng = np.random.default_rng(21)

# What `from common.<module> import *` binds with the book's current upstream package: its
# modules have no __all__, so every public name, the imported ones (np, ...) included. Derived
# once by running the star import on upstream's common/ (commit 07b1161).
_FUNCTIONS = ["cross_entropy_error", "identity_function", "np", "relu", "relu_grad", "sigmoid",
              "sigmoid_grad", "softmax", "softmax_loss", "step_function", "sum_squared_error"]
_LAYERS = ["Affine", "BatchNormalization", "Convolution", "Dropout", "Pooling", "Relu",
           "Sigmoid", "SoftmaxWithLoss", "col2im", "im2col"] + _FUNCTIONS
_OPTIMIZERS = ["AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "SGD", "np"]
BOOK_STAR_NAMES = {
    "functions": _FUNCTIONS,
    "layers": _LAYERS,
    "util": ["col2im", "conv_output_size", "im2col", "np", "shuffle_dataset", "smooth_curve"],
    "optimizer": _OPTIMIZERS,
    "gradient": ["np", "numerical_gradient", "numerical_gradient_2d"],
    "trainer": _OPTIMIZERS + ["Trainer", "os", "sys"],
    "multi_layer_net": _LAYERS + ["MultiLayerNet", "OrderedDict", "numerical_gradient", "os",
                                  "sys"],
    "multi_layer_net_extend": _LAYERS + ["MultiLayerNetExtend", "OrderedDict",
                                         "numerical_gradient", "os", "sys"],
}
CHECKED = tuple(BOOK_STAR_NAMES)


@pytest.mark.parametrize("module", CHECKED)
def test_star_import_brings_what_the_books_brings(module):
    namespace = {}
    exec(f"from fastconv.{module} import *", namespace)
    missing = set(BOOK_STAR_NAMES[module]) - set(namespace)
    assert not missing, f"from fastconv.{module} import * lacks {sorted(missing)}"
    assert namespace["np"] is np


def test_star_import_layers_brings_the_functions_themselves():
    namespace = {}
    exec("from fastconv.layers import *", namespace)
    assert namespace["softmax"] is softmax
    assert namespace["cross_entropy_error"] is cross_entropy_error


# --- labels of shape (N, 1) ----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 6), K=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_softmax_with_loss_takes_labels_in_a_column(backend, N, K, seed):
    r = np.random.default_rng(seed)
    x, labels = r.standard_normal((N, K)), r.integers(0, K, N)
    flat, column = SoftmaxWithLoss(), SoftmaxWithLoss()
    with fastconv.using_backend(backend):
        assert column.forward(x, labels.reshape(N, 1)) == flat.forward(x, labels)
        assert np.array_equal(column.backward(), flat.backward())


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("as_one_hot", [True, False])
def test_softmax_with_loss_takes_one_sample_as_a_1d_x_like_the_book(backend, as_one_hot):
    # the book's softmax and cross_entropy_error take a 1-D x as a batch of one
    x = rng.standard_normal(5)
    t = np.eye(5)[3] if as_one_hot else np.array([3])
    layer = SoftmaxWithLoss()
    with fastconv.using_backend(backend):
        loss = layer.forward(x, t)
        # the layer's loss of that one row, and the book's to rounding (the compiled
        # softmax takes another exp)
        assert loss == SoftmaxWithLoss().forward(x[None], t[None] if as_one_hot else t)
        assert loss == pytest.approx(cross_entropy_error(softmax(x), t), rel=1e-14)
        assert layer.y.shape == (5,) and np.allclose(layer.y, softmax(x), rtol=1e-15)
        assert layer.t is t
        y = layer.y.copy()
        # its backward divides by the number of classes (or fails): refused, nothing changed
        with pytest.raises(ValueError, match=r"1-D x: give x as one row of shape \(1, 5\)"):
            layer.backward()
        assert np.array_equal(layer.y, y) and layer.loss == loss
        with pytest.raises(ValueError, match=r"t must be one label or a one-hot row of 5"):
            SoftmaxWithLoss().forward(x, np.zeros(4))


def test_cross_entropy_error_takes_labels_in_a_column():
    # the book's ch07/gradient_check.py: one sample, t = np.array([1]).reshape((1, 1))
    y = softmax(rng.standard_normal((1, 4)))
    expected = -np.log(y[0, 1] + 1e-7)
    assert cross_entropy_error(y, np.array([1]).reshape((1, 1))) == expected
    # more rows: each row with its own label (the book's indexing would pair all N x N)
    y = softmax(rng.standard_normal((5, 4)))
    t = rng.integers(0, 4, 5)
    assert cross_entropy_error(y, t.reshape(5, 1)) == cross_entropy_error(y, t)


# --- a number as the bias, integer weights ---------------------------------------------------

@pytest.mark.parametrize("bias", [0, 2, 0.5, np.array([3]), np.int64(1)])
def test_convolution_takes_a_number_as_bias_like_the_book(bias):
    W = rng.standard_normal((3, 2, 3, 3))
    x = rng.standard_normal((2, 2, 6, 6))
    full = float(np.asarray(bias).reshape(-1)[0]) * np.ones(3)
    expected = Convolution(W, full).forward(x)
    conv = Convolution(W, bias)
    np.testing.assert_array_equal(conv.forward(x), expected)
    conv.backward(np.ones_like(expected))
    assert conv.db.shape == (3,) and np.all(conv.db == 2 * 4 * 4)


@pytest.mark.parametrize("layer_of", [
    lambda W, b: Convolution(W.reshape(2, 1, 2, 2), b),
    lambda W, b: Affine(W.reshape(4, 2), b)], ids=["Convolution", "Affine"])
def test_a_python_int_bias_keeps_a_float32_path_float32(layer_of):
    W = rng.standard_normal(8).astype(np.float32)
    layer = layer_of(W, 0)
    x = rng.standard_normal((3, 1, 2, 2)).astype(np.float32)
    x = x if isinstance(layer, Convolution) else x.reshape(3, 4)
    out = layer.forward(x)
    assert out.dtype == np.float32
    assert layer.backward(np.ones_like(out)).dtype == np.float32
    assert layer.dW.dtype == layer.db.dtype == np.float32


def test_integer_weights_are_cast_by_numpys_rules():
    W = np.arange(-4, 4).reshape(2, 1, 2, 2)  # the book's apply_filter builds such filters
    x = rng.standard_normal((1, 1, 4, 4))
    out = Convolution(W, 0).forward(x)
    np.testing.assert_array_equal(out, Convolution(W.astype(np.float64), np.zeros(2)).forward(x))
    # NumPy computes float32 with int64 in float64; so does the layer, as the book's would
    out32 = Convolution(W, 0).forward(x.astype(np.float32))
    assert out32.dtype == np.result_type(np.float32, W.dtype) == np.float64
    affine = Affine(np.ones((3, 2), dtype=np.int32), np.zeros(2, dtype=np.int32))
    assert affine.forward(np.ones((1, 3), dtype=np.float32)).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float16, np.uint8, np.int64])
def test_half_float_and_integer_images_run_in_float64_like_the_book(dtype):
    # the book's im2col copies any image into a float64 matrix; ch08's half_float_network
    # feeds float16 images to float64 weights
    x = (rng.standard_normal((2, 2, 6, 6)) * 3).astype(dtype)
    W = rng.standard_normal((3, 2, 3, 3))
    conv, ref = Convolution(W, np.ones(3)), Convolution(W, np.ones(3))
    out = conv.forward(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref.forward(x.astype(np.float64)))
    conv.backward(np.ones_like(out))
    np.testing.assert_array_equal(conv.dW, (ref.backward(np.ones_like(out)), ref.dW)[1])
    pooled = Pooling(2, 2).forward(x)
    assert pooled.dtype == np.float64
    np.testing.assert_array_equal(pooled, Pooling(2, 2).forward(x.astype(np.float64)))
    # the book's Affine computes x @ W + b in float64 too (it refused such images until
    # December 2026)
    W2, b2 = rng.standard_normal((72, 4)), rng.standard_normal(4)
    affine, reference = Affine(W2, b2), Affine(W2, b2)
    out = affine.forward(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, reference.forward(x.astype(np.float64)))
    dx = affine.backward(np.ones((2, 4)))
    np.testing.assert_array_equal(dx, reference.backward(np.ones((2, 4))))
    np.testing.assert_array_equal(affine.dW, reference.dW)
    assert dx.shape == x.shape


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16])
def test_util_im2col_and_col2im_take_integer_and_half_float_values_like_the_book(dtype):
    # the book copies them into a float64 matrix (or image) of zeros, and col2im reshapes a
    # col of any shape of the right size (a course script flattened it)
    from fastconv import util
    from fastconv.kernels import reference
    images = np.arange(2 * 2 * 5 * 5).reshape(2, 2, 5, 5).astype(dtype)
    col = util.im2col(images, 3, 3, 1, 1)
    assert col.dtype == np.float64
    np.testing.assert_array_equal(col, reference.im2col(images.astype(np.float64), 3, 3, 1, 1))
    back = util.col2im(col.astype(dtype), (2, 2, 5, 5), 3, 3, 1, 1)
    assert back.dtype == np.float64
    expected = reference.col2im(col.astype(dtype).astype(np.float64), (2, 2, 5, 5), 3, 3, 1, 1)
    np.testing.assert_array_equal(back, expected)
    np.testing.assert_array_equal(util.col2im(col.astype(dtype).ravel(), (2, 2, 5, 5), 3, 3,
                                              1, 1), expected)
    with pytest.raises(ValueError, match=r"col must have shape \(50, 18\) \(or 900 values in "
                                         r"another shape\)"):
        util.col2im(col.ravel()[1:], (2, 2, 5, 5), 3, 3, 1, 1)

@pytest.mark.parametrize("bias, error, words", [
    (np.zeros(2), ValueError, r"b must be a number or have shape \(3,\); got shape \(2,\)"),
    (np.zeros((1, 3)), ValueError, r"got shape \(1, 3\)"),
    (True, TypeError, "b must be a real numeric array"),
    ("0", TypeError, "b must be a real numeric array"),
    (1j, TypeError, "b must be a real numeric array"),
])
def test_a_bias_that_does_not_broadcast_is_refused(bias, error, words):
    conv = Convolution(rng.standard_normal((3, 2, 3, 3)), bias)
    with pytest.raises(error, match=words):
        conv.forward(rng.standard_normal((1, 2, 4, 4)))
    assert conv.x is None
