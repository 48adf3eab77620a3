"""A layer's state edited by a script between forward and backward: each backward pass either
refuses it with an error that names it, or (a window index outside its window) routes no
gradient, as the NumPy twin does.

Before these checks some of the edits crashed the process (segfault, heap corruption), so
these cases run in a child process with a time limit (``test_edited_state.py``), where a
crash or a hang fails one test instead of the whole suite. Not collected by itself (the
name does not start with test_)."""
import numpy as np
import pytest

from fastconv.backend import using_backend
from fastconv.layers import (Affine, BatchNormalization, Convolution, Pooling, Relu,
                             SoftmaxWithLoss)
from fastconv.layers.fused import ConvReluBlock


def _pooled_block(C, H, dtype, pool):
    """A fused conv -> relu -> pool block and an input; C >= 8 with 3x3 filters runs by
    Winograd (pipeline.WINOGRAD_MIN_CHANNELS), fewer channels by im2col."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, C, H, H)).astype(dtype)
    W = rng.standard_normal((6, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return ConvReluBlock(Convolution(W, b, stride=1, pad=1), Relu(), Pooling(*pool)), x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [2, 8])  # im2col, Winograd
@pytest.mark.parametrize("pool", [(2, 2, 2, 0), (3, 3, 2, 1)])
def test_window_indices_outside_the_window_route_no_gradient(dtype, channels, pool):
    """An argmax changed by hand between forward and backward (the attribute is public) may
    hold any integer. Each backend then routes the gradient of an index that names no cell of
    its window nowhere, as the NumPy twin does, and never writes outside its arrays."""
    grads = {}
    for backend in ("numpy", "numba"):
        with using_backend(backend):
            block, x = _pooled_block(channels, 12, dtype, pool)
            out = block.forward(x)
            cells = pool[0] * pool[1]
            argmax = block.pool.argmax
            argmax.flat[::3] = cells  # one past the last cell
            argmax.flat[1::7] = -1
            argmax.flat[2::11] = 1 << 40
            dout = np.random.default_rng(5).standard_normal(out.shape).astype(dtype)
            dx = block.backward(dout)
            grads[backend] = (dx, block.conv.dW, block.conv.db)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for fused, twin in zip(grads["numba"], grads["numpy"]):
        np.testing.assert_allclose(fused, twin, **tol)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_unfused_pooling_routes_no_gradient_for_indices_outside_the_window(backend):
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float64).reshape(2, 1, 6, 6)
    with using_backend(backend):
        pool = Pooling(2, 2, stride=2)
        pool.forward(x)
        pool.argmax[0, 0, 0, 0] = 4
        pool.argmax[0, 0, 0, 1] = -3
        pool.argmax[1, 0, 2, 2] = 7
        dx = pool.backward(np.ones((2, 1, 3, 3)))
    assert dx.sum() == 18 - 3  # every other window passes one gradient, to its maximum
    assert dx[0, 0, 1, 1] == 0 and dx[0, 0, 1, 3] == 0 and dx[1, 0, 5, 5] == 0


@pytest.mark.parametrize("replace", [
    lambda a: a[:, :, :-1], lambda a: a[:1], lambda a: a.astype(np.float64),
    lambda a: a.reshape(-1)])
def test_block_backward_refuses_an_argmax_of_another_shape_or_type(replace):
    block, x = _pooled_block(2, 8, np.float64, (2, 2, 2, 0))
    out = block.forward(x)
    block.pool.argmax = replace(block.pool.argmax)
    with pytest.raises(ValueError, match="argmax"):
        block.backward(np.ones_like(out))
    assert block.conv.dW is None


@pytest.mark.parametrize("replace", [
    lambda a: a[:, :, :-1], lambda a: a.astype(np.float32), lambda a: a[:1]])
def test_pooling_backward_refuses_an_argmax_of_another_shape_or_type(replace):
    pool = Pooling(2, 2, stride=2)
    out = pool.forward(np.ones((2, 3, 6, 6)))
    pool.argmax = replace(pool.argmax)
    with pytest.raises(ValueError, match="argmax"):
        pool.backward(np.ones_like(out))


def _softmax_after_forward():
    layer = SoftmaxWithLoss()
    layer.forward(np.random.default_rng(0).standard_normal((4, 5)), np.array([0, 1, 4, 2]))
    return layer


def _batchnorm_after_forward():
    layer = BatchNormalization(np.ones(5), np.zeros(5))
    layer.forward(np.random.default_rng(0).standard_normal((4, 5)))
    return layer


def _affine_after_forward():
    layer = Affine(np.ones((5, 3)), np.zeros(3))
    layer.forward(np.random.default_rng(0).standard_normal((4, 5)))
    return layer


def _relu_after_forward():
    layer = Relu()
    layer.forward(np.random.default_rng(0).standard_normal((4, 5)))
    return layer


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("make, name, replace, dout", [
    (_softmax_after_forward, "y", lambda y: np.vstack([y] * 3), 1),
    (_softmax_after_forward, "y", lambda y: np.zeros((4, 1)), 1),
    (_softmax_after_forward, "y", lambda y: y[:2].copy(), 1),
    (_softmax_after_forward, "y", lambda y: (y * 10).astype(int), 1),
    (_batchnorm_after_forward, "std", lambda a: a[:3].copy(), np.ones((4, 5))),
    (_batchnorm_after_forward, "std", lambda a: np.zeros(0), np.ones((4, 5))),
    (_batchnorm_after_forward, "xn", lambda a: a[:, :2].copy(), np.ones((4, 5))),
    (_batchnorm_after_forward, "xn", lambda a: a[:2].copy(), np.ones((4, 5))),
    (_batchnorm_after_forward, "xc", lambda a: a.astype(np.int64), np.ones((4, 5))),
    # backward cast dout to x's dtype: an integer x truncated every gradient to 0
    (_affine_after_forward, "x", lambda a: a.astype(np.int64), np.full((4, 3), 0.4)),
    (_affine_after_forward, "x", lambda a: a.tolist(), np.full((4, 3), 0.4)),
    (_affine_after_forward, "x", lambda a: a[:2].copy(), np.full((4, 3), 0.4)),
    # (dW and db were set before dx's reshape failed in NumPy's words)
    (_affine_after_forward, "original_x_shape", lambda a: (2, 10), np.full((4, 3), 0.4)),
    (_affine_after_forward, "original_x_shape", lambda a: None, np.full((4, 3), 0.4)),
    (_relu_after_forward, "mask", lambda a: a.tolist(), np.ones((4, 5))),
])
def test_state_replaced_between_forward_and_backward_is_refused(backend, make, name,
                                                                 replace, dout):
    """The arrays a forward pass leaves are public attributes; the kernels index them by the
    forward's shapes, so a backward pass must refuse any other (it crashed the process)."""
    with using_backend(backend):
        layer = make()
        setattr(layer, name, replace(getattr(layer, name)))
        with pytest.raises(ValueError, match=rf"{type(layer).__name__}\.{name} must be"):
            layer.backward(dout)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_targets_put_in_place_between_forward_and_backward_are_used_as_the_book_does(backend):
    # the book's backward reads self.t; a t put in its place was ignored without a word
    with using_backend(backend):
        layer = _softmax_after_forward()
        layer.t = np.array([3, 3, 0, 1])
        fresh = SoftmaxWithLoss()
        fresh.forward(np.random.default_rng(0).standard_normal((4, 5)), layer.t)
        np.testing.assert_array_equal(layer.backward(), fresh.backward())
        layer.t = np.eye(5)[[1, 1, 2, 2]]
        np.testing.assert_allclose(layer.backward(), (layer.y - layer.t) / 4, rtol=1e-15)
        layer.t = np.array([0, 9, 1, 1])
        with pytest.raises(ValueError, match=r"t labels must lie in \[0, 5\)"):
            layer.backward()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("with_pool", [False, True])
@pytest.mark.parametrize("replace", [
    lambda x: np.zeros((20000,) + x.shape[1:]), lambda x: x[:, :, :-2, :-2].copy(),
    lambda x: x.astype(np.float32)])
def test_conv_input_replaced_between_forward_and_backward_is_refused(backend, with_pool,
                                                                     replace):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 8))
    conv = Convolution(rng.standard_normal((4, 3, 3, 3)), np.zeros(4), pad=1)
    with using_backend(backend):
        for layer in (conv, ConvReluBlock(conv, Relu(), Pooling(2, 2) if with_pool else None)):
            out = layer.forward(x)
            conv.x = replace(conv.x)
            with pytest.raises(ValueError, match=r"Convolution\.x\.(shape|dtype) changed"):
                layer.backward(np.ones_like(out))


@pytest.mark.parametrize("replace", [lambda a: a.astype(int), lambda a: a.astype(np.float32),
                                     lambda a: a[:1].copy()])
def test_block_output_replaced_between_forward_and_backward_is_refused(replace):
    rng = np.random.default_rng(2)
    block = ConvReluBlock(Convolution(rng.standard_normal((4, 3, 3, 3)), np.zeros(4), pad=1),
                          Relu(), Pooling(2, 2))
    out = block.forward(rng.standard_normal((2, 3, 8, 8)))
    block.out = replace(block.out)
    with pytest.raises(ValueError, match=r"ConvReluBlock\.out must be"):
        block.backward(np.ones_like(out))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("replace", [lambda x: x.astype(np.int64), lambda x: x[:, :, :2].copy(),
                                     lambda x: x.tolist()])
def test_pooling_input_replaced_between_forward_and_backward_is_refused(backend, replace):
    # backward takes dx's shape and dtype from x: an integer x truncated dout to 0
    with using_backend(backend):
        pool = Pooling(2, 2)
        out = pool.forward(np.arange(32.0).reshape(1, 2, 4, 4))
        pool.x = replace(pool.x)
        with pytest.raises(ValueError, match=r"Pooling\.x\.(dtype|shape) changed"):
            pool.backward(np.full(out.shape, 0.4))
