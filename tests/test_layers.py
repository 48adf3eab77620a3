"""Layers: backward against numerical gradients, both backends, and clear errors on bad input."""
import numpy as np
import pytest

from fastconv.backend import backend
from fastconv.gradient import numerical_gradient
from fastconv.layers import (Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu,
                             Sigmoid, SoftmaxWithLoss)

BACKENDS = ["numba", "numpy"]
rng = np.random.default_rng(1234)


def check_gradients(layer, x, params=(), forward=None):
    """Compare backward() with central differences of sum(forward(x) * g) for a random g."""
    forward = forward or layer.forward
    g = rng.standard_normal(forward(x).shape)

    def objective(_):
        return np.sum(forward(x) * g)

    numeric = {"x": numerical_gradient(objective, x)}
    for name, _ in params:
        numeric[name] = numerical_gradient(objective, getattr(layer, name))
    forward(x)
    analytic = {"x": layer.backward(g.copy())}
    for name, grad_attr in params:
        analytic[name] = getattr(layer, grad_attr)
    for name in numeric:
        np.testing.assert_allclose(analytic[name], numeric[name], rtol=1e-6, atol=1e-7,
                                   err_msg=f"d/d{name}")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("stride,pad,fh,fw", [(1, 0, 3, 3), (2, 1, 3, 2), (3, 2, 2, 4), (4, 0, 2, 2)])
def test_convolution_gradients(name, stride, pad, fh, fw):
    with backend(name):
        layer = Convolution(rng.standard_normal((3, 2, fh, fw)), rng.standard_normal(3), stride, pad)
        check_gradients(layer, rng.standard_normal((2, 2, 7, 6)), [("W", "dW"), ("b", "db")])


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("ph,pw,stride,pad", [(2, 2, 2, 0), (3, 3, 1, 1), (2, 3, 3, 1)])
def test_pooling_gradients(name, ph, pw, stride, pad):
    with backend(name):
        # distinct values keep each max away from a tie, where the gradient is undefined
        x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0
        check_gradients(Pooling(ph, pw, stride, pad), x)


@pytest.mark.parametrize("name", BACKENDS)
def test_affine_gradients_on_a_tensor_input(name):
    with backend(name):
        layer = Affine(rng.standard_normal((12, 5)), rng.standard_normal(5))
        x = rng.standard_normal((4, 3, 2, 2))
        check_gradients(layer, x, [("W", "dW"), ("b", "db")])
        assert layer.backward(np.ones((4, 5))).shape == x.shape


@pytest.mark.parametrize("name", BACKENDS)
def test_elementwise_gradients(name):
    with backend(name):
        x = rng.standard_normal((4, 6))
        x[np.abs(x) < 1e-2] = 0.5  # keep ReLU away from its kink
        check_gradients(Relu(), x)
        check_gradients(Sigmoid(), x)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("value", [-1.0, 2.0])
def test_relu_keeps_a_0d_input_0d(name, value):
    # the book's x <= 0 mask and out[mask] = 0 keep a 0-d array 0-d, and so backward takes
    # a 0-d dout; a (non-contiguous) 1-element view keeps its shape too
    with backend(name):
        layer = Relu()
        out = layer.forward(np.array(value))
        assert out.shape == () and out == max(value, 0.0)
        dx = layer.backward(np.array(3.0))
        assert dx.shape == () and dx == (3.0 if value > 0 else 0.0)
        view = np.array([[value, 9.0]])[:, :1]
        assert layer.forward(view).shape == (1, 1)
        assert layer.backward(np.ones((2, 1))[::2]).shape == (1, 1)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("shape", [(6, 5), (5, 2, 3, 2)])
def test_batchnorm_gradients(name, shape):
    with backend(name):
        D = int(np.prod(shape[1:]))
        layer = BatchNormalization(rng.standard_normal(D) + 1, rng.standard_normal(D))
        check_gradients(layer, rng.standard_normal(shape), [("gamma", "dgamma"), ("beta", "dbeta")],
                        forward=lambda x: layer.forward(x, train_flg=True))
        assert layer.running_mean.shape == (D,)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_with_loss_gradient(name, one_hot):
    with backend(name):
        layer = SoftmaxWithLoss()
        x = rng.standard_normal((5, 4))
        t = rng.integers(0, 4, 5)
        if one_hot:
            t = np.eye(4)[t]
        numeric = numerical_gradient(lambda _: layer.forward(x, t), x)
        layer.forward(x, t)
        # y - t is the gradient of log(y), not of the loss's log(y + 1e-7): they part at ~1e-6
        np.testing.assert_allclose(layer.backward(), numeric, rtol=1e-5, atol=1e-8)
        # the book ignores dout; fastconv scales by it
        np.testing.assert_allclose(layer.backward(2.0), 2 * numeric, rtol=1e-5, atol=1e-8)


def test_dropout_masks_in_train_and_scales_in_test():
    np.random.seed(0)
    layer = Dropout(0.3)
    x = rng.standard_normal((50, 40)).astype(np.float32)
    out = layer.forward(x, train_flg=True)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x * layer.mask)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), layer.mask.astype(np.float32))
    np.testing.assert_allclose(layer.forward(x, train_flg=False), x * 0.7, rtol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_stays_float32(name):
    with backend(name):
        f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
        x = f32(2, 3, 8, 8)
        conv = Convolution(f32(4, 3, 3, 3), f32(4), 1, 1)
        relu, pool = Relu(), Pooling(2, 2)
        affine = Affine(f32(4 * 4 * 4, 5), f32(5))
        loss = SoftmaxWithLoss()
        h = affine.forward(pool.forward(relu.forward(conv.forward(x))))
        assert np.asarray(loss.forward(h, np.array([1, 3]))).dtype == np.float32
        d = conv.backward(relu.backward(pool.backward(affine.backward(loss.backward()))))
        for a in (h, d, conv.dW, conv.db, affine.dW, affine.db):
            assert a.dtype == np.float32


def test_convolution_keeps_the_books_col_layout():
    W = rng.standard_normal((2, 3, 2, 2))
    conv = Convolution(W, np.zeros(2))
    conv.forward(rng.standard_normal((2, 3, 4, 4)))
    assert conv.col.shape == (2 * 3 * 3, 3 * 2 * 2)
    assert conv.col_W.shape == (12, 2)


def test_pooling_defaults_to_stride_two_and_pads():
    pool = Pooling(2, 2)
    assert pool.stride == 2
    assert pool.forward(rng.standard_normal((1, 1, 6, 6))).shape == (1, 1, 3, 3)
    # the book's Pooling crashes for any pad > 0
    assert Pooling(2, 2, stride=2, pad=1).forward(rng.standard_normal((1, 1, 6, 6))).shape == (1, 1, 4, 4)
    assert pool.arg_max.shape == (9,) or Pooling(2, 2).arg_max is None


@pytest.mark.parametrize("value", [-1, 4, 7, 10**12])
def test_pooling_refuses_an_argmax_outside_the_window(value):
    # the kernels skip such an index, and its gradient would be lost without a word
    pool = Pooling(2, 2)
    pool.forward(rng.standard_normal((2, 3, 4, 4)))
    pool.argmax = np.full((2, 3, 2, 2), value)
    with pytest.raises(ValueError, match=r"Pooling.argmax must hold window indices in \[0, 4\)"):
        pool.backward(np.ones((2, 3, 2, 2)))
    pool.argmax = np.full((2, 3, 2, 2), 3)  # inside the window: taken as given
    dx = pool.backward(np.ones((2, 3, 2, 2)))
    assert dx[:, :, 1::2, 1::2].sum() == dx.sum() == 24  # each bottom-right cell


@pytest.mark.parametrize("channels", [1, 3])
def test_pooling_arg_max_is_read_only(channels):
    # with one channel the flat layout is a view of the layer's own argmax
    pool = Pooling(2, 2)
    pool.forward(rng.standard_normal((2, channels, 4, 4)))
    before = pool.argmax.copy()
    flat = pool.arg_max
    np.testing.assert_array_equal(flat, before.transpose(0, 2, 3, 1).ravel())
    with pytest.raises(ValueError, match="read-only"):
        flat[0] = 3
    np.testing.assert_array_equal(pool.argmax, before)


def test_need_input_grad_false_skips_dx():
    conv = Convolution(rng.standard_normal((2, 1, 3, 3)), np.zeros(2))
    conv.need_input_grad = False
    out = conv.forward(rng.standard_normal((2, 1, 5, 5)))
    assert conv.backward(np.ones_like(out)) is None
    assert conv.dW.shape == (2, 1, 3, 3)


# --- bad input -------------------------------------------------------------------------------

def fresh_conv():
    return Convolution(rng.standard_normal((4, 3, 3, 3)), np.zeros(4))


@pytest.mark.parametrize("x,error,words", [
    (np.zeros((2, 2, 8, 8)), ValueError, ["channels", "(N, 3, H, W)"]),
    (np.zeros((3, 8, 8)), ValueError, ["x must be 4-D", "(3, 8, 8)"]),
    (np.zeros((2, 3, 2, 2)), ValueError, ["does not fit", "3x3"]),
    (np.zeros((2, 3, 8, 8), dtype=bool), TypeError, ["x", "integer or float", "bool"]),
    (np.empty((2, 3, 8, 8), dtype=object), TypeError, ["x", "object"]),
])
def test_convolution_rejects_bad_input_and_keeps_state(x, error, words):
    conv = fresh_conv()
    good = rng.standard_normal((1, 3, 5, 5))
    conv.forward(good)
    saved_x, saved_ctx = conv.x, conv.ctx
    with pytest.raises(error) as info:
        conv.forward(x)
    for word in words:
        assert word in str(info.value)
    assert conv.x is saved_x and conv.ctx is saved_ctx


def test_convolution_rejects_dout_of_the_wrong_shape():
    conv = fresh_conv()
    conv.forward(rng.standard_normal((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 4, 3, 3\)"):
        conv.backward(np.ones((2, 4, 3, 4)))
    assert conv.dW is None


def test_other_layers_name_the_bad_argument():
    with pytest.raises(ValueError, match="W expects 12"):
        Affine(np.zeros((12, 3)), np.zeros(3)).forward(np.zeros((2, 13)))
    with pytest.raises(ValueError, match="pool window of 3x3 does not fit"):
        Pooling(3, 3).forward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="pad must be smaller"):
        Pooling(2, 2, pad=2).forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(TypeError, match="stride must be an integer"):
        Convolution(np.zeros((1, 1, 2, 2)), np.zeros(1), stride=1.5).forward(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"t must be labels of shape \(2,\)"):
        SoftmaxWithLoss().forward(np.zeros((2, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"t labels must lie in \[0, 3\)"):
        SoftmaxWithLoss().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="gamma has 4"):
        BatchNormalization(np.ones(4), np.zeros(4)).forward(np.zeros((2, 5)))
    for layer in (Relu(), Sigmoid(), Dropout()):
        with pytest.raises(TypeError, match=r"x must be a real numeric array \(integer or "
                                            r"float\); got dtype complex128"):
            layer.forward(np.zeros(3, dtype=complex))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.float16])
def test_elementwise_layers_take_integers_and_float16_as_the_book_does(dtype):
    # the book's NumPy arithmetic, in the dtypes NumPy gives (a notebook's Relu on a small
    # integer array); their backward passes take a float dout
    x = np.array([[1, 0, 3], [2, 5, 1]], dtype=dtype)
    if dtype != np.uint8:
        x[0, 1], x[1, 2] = -2, -1
    relu, sigmoid, dropout = Relu(), Sigmoid(), Dropout(0.4)
    out = relu.forward(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.where(x <= 0, 0, x))
    dout = np.ones(x.shape)
    np.testing.assert_array_equal(relu.backward(dout.copy()), (x > 0).astype(float))
    with np.errstate(over="ignore"):  # -x of uint8 wraps, as in the book
        s = sigmoid.forward(x)
        book = 1 / (1 + np.exp(-x))
    assert s.dtype == book.dtype
    np.testing.assert_array_equal(s, book)
    np.testing.assert_array_equal(sigmoid.backward(dout), dout * (1.0 - book) * book)
    np.random.seed(3)
    kept = dropout.forward(x)
    np.random.seed(3)
    mask = np.random.rand(*x.shape) > 0.4
    assert kept.dtype == (x * mask).dtype
    np.testing.assert_array_equal(kept, x * mask)
    np.testing.assert_array_equal(dropout.backward(dout), dout * mask)
    scaled = dropout.forward(x, train_flg=False)
    assert scaled.dtype == (x * (1.0 - 0.4)).dtype
    np.testing.assert_array_equal(scaled, x * (1.0 - 0.4))


def test_batch_norm_running_statistics_follow_the_books_momentum():
    # the book: running = momentum * running + (1 - momentum) * the batch's mean and var
    rng = np.random.default_rng(21)
    layer = BatchNormalization(np.ones(4), np.zeros(4), momentum=0.8)
    batches = [rng.standard_normal((16, 4)) * 3 + 1 for _ in range(3)]
    mean, var = np.zeros(4), np.zeros(4)
    for x in batches:
        layer.forward(x, train_flg=True)
        mean = 0.8 * mean + 0.2 * x.mean(axis=0)
        var = 0.8 * var + 0.2 * x.var(axis=0)
        np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, var, rtol=1e-12)
    before = (layer.running_mean.copy(), layer.running_var.copy())
    layer.forward(batches[0], train_flg=False)  # inference reads them and leaves them
    np.testing.assert_array_equal(layer.running_mean, before[0])
    np.testing.assert_array_equal(layer.running_var, before[1])


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_adds_the_books_eps_to_the_variance(name, dtype):
    """The book's BatchNormalization divides by sqrt(var + 10e-7), 10e-7 being 1e-6. On
    columns whose variance is of that order the eps is not rounding noise: with variances 1e-6
    and 4e-6 the normalized values are 1e-3 / sqrt(2e-6) = 0.707 and 2e-3 / sqrt(5e-6) =
    0.894 (with 1e-7 they would be 0.953 and 0.976), in training and at inference."""
    x = np.array([[-1e-3, -2e-3], [1e-3, 2e-3]], dtype)
    gamma, beta = np.array([2.0, 1.0], dtype), np.array([0.5, -0.5], dtype)
    with backend(name):
        layer = BatchNormalization(gamma, beta, momentum=0.0)
        out = layer.forward(x, train_flg=True)
        xn = np.array([1e-3 / np.sqrt(2e-6), 2e-3 / np.sqrt(5e-6)])
        want = np.array([-1.0, 1.0])[:, None] * xn * gamma.astype(np.float64) + beta
        assert out.dtype == dtype
        # float32: x itself is 1e-3 rounded to float32, so ~1e-7 relative
        np.testing.assert_allclose(out, want, rtol=1e-5)
        # momentum 0: the running statistics are this batch's, the same division at inference
        np.testing.assert_allclose(layer.forward(x, train_flg=False), want, rtol=1e-5)
