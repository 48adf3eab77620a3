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


# ---- the book's plain functions: NumPy's failures raised again naming the argument --------

def _probe(rows=2, classes=3):
    y = np.full((rows, classes), 1.0 / classes)
    return y, np.arange(rows) % classes


@pytest.mark.parametrize("call, error, words", [
    (lambda F, U: F.softmax(None), TypeError, "softmax: x must be a real number or a NumPy array"),
    (lambda F, U: F.sigmoid("a"), TypeError, "sigmoid: x must be"),
    (lambda F, U: F.sigmoid_grad(None), TypeError, "sigmoid: x must be"),
    (lambda F, U: F.relu_grad([1.0, -1.0]), TypeError, "relu_grad: x must be .*got list"),
    (lambda F, U: F.step_function(np.array(["a"])), TypeError, "step_function: x must hold real"),
    (lambda F, U: F.cross_entropy_error(_probe()[0], None), TypeError,
     "cross_entropy_error: t must be"),
    (lambda F, U: F.cross_entropy_error(_probe()[0], np.array([0, 5])), IndexError,
     r"cross_entropy_error: its arguments do not fit \(y \(float64 array of shape \(2, 3\)\), "
     r"t \(int[0-9]+ array of shape \(2,\)\)\): index 5"),
    (lambda F, U: F.sum_squared_error(np.ones((2, 3)), np.ones(4)), ValueError,
     r"sum_squared_error: its arguments do not fit \(y .*\(2, 3\)\), t .*\(4,\)\)"),
    # named once, by the function that was called, not again by the one around it
    (lambda F, U: F.softmax_loss(np.ones((2, 3)), np.eye(4)[[0, 1]]), IndexError,
     r"^cross_entropy_error: its arguments do not fit \(y [^:]*\): arrays used as indices"),
    # (before the permutation is drawn; the book draws, then fails or drops labels)
    (lambda F, U: U.shuffle_dataset(np.ones((4, 2)), np.arange(3)), ValueError,
     r"shuffle_dataset: its arguments do not fit \(x .*\(4, 2\)\), t .*\(3,\)\)\): t must "
     r"hold one label \(or row\) for each of x's 4 samples; got 3"),
    (lambda F, U: U.shuffle_dataset(np.ones((4, 2)), np.arange(20)), ValueError,
     r"for each of x's 4 samples; got 20"),
    (lambda F, U: U.shuffle_dataset(None, None), TypeError, "shuffle_dataset: x must be"),
    (lambda F, U: U.smooth_curve(np.ones((20, 2))), ValueError,
     r"smooth_curve: its arguments do not fit \(x .*\(20, 2\)\)"),
    (lambda F, U: U.conv_output_size(5, 3, 0), ZeroDivisionError,
     r"conv_output_size: its arguments do not fit \(input_size=5, filter_size=3, stride=0, "
     r"pad=0\)"),
    (lambda F, U: U.conv_output_size("5", 3), TypeError, "conv_output_size: input_size must be"),
])
def test_the_books_functions_name_the_argument_numpy_failed_on(call, error, words):
    from fastconv import functions, util
    draws = np.random.get_state()[1].copy()
    with pytest.raises(error, match=words):
        call(functions, util)
    np.testing.assert_array_equal(np.random.get_state()[1], draws)


def test_an_axis_error_stays_one_that_except_valueerror_and_indexerror_both_catch():
    from fastconv import functions
    axis_error = getattr(np, "exceptions", np).AxisError
    with pytest.raises(axis_error, match=r"^cross_entropy_error: its arguments do not fit .*"
                                         r"axis 1 is out of bounds"):
        functions.cross_entropy_error(np.ones((0, 3)), np.array([], int))


def test_a_call_that_succeeds_returns_the_books_result_and_a_wrong_call_its_own_error():
    from fastconv import functions as F, util as U
    x = np.random.default_rng(3).standard_normal((4, 5))
    for name in ("sigmoid", "relu", "softmax", "step_function", "relu_grad", "sigmoid_grad"):
        got, want = getattr(F, name)(x), getattr(F, name).__wrapped__(x)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert type(F.sigmoid(0.0)) is np.float64 and U.conv_output_size(28, 5) == 24.0
    with pytest.raises(TypeError, match="takes 1 positional argument but 2"):
        F.softmax(x, 1)


@pytest.mark.parametrize("f, x, error, words", [
    (3, np.ones(2), TypeError, "f must be a function of x"),
    (np.sum, [1.0, 2.0], TypeError, "x must be a NumPy array of floats.*got list"),
    (np.sum, np.arange(3, dtype=np.int64), TypeError,
     "x must be a NumPy array of floats.*got int64 array"),
    (np.sum, np.ones(2)[::-1].copy().view(), None, None),  # a writable view: accepted
    (lambda v: v * 2, np.ones(2), ValueError, r"f must return one number \(a loss\); got shape"),
])
def test_numerical_gradient_names_what_it_cannot_differentiate(f, x, error, words):
    from fastconv.gradient import numerical_gradient, numerical_gradient_2d
    for gradient in (numerical_gradient, numerical_gradient_2d):
        before = np.copy(x)
        if error is None:
            np.testing.assert_allclose(gradient(f, x), np.ones(2), rtol=1e-6)
            continue
        with pytest.raises(error, match=words):
            gradient(f, x)
        np.testing.assert_array_equal(x, before)  # put back, as after a good call


def test_numerical_gradient_refuses_a_read_only_x_before_touching_it():
    from fastconv.gradient import numerical_gradient
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="x must be writable"):
        numerical_gradient(np.sum, x)


def test_window_errors_name_the_input_and_other_gaps_their_argument():
    from fastconv.datasets import load_mnist
    from fastconv.nets import TwoLayerNet
    from fastconv.trainer import Trainer
    with pytest.raises(ValueError, match="filter of 3x3 does not fit x's images of 2x5"):
        Convolution(np.zeros((2, 1, 3, 3)), np.zeros(2)).forward(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match="does not fit input_data's images of 2x2"):
        im2col(np.zeros((1, 1, 2, 2)), 3, 3)
    with pytest.raises(ValueError, match="does not fit input_shape's images of 2x2"):
        col2im(np.zeros((1, 9)), (1, 1, 2, 2), 3, 3)
    with pytest.raises(ValueError, match="W must have at least one output column"):
        Affine(np.zeros((4, 0)), np.zeros(3)).forward(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="data_dir must be a folder"):
        load_mnist(data_dir=123)
    net = TwoLayerNet(4, 3, 2)
    with pytest.raises(ValueError, match=r"x holds no samples \(shape \(0, 4\)\)"):
        net.accuracy(np.zeros((0, 4)), np.zeros(0, int))
    data = (np.zeros((4, 4)), np.zeros(4, int)) * 2
    with pytest.raises(TypeError, match="optimizer_param does not fit SGD: .*'bogus'"):
        Trainer(net, *data, optimizer_param={"bogus": 1}, verbose=False)


def test_no_classes_and_no_loss_layer_are_named_before_anything_moves():
    from fastconv.nets import MultiLayerNet, SimpleConvNet
    with pytest.raises(ValueError, match="x must hold at least one class score per sample"):
        SoftmaxWithLoss().forward(np.zeros((2, 0)), np.zeros(2, int))
    conv_param = {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}
    for net, x in ((MultiLayerNet(4, [3], 2), np.ones((2, 4))),
                   (SimpleConvNet(input_dim=(1, 8, 8), conv_param=conv_param, hidden_size=4),
                    np.ones((2, 1, 8, 8)))):
        net.last_layer = None
        first = next(iter(net.layers.values()))
        with pytest.raises(TypeError, match="last_layer must be a loss layer .*got NoneType"):
            net.gradient(x, np.array([0, 1]))
        assert first.x is None  # no layer ran forward
