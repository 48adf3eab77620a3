"""Issue 15, item 6: the small gaps a user expects closed, each a clear error (naming the
argument) with no state changed."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.layers import (Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu,
                             Sigmoid, SoftmaxWithLoss)
from fastconv.util import col2im, im2col

rng = np.random.default_rng(11)


def layers_with_inputs():
    """(layer, forward args, a dout of the forward output's shape) for every layer."""
    x4 = rng.standard_normal((2, 2, 6, 6))
    x2 = rng.standard_normal((3, 4))
    return {
        "Relu": (Relu(), (x2,), np.ones((3, 4))),
        "Sigmoid": (Sigmoid(), (x2,), np.ones((3, 4))),
        "Affine": (Affine(rng.standard_normal((4, 5)), np.zeros(5)), (x2,), np.ones((3, 5))),
        "SoftmaxWithLoss": (SoftmaxWithLoss(), (x2, np.array([0, 1, 3])), 1),
        "Dropout": (Dropout(0.5), (x2,), np.ones((3, 4))),
        "BatchNormalization": (BatchNormalization(np.ones(4), np.zeros(4)), (x2,),
                               np.ones((3, 4))),
        "Convolution": (Convolution(rng.standard_normal((3, 2, 3, 3)), np.zeros(3)), (x4,),
                        np.ones((2, 3, 4, 4))),
        "Pooling": (Pooling(2, 2), (x4,), np.ones((2, 2, 3, 3))),
    }


NAMES = sorted(layers_with_inputs())


def assert_same_state(layer, before):
    now = vars(layer)
    assert now.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(now[key], value), key
        else:
            assert now[key] == value or now[key] is value, key


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_is_a_clear_error(name):
    layer, _, dout = layers_with_inputs()[name]
    before = copy.deepcopy(vars(layer))
    with pytest.raises(RuntimeError, match=f"{name}.backward called before forward"):
        layer.backward(dout)
    assert_same_state(layer, before)


@pytest.mark.parametrize("name", NAMES)
def test_backward_after_forward_works(name):
    # the control of the test above: the same dout is accepted once forward ran
    layer, args, dout = layers_with_inputs()[name]
    layer.forward(*args)
    assert np.all(np.isfinite(layer.backward(dout)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
@pytest.mark.parametrize("name", ["Relu", "Sigmoid", "Dropout", "BatchNormalization",
                                  "Affine", "Convolution", "Pooling"])
def test_dout_of_a_non_float_dtype_is_refused(name, dtype):
    layer, args, dout = layers_with_inputs()[name]
    layer.forward(*args)
    before = copy.deepcopy(vars(layer))
    with pytest.raises(TypeError, match="dout must have dtype float32 or float64"):
        layer.backward(np.asarray(dout).astype(dtype))
    assert_same_state(layer, before)


@pytest.mark.parametrize("dout", [None, "1", np.ones(3), [1.0], True, 1j])
def test_softmax_with_loss_backward_takes_a_real_number(dout):
    layer = SoftmaxWithLoss()
    layer.forward(rng.standard_normal((3, 4)), np.array([0, 1, 3]))
    before = copy.deepcopy(vars(layer))
    with pytest.raises(TypeError, match="dout must be a real number"):
        layer.backward(dout)
    assert_same_state(layer, before)
    assert np.array_equal(layer.backward(np.float32(1)), layer.backward())


@pytest.mark.parametrize("layer, args", [
    (Convolution(np.ones((3, 2, 3, 3)), np.zeros(3)), (np.zeros((0, 2, 6, 6)),)),
    (Affine(np.ones((4, 5)), np.zeros(5)), (np.zeros((0, 4)),)),
    (SoftmaxWithLoss(), (np.zeros((0, 4)), np.zeros(0, dtype=int))),
    (BatchNormalization(np.ones(4), np.zeros(4)), (np.zeros((0, 4)),)),
    (Pooling(2, 2), (np.zeros((0, 2, 6, 6)),)),
], ids=["Convolution", "Affine", "SoftmaxWithLoss", "BatchNormalization", "Pooling"])
def test_an_empty_batch_is_a_clear_error(layer, args):
    before = copy.deepcopy(vars(layer))
    with pytest.raises(ValueError, match="x must hold at least one sample"):
        layer.forward(*args)
    assert_same_state(layer, before)


def test_convolution_backward_of_an_empty_batch_is_a_clear_error():
    conv = Convolution(np.ones((3, 2, 3, 3)), np.zeros(3))
    conv.forward(np.ones((1, 2, 6, 6)))
    before = copy.deepcopy(vars(conv))
    with pytest.raises(ValueError, match=r"dout must have shape \(1, 3, 4, 4\)"):
        conv.backward(np.zeros((0, 3, 4, 4)))
    assert_same_state(conv, before)


@pytest.mark.parametrize("W_shape", [(0, 2, 3, 3), (3, 0, 3, 3), (3, 2, 0, 3), (3, 2, 3, 0)])
def test_convolution_filters_with_an_empty_side_are_a_clear_error(W_shape):
    conv = Convolution(np.ones(W_shape), np.zeros(W_shape[0]))
    before = copy.deepcopy(vars(conv))
    with pytest.raises(ValueError, match=r"W must have at least one filter, channel, row and "
                                         r"column \(FN, C, FH, FW\); got shape"):
        conv.forward(np.ones((1, W_shape[1], 6, 6)))
    assert_same_state(conv, before)


@settings(max_examples=30, deadline=None)
@given(ratio=st.one_of(st.floats(allow_nan=True), st.none(), st.text(max_size=3),
                       st.booleans(), st.integers(-3, 3)))
def test_dropout_ratio_must_be_a_number_in_zero_one(ratio):
    ok = (not isinstance(ratio, (bool, str, type(None)))) and 0 <= ratio <= 1
    if ok:
        assert Dropout(ratio).dropout_ratio == ratio
        return
    with pytest.raises((TypeError, ValueError), match="dropout_ratio"):
        Dropout(ratio)
    # set after construction: refused before a mask is drawn
    layer = Dropout(0.5)
    layer.dropout_ratio = ratio
    state = np.random.get_state()[1].copy()
    with pytest.raises((TypeError, ValueError), match="dropout_ratio"):
        layer.forward(np.ones((2, 3)))
    assert layer.mask is None and np.array_equal(np.random.get_state()[1], state)


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, 3),
       value=st.one_of(st.floats(0.1, 9.9).filter(lambda v: v != int(v)),
                       st.just("4"), st.none(), st.just(True)))
def test_col2im_input_shape_entries_must_be_integers(position, value):
    shape = [2, 3, 6, 6]
    shape[position] = value
    with pytest.raises(TypeError, match=rf"input_shape\[{position}\] must be an integer"):
        col2im(np.zeros((32, 27)), tuple(shape), 3, 3)
    assert col2im(np.zeros((32, 27)), (2, 3, 6, 6), 3, 3).shape == (2, 3, 6, 6)


def _big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


@pytest.mark.parametrize("make, x_shape, extra", [
    (lambda rng: Relu(), (4, 5), ()),
    (lambda rng: Affine(rng.standard_normal((5, 3)), np.zeros(3)), (4, 5), ()),
    (lambda rng: Pooling(2, 2), (2, 3, 6, 6), ()),
    (lambda rng: Convolution(rng.standard_normal((4, 3, 3, 3)), np.zeros(4), pad=1),
     (2, 3, 6, 6), ()),
    (lambda rng: BatchNormalization(np.ones(5), np.zeros(5)), (4, 5), ()),
    (lambda rng: SoftmaxWithLoss(), (4, 5), (np.array([0, 1, 4, 2]),)),
])
def test_big_endian_input_computes_as_native(make, x_shape, extra):
    """Data read from a big-endian file (np.dtype('>f8')) goes through the compiled kernels,
    which take only the machine's byte order, with NumPy's numbers."""
    x = np.random.default_rng(4).standard_normal(x_shape)
    results = []
    for data in (x, _big_endian(x)):
        layer = make(np.random.default_rng(5))
        out = layer.forward(data, *extra)
        dx = layer.backward(np.ones_like(out) if np.ndim(out) else 1)
        results.append((out, dx))
    for native, swapped in zip(*results):
        np.testing.assert_array_equal(swapped, native)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_im2col_of_no_images_is_refused_in_both_backends(backend):
    # the jit kernel returned an empty matrix, the book's reshape (the twin) failed in NumPy's
    # words; col2im refused an input_shape of no images already
    from fastconv import using_backend
    with using_backend(backend), pytest.raises(ValueError,
                                               match="input_data must hold at least one sample"):
        im2col(np.zeros((0, 3, 6, 6)), 3, 3)
