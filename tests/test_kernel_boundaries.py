"""Every jit kernel, reached through the layer (or function) that calls it, with shapes that
do not fit together: the layer must raise a clear error naming the argument, before the
kernel reads past an array's end, and change nothing.

The compiled loops trust the shapes they are given (without NUMBA_BOUNDSCHECK they read
whatever memory follows a short array). The kernels check their arguments themselves
(kernels/jit/contracts.py, tests/test_kernel_contracts.py), but a layer checks first, so that
its error names its own attribute: at every call, since a script may replace an attribute
(``pool.pool_w = 0``, a new ``W``) between forward and backward.
"""
import copy
import importlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv import optimizer as fopt
from fastconv import util
from fastconv.layers import (Affine, BatchNormalization, Convolution, Pooling, Relu,
                             SoftmaxWithLoss)
from fastconv.layers.chain import chain
from fastconv.layers.fused import ConvReluBlock, fuse

rng = np.random.default_rng(5)

JIT_MODULES = ("conv", "pool", "elementwise", "optim", "fused", "normalization")
NOT_KERNELS = {"blas_scope"}  # a context manager the jit package exports alongside


def jit_kernels():
    names = set()
    for module in JIT_MODULES:
        names |= set(importlib.import_module(f"fastconv.kernels.jit.{module}").__all__)
    return names - NOT_KERNELS


def conv_layer(FN=3, C=2, F=3):
    return Convolution(rng.standard_normal((FN, C, F, F)), rng.standard_normal(FN))


def x4(N=2, C=2, H=6, W=6):
    return rng.standard_normal((N, C, H, W))


# --- one case per kernel: (setup returning the object whose state must not change, the bad
#     call, the error, a regex the message must match) ------------------------------------

def _im2col():
    return None, lambda _: util.im2col(x4(H=2, W=2), 3, 3), ValueError, "filter of 3x3"


def _col2im():
    return (None, lambda _: util.col2im(np.zeros((7, 18)), (2, 2, 6, 6), 3, 3),
            ValueError, r"col must have shape \(32, 18\)")


def _conv2d_forward():
    conv = conv_layer()
    conv.forward(x4())
    return conv, lambda c: c.forward(x4(C=3)), ValueError, "x has 3 channels"


def _conv2d_backward():
    conv = conv_layer()
    conv.forward(x4())
    conv.W = rng.standard_normal((3, 2, 2, 2))  # a smaller filter, after forward
    return (conv, lambda c: c.backward(np.ones((2, 3, 4, 4))), ValueError,
            r"Convolution\.W\.shape changed")


def _maxpool_forward():
    pool = Pooling(2, 2)
    pool.forward(x4())
    pool.pool_w = 0  # after forward, as a script may
    return pool, lambda p: p.forward(x4()), ValueError, "pool_w must be >= 1"


def _maxpool_backward():
    pool = Pooling(2, 2)
    pool.forward(x4())
    pool.pool_w = 3  # after forward, as a script may
    return (pool, lambda p: p.backward(np.ones((2, 2, 3, 3))), ValueError,
            r"Pooling\.pool_w changed")


def _relu_forward():
    relu = Relu()
    relu.forward(x4())
    return relu, lambda r: r.forward([[1.0, 2.0], [3.0]]), TypeError, "x must be"


def _relu_backward():
    relu = Relu()
    relu.forward(x4())
    return (relu, lambda r: r.backward(np.ones((2, 2, 6, 5))), ValueError,
            "dout must have shape")


def _affine_forward():
    affine = Affine(rng.standard_normal((6, 4)), rng.standard_normal(5))
    return (affine, lambda a: a.forward(rng.standard_normal((2, 6))), ValueError,
            r"b must .*\(4,\)")


def _affine_backward():
    affine = Affine(rng.standard_normal((6, 4)), rng.standard_normal(4))
    affine.forward(rng.standard_normal((2, 6)))
    affine.W = rng.standard_normal((5, 4))  # after forward, as a script may
    return affine, lambda a: a.backward(np.ones((2, 4))), ValueError, r"W has shape \(5, 4\)"


def _softmax_forward():
    return (SoftmaxWithLoss(), lambda s: s.forward(np.zeros((3, 4)), np.array([0, 1])),
            ValueError, r"t must be labels of shape \(3,\)")


def _softmax_backward():
    loss = SoftmaxWithLoss()
    loss.forward(np.zeros((3, 4)), np.array([0, 1, 2]))
    return loss, lambda s: s.backward(np.ones(3)), TypeError, "dout must be a real number"


def _weight_decay_gradient():
    from fastconv.nets import MultiLayerNet
    net = MultiLayerNet(4, [3], 2, weight_decay_lambda=0.1)
    x, t = rng.standard_normal((2, 4)), np.array([0, 1])
    net.gradient(x, t)
    net.params["W1"] = np.ones((3, 3))  # a new array in params alone, as a script may
    return (net, lambda n: n.gradient(x, t), ValueError,
            r"params\['W1'\] has shape \(3, 3\), but .* weights of shape \(4, 3\)")


def _optimizer_case(name):
    def case():
        opt = getattr(fopt, name)()
        params = {"W": np.ones((3, 2))}
        opt.update(params, {"W": np.ones((3, 2))})
        holder = {"opt": opt, "params": params}

        def bad(h):
            h["opt"].update(h["params"], {"W": np.ones((2, 3))})
        return holder, bad, ValueError, r"grads\['W'\] has shape \(2, 3\)"
    return case


def _block(pool):
    return ConvReluBlock(conv_layer(), Relu(), Pooling(2, 2) if pool else None)


def _conv_relu_forward():
    block = _block(False)
    return block, lambda b: b.forward(x4(C=1)), ValueError, "x has 1 channels"


def _conv_relu_backward():
    block = _block(False)
    block.forward(x4())
    block.conv.pad = 1  # after forward, as a script may
    return (block, lambda b: b.backward(np.ones((2, 3, 4, 4))), ValueError,
            r"Convolution\.pad changed")


def _conv_relu_pool_forward():
    block = _block(True)
    return (block, lambda b: b.forward(x4(H=3, W=3)), ValueError,
            "pool window of 2x2 does not fit")


def _conv_relu_pool_backward():
    block = _block(True)
    block.forward(x4())
    block.pool.pool_w = 0  # after forward, as a script may
    return (block, lambda b: b.backward(np.ones((2, 3, 2, 2))), ValueError,
            r"Pooling\.pool_w changed")


def _chain():
    """Two blocks (3 then 4 filters, the second pooled) and an affine layer, as a chain."""
    steps = [conv_layer(), Relu(), conv_layer(FN=4, C=3), Relu(), Pooling(2, 2),
             Affine(rng.standard_normal((4 * 1 * 1, 2)), np.zeros(2))]
    (whole,) = chain(fuse(steps))
    return whole


def _conv_blocks_forward():
    whole = _chain()
    whole.blocks[1].conv.W = rng.standard_normal((4, 5, 3, 3))  # 5 channels, where 3 come
    # the second block's input is made inside the chain: refused before the first block runs
    return whole, lambda c: c.forward(x4()), ValueError, "x has 3 channels"


def _conv_blocks_backward():
    whole = _chain()
    whole.forward(x4())
    whole.blocks[1].pool.stride = 1  # after forward, as a script may
    return (whole, lambda c: c.backward(np.ones((2, 2))), ValueError,
            r"Pooling\.stride changed")


def _batchnorm_forward():
    # issue 15: gamma of 6 entries, beta of 2 read past beta's end
    bn = BatchNormalization(np.ones(6), np.zeros(2))
    return bn, lambda b: b.forward(rng.standard_normal((4, 6))), ValueError, "beta has 2"


def _batchnorm_backward():
    bn = BatchNormalization(np.ones(6), np.zeros(6))
    bn.forward(rng.standard_normal((4, 6)))
    bn.gamma = np.ones(4)  # after forward, as a script may
    return bn, lambda b: b.backward(np.ones((4, 6))), ValueError, "gamma has 4 entries"


CASES = {
    "im2col": _im2col, "col2im": _col2im,
    "conv2d_forward": _conv2d_forward, "conv2d_backward": _conv2d_backward,
    "maxpool_forward": _maxpool_forward, "maxpool_backward": _maxpool_backward,
    "relu_forward": _relu_forward, "relu_backward": _relu_backward,
    "affine_forward": _affine_forward, "affine_backward": _affine_backward,
    "softmax_cross_entropy_forward": _softmax_forward,
    "softmax_cross_entropy_backward": _softmax_backward,
    "sgd_update": _optimizer_case("SGD"), "momentum_update": _optimizer_case("Momentum"),
    "nesterov_update": _optimizer_case("Nesterov"), "adagrad_update": _optimizer_case("AdaGrad"),
    "rmsprop_update": _optimizer_case("RMSprop"), "adam_update": _optimizer_case("Adam"),
    "conv_relu_forward": _conv_relu_forward, "conv_relu_backward": _conv_relu_backward,
    "conv_relu_pool_forward": _conv_relu_pool_forward,
    "conv_relu_pool_backward": _conv_relu_pool_backward,
    "conv_blocks_forward": _conv_blocks_forward, "conv_blocks_backward": _conv_blocks_backward,
    "batchnorm_forward": _batchnorm_forward, "batchnorm_backward": _batchnorm_backward,
    "weight_decay_gradient": _weight_decay_gradient,
}


def test_every_jit_kernel_has_a_case():
    assert set(CASES) == jit_kernels()


def _state(obj):
    """Everything a layer (or optimizer and params) holds, as a comparable deep copy."""
    return copy.deepcopy(obj if isinstance(obj, dict) or obj is None else vars(obj))


def _assert_same(a, b, where="", seen=None):
    seen = set() if seen is None else seen
    if id(a) in seen:  # a block and its pool refer to each other
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}", seen)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (item_a, item_b) in enumerate(zip(a, b)):
            _assert_same(item_a, item_b, f"{where}[{i}]", seen)
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        seen.add(id(a))
        _assert_same(vars(a), vars(b), where, seen)
    else:
        assert a == b or (a != a and b != b), where


@pytest.mark.parametrize("kernel", sorted(CASES))
def test_inconsistent_shapes_raise_at_the_layer_and_change_nothing(kernel):
    obj, bad, error, words = CASES[kernel]()
    before = _state(obj)
    with pytest.raises(error, match=words):
        bad(obj)
    _assert_same(_state(obj), before)


@settings(max_examples=20, deadline=None)
@given(gamma=st.integers(1, 9), beta=st.integers(1, 9), mean=st.integers(1, 9),
       features=st.integers(1, 9))
def test_batchnorm_sizes_must_all_match_the_features(gamma, beta, mean, features):
    bn = BatchNormalization(np.ones(gamma), np.zeros(beta), running_mean=np.zeros(mean),
                            running_var=np.ones(mean))
    x = rng.standard_normal((3, features))
    if gamma == beta == mean == features:
        assert bn.forward(x).shape == x.shape
        return
    with pytest.raises(ValueError, match=r"(gamma|beta|running_mean) has \d"):
        bn.forward(x)
    assert bn.xc is None and bn.input_shape is None and bn.running_mean.shape == (mean,)


@settings(max_examples=20, deadline=None)
@given(attr=st.sampled_from(["pool_h", "pool_w", "stride", "pad"]),
       value=st.one_of(st.integers(-2, 4), st.floats(0.5, 3.5), st.just(2.0), st.none()))
def test_pooling_attributes_set_after_forward_are_checked_in_backward(attr, value):
    pool = Pooling(2, 2)
    x = x4()
    out = pool.forward(x)
    setattr(pool, attr, value)
    if value == {"pool_h": 2, "pool_w": 2, "stride": 2, "pad": 0}[attr] \
            and type(value) is int:
        assert pool.backward(np.ones_like(out)).shape == x.shape
        return
    with pytest.raises(ValueError, match=f"Pooling.{attr} changed"):
        pool.backward(np.ones_like(out))
