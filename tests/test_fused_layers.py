"""A Convolution -> Relu (-> Pooling) block gives the numbers of the three layers run in turn."""
import numpy as np
import pytest

from fastconv.backend import using_backend
from fastconv.layers import Convolution, Pooling, Relu
from fastconv.layers.fused import ConvReluBlock, fuse


def tolerance(dtype):
    """A fused path against the layers run one by one: the same arithmetic, summed in
    another order (values of order 1 to 100 here, so an absolute term for those near 0)."""
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12,
                                                                      "atol": 1e-12}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("with_pool", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_matches_the_layers(backend, with_pool, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 9, 8)).astype(dtype)
    W = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)

    def layers():
        chain = [Convolution(W, b, stride=1, pad=1), Relu()]
        return chain + [Pooling(2, 2, stride=2, pad=1)] if with_pool else chain

    with using_backend(backend):
        separate = layers()
        y = x
        for layer in separate:
            y = layer.forward(y)
        dout = rng.standard_normal(y.shape).astype(dtype)
        dx = dout.copy()
        for layer in reversed(separate):
            dx = layer.backward(dx)

        fused_layers = layers()
        (block,) = fuse(fused_layers)
        assert isinstance(block, ConvReluBlock)
        y_block = block.forward(x)
        dx_block = block.backward(dout.copy())

    tol = tolerance(dtype)
    np.testing.assert_allclose(y_block, y, **tol)
    np.testing.assert_allclose(dx_block, dx, **tol)
    np.testing.assert_allclose(fused_layers[0].dW, separate[0].dW, **tol)
    np.testing.assert_allclose(fused_layers[0].db, separate[0].db, **tol)
    assert y_block.dtype == dx_block.dtype == fused_layers[0].dW.dtype == dtype
    if with_pool:
        np.testing.assert_array_equal(fused_layers[2].argmax, separate[2].argmax)
    assert fused_layers[0].col.shape == separate[0].col.shape


def test_fuse_groups_only_conv_relu_runs():
    conv = lambda: Convolution(np.zeros((1, 1, 1, 1)), np.zeros(1))
    layers = [conv(), Relu(), Pooling(2, 2), conv(), Relu(), conv(), Pooling(2, 2), Relu()]
    steps = fuse(layers)
    assert [type(s).__name__ for s in steps] == [
        "ConvReluBlock", "ConvReluBlock", "Convolution", "Pooling", "Relu"]
    assert steps[0].pool is layers[2] and steps[1].pool is None


def test_block_rejects_bad_input_before_changing_state():
    conv = Convolution(np.ones((2, 3, 3, 3)), np.zeros(2))
    block = ConvReluBlock(conv, Relu(), Pooling(2, 2))
    with pytest.raises(ValueError, match="channels"):
        block.forward(np.zeros((1, 2, 6, 6)))
    assert conv.x is None and block.out is None


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("with_pool", [False, True])
@pytest.mark.parametrize("with_argmax", [False, True])
def test_layers_walked_backward_by_hand_after_a_fused_forward(backend, with_pool, with_argmax):
    # the book's gradient methods call backward on each layer in turn; after a block's fused
    # forward the Relu and Pooling re-run their forward passes unfused first
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 8, 8))
    W = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)

    def layers():
        chain = [Convolution(W, b, stride=1, pad=1), Relu()]
        return chain + [Pooling(2, 2, stride=2)] if with_pool else chain

    with using_backend(backend):
        separate = layers()
        y = x
        for layer in separate:
            y = layer.forward(y)
        dout = rng.standard_normal(y.shape)
        dx = dout.copy()
        for layer in reversed(separate):
            dx = layer.backward(dx)

        by_hand = layers()
        (block,) = fuse(by_hand)
        y_block = block.forward(x, with_argmax=with_argmax)
        assert by_hand[1].mask is None  # the fused pass made no mask
        dx_hand = dout.copy()
        for layer in reversed(by_hand):
            dx_hand = layer.backward(dx_hand)

    np.testing.assert_allclose(y_block, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_hand, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(by_hand[0].dW, separate[0].dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(by_hand[0].db, separate[0].db, rtol=1e-12, atol=1e-12)
    assert by_hand[1].fused_block is None  # its state is now its own forward's


def test_block_backward_after_an_inference_forward_is_refused():
    conv = Convolution(np.ones((2, 1, 3, 3)), np.zeros(2))
    block = ConvReluBlock(conv, Relu(), Pooling(2, 2))
    out = block.forward(np.ones((1, 1, 6, 6)), with_argmax=False)
    assert block.pool.argmax is None
    with pytest.raises(RuntimeError, match="argmax"):
        block.backward(np.ones_like(out))


def test_relu_and_pooling_backward_before_forward_say_so():
    with pytest.raises(RuntimeError, match="before forward"):
        Relu().backward(np.ones(3))
    with pytest.raises(RuntimeError, match="before forward"):
        Pooling(2, 2).backward(np.ones((1, 1, 2, 2)))
