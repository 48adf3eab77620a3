"""BlockChain: consecutive conv blocks and the affine layer after them, run as one pass over
each part of the batch, against the same layers run one after another."""
import numba
import numpy as np
import pytest

from fastconv import using_backend
from fastconv.layers import Affine, Convolution, Pooling, Relu
from fastconv.layers.chain import BlockChain, chain
from fastconv.layers.fused import ConvReluBlock, fuse

from conftest import tolerance


def layers(dtype, rng, affine_weights=None):
    """conv 2->8 (im2col), relu, conv 8->8 (Winograd), relu, pool, affine: DeepConvNet's
    pattern at a small size."""
    W1 = rng.standard_normal((8, 2, 3, 3)) / 4
    W2 = rng.standard_normal((8, 8, 3, 3)) / 8
    A = rng.standard_normal((8 * 4 * 4, 5)) / 11 if affine_weights is None else affine_weights
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
    return [Convolution(cast(W1), cast(rng.standard_normal(8) / 10), 1, 1), Relu(),
            Convolution(cast(W2), cast(rng.standard_normal(8) / 10), 1, 1), Relu(),
            Pooling(2, 2, 2), Affine(cast(A), cast(rng.standard_normal(5)))]


def two_copies(dtype, seed=0, **kwargs):
    """The same layers twice: (as a chain, as steps run one after another)."""
    chained = chain(fuse(layers(dtype, np.random.default_rng(seed), **kwargs)))
    separate = fuse(layers(dtype, np.random.default_rng(seed), **kwargs))
    assert len(chained) == 1 and isinstance(chained[0], BlockChain)
    return chained[0], separate


def run_separately(steps, x, with_argmax=True):
    for step in steps:
        x = step.forward(x, with_argmax) if isinstance(step, ConvReluBlock) else step.forward(x)
    return x


def backward_separately(steps, dout):
    for step in reversed(steps):
        dout = step.backward(dout)
    return dout


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_argmax", [True, False])
def test_chain_matches_its_steps_one_after_another(backend, dtype, with_argmax):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 2, 8, 8)).astype(dtype)
    dout = rng.standard_normal((7, 5)).astype(dtype)
    tol = tolerance(dtype)
    with using_backend(backend):
        whole, steps = two_copies(dtype)
        got, want = whole.forward(x, with_argmax), run_separately(steps, x, with_argmax)
        assert got.dtype == dtype and got.shape == (7, 5)
        np.testing.assert_allclose(got, want, **tol)
        for mine, theirs in zip(whole.blocks, steps):
            np.testing.assert_array_equal(mine.out, theirs.out)
            np.testing.assert_array_equal(mine.conv.x, theirs.conv.x)
            if with_argmax:
                np.testing.assert_array_equal(mine.pool and mine.pool.argmax,
                                              theirs.pool and theirs.pool.argmax)
        np.testing.assert_array_equal(whole.affine.x, steps[-1].x)
        assert whole.affine.original_x_shape == steps[-1].original_x_shape == (7, 8, 4, 4)
        if not with_argmax:
            return
        dx, want_dx = whole.backward(dout.copy()), backward_separately(steps, dout.copy())
        np.testing.assert_allclose(dx, want_dx, **tol)
        for mine, theirs in zip(whole.steps, [s.conv if isinstance(s, ConvReluBlock) else s
                                              for s in steps]):
            layer = mine.conv if isinstance(mine, ConvReluBlock) else mine
            assert layer.dW.dtype == layer.db.dtype == dtype
            np.testing.assert_allclose(layer.dW, theirs.dW, **tol)
            np.testing.assert_allclose(layer.db, theirs.db, **tol)


def test_a_network_step_hands_over_once_forward_and_once_backward(monkeypatch):
    # the point of the chain: DeepConvNet's 6 blocks and first affine layer hand their parts
    # to the pool thread twice a step, where they did 13 times
    from fastconv.kernels.jit import gemm
    from fastconv.nets import DeepConvNet
    if gemm.PARTS < 2 or numba.get_num_threads() < 2:
        pytest.skip("needs 2 parts and 2 Numba threads")
    np.random.seed(0)
    net = DeepConvNet(dtype=np.float32)
    rng = np.random.default_rng(0)
    x, t = rng.random((20, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 20)
    net.gradient(x, t)  # compiles; not counted
    monkeypatch.setattr(gemm, "handoff_log", [])
    net.gradient(x, t)
    assert len(gemm.handoff_log) == 2


def test_chain_groups_runs_of_blocks_and_the_affine_layer_after_them():
    rng = np.random.default_rng(2)
    W = lambda: rng.standard_normal((2, 2, 3, 3))  # noqa: E731
    block = lambda: [Convolution(W(), np.zeros(2), 1, 1), Relu()]  # noqa: E731

    class MyAffine(Affine):
        pass

    lone = fuse(block() + [Relu()])
    assert chain(lone) == lone  # one block with no affine layer after it stays a block
    two = chain(fuse(block() + block() + [Relu()]))
    assert isinstance(two[0], BlockChain) and two[0].affine is None and len(two) == 2
    with_affine = chain(fuse(block() + [Affine(np.ones((8, 2)), np.zeros(2))]))
    assert len(with_affine) == 1 and isinstance(with_affine[0].affine, Affine)
    subclass = fuse(block() + [MyAffine(np.ones((8, 2)), np.zeros(2))])
    assert chain(subclass) == subclass  # a subclass keeps its own methods


def test_unusual_operands_run_the_steps_one_after_another():
    # integer affine weights (the book allows them) compute in float64: not the kernel's
    # usual operands, so the chain makes the separate calls, with their numbers
    rng = np.random.default_rng(3)
    ints = rng.integers(-2, 3, (8 * 4 * 4, 5))
    whole, steps = two_copies(np.float32, affine_weights=ints)
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    got = whole.forward(x)
    np.testing.assert_array_equal(got, run_separately(steps, x))
    assert got.dtype == np.float64 and not whole._chained
    dout = rng.standard_normal(got.shape)
    np.testing.assert_array_equal(whole.backward(dout.copy()),
                                  backward_separately(steps, dout.copy()))
    np.testing.assert_array_equal(whole.affine.dW, steps[-1].dW)


def test_an_inner_layer_without_input_gradient_backpropagates_as_its_steps_do():
    # nonsense, but a script's to set: the steps' own backward passes then decide
    rng = np.random.default_rng(4)
    whole, steps = two_copies(np.float64)
    x = rng.standard_normal((3, 2, 8, 8))
    whole.forward(x)
    run_separately(steps, x)
    whole.blocks[1].conv.need_input_grad = steps[1].conv.need_input_grad = False
    dout = rng.standard_normal((3, 5))
    with pytest.raises(TypeError) as want:
        backward_separately(steps, dout)
    with pytest.raises(TypeError) as got:
        whole.backward(dout)
    assert str(got.value) == str(want.value)


def test_the_first_layer_without_input_gradient_returns_none():
    rng = np.random.default_rng(5)
    whole, steps = two_copies(np.float32)
    whole.blocks[0].conv.need_input_grad = steps[0].conv.need_input_grad = False
    x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
    whole.forward(x)
    run_separately(steps, x)
    dout = rng.standard_normal((4, 5)).astype(np.float32)
    assert whole.backward(dout) is None and backward_separately(steps, dout) is None
    np.testing.assert_allclose(whole.blocks[0].conv.dW, steps[0].conv.dW,
                               **tolerance(np.float32))
