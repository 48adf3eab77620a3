"""The gradient of a ReLU network's softmax cross-entropy loss, in one compiled call.

A network of affine layers with a ReLU between each two (the book's ``TwoLayerNet``, its
``MultiLayerNet`` with ReLU) spends most of a step outside its two large products when it runs
layer by layer: a 784-50-10 float32 step of 172 us held 86 us of products and some 60 us of
Python around the other layers' calls (Zen 5, one thread). ``dense_relu_gradient`` runs the
same kernels in the same order in one call: the products through the BLAS that NumPy uses
(``blas.gemm``, the call NumPy's ``matmul`` makes), and the bias add, ReLU, softmax and column
sums through the serial builds of the element kernels. So its results are the layer-by-layer
pass's bit for bit, in either dtype, which ``tests/test_dense.py`` checks.

Shapes: L affine layers, layer l maps H[l] to H[l+1] features, N rows. ``weights[l]`` (H[l],
H[l+1]), ``biases[l]`` (H[l+1],), ``outputs[l]`` (N, H[l+1]) are all given as tuples.
"""
import numpy as np
from numba import njit

from . import blas, handover
from .gemm import single_threaded_blas
from .halves import product
from .elementwise import (_add_row_vector, _column_sum, _relu_backward_flat, _relu_forward_flat,
                          _softmax_cross_entropy_grad, _softmax_cross_entropy_rows)

__all__ = ["dense_relu_gradient"]

# the serial builds: this whole call runs on the calling thread, as the layers' small
# operands do (each below its kernel's size for threads)
_add_bias = _add_row_vector.serial
_bias_gradient = _column_sum.serial
_relu = _relu_forward_flat.serial
_relu_backward = _relu_backward_flat.serial
_softmax_rows = _softmax_cross_entropy_rows.serial
_softmax_grad = _softmax_cross_entropy_grad.serial


@njit(nogil=True, cache=True)
def _check_operands(x, labels, rows, weights, biases, outputs, activations, masks, y, row_loss,
                    dW, db):
    """Raises before anything is written where an array does not fit the others: the loops
    below index without bounds checks."""
    L, N = len(weights), x.shape[0]
    features = x.shape[1]
    for l in range(L):
        H = weights[l].shape[1]
        if (weights[l].shape[0] != features or biases[l].shape[0] != H
                or outputs[l].shape != (N, H) or dW[l].shape != weights[l].shape
                or db[l].shape[0] != H):
            raise ValueError("dense_relu_gradient: weights[l] must be (features in, features "
                             "out), biases[l], db[l] (features out,), dW[l] like weights[l]")
        if l < L - 1 and (activations[l].shape != (N, H) or masks[l].shape != (N, H)):
            raise ValueError("dense_relu_gradient: activations[l] and masks[l] must be (N, "
                             "features out of layer l)")
        features = H
    if (y.shape != (N, features) or row_loss.shape[0] != N or labels.shape[0] != N
            or (rows.shape[0] != 0 and rows.shape != y.shape)):
        raise ValueError("dense_relu_gradient: y and rows must be (N, classes), row_loss and "
                         "labels (N,)")
    for i in range(N):
        if labels[i] < 0 or labels[i] >= features:
            raise ValueError("dense_relu_gradient: labels must lie in [0, classes)")


@njit(nogil=True, cache=True, error_model="numpy")
def _dense_relu_gradient(x, labels, rows, eps, weights, biases, outputs, activations, masks,
                         y, row_loss, dW, db, mailbox):
    """See ``dense_relu_gradient``. rows (N, K) are the targets as rows (one-hot or soft),
    of y's dtype, or an empty (0, 0) array where labels hold them. The products cut in
    halves (``halves.product``, as the layers' ``gemm.matmul`` does) post their second half
    to mailbox."""
    _check_operands(x, labels, rows, weights, biases, outputs, activations, masks, y, row_loss,
                    dW, db)
    L = len(weights)
    N = x.shape[0]
    layer_input = x
    for l in range(L):
        out = outputs[l]
        product(layer_input, False, weights[l], False, out, 0, mailbox)
        _add_bias(out, biases[l])
        if l < L - 1:
            _relu(out.reshape(-1), activations[l].reshape(-1), masks[l].reshape(-1))
            layer_input = activations[l]
    n = y.dtype.type(N)
    _softmax_rows(outputs[L - 1], labels, eps, y, row_loss)
    dout = outputs[L - 1]  # no layer keeps an affine layer's output: it holds the gradients
    if rows.shape[0] == 0:
        _softmax_grad(y, labels, n, dout)
    else:  # the book's (y - t) / N
        for i in range(N):
            for k in range(y.shape[1]):
                dout[i, k] = (y[i, k] - rows[i, k]) / n
    for l in range(L - 1, -1, -1):
        layer_input = x if l == 0 else activations[l - 1]
        _bias_gradient(dout, db[l])
        if l > 0:  # (a network reads no gradient of its input)
            below = outputs[l - 1]
            product(dout, False, weights[l], True, below, 0, mailbox)
            _relu_backward(below.reshape(-1), masks[l - 1].reshape(-1))
        product(layer_input, True, dout, False, dW[l], 0, mailbox)
        if l > 0:
            dout = outputs[l - 1]


def dense_relu_gradient(x, labels, rows, weights, biases, activations, masks, y, row_loss,
                        dW, db):
    """Forward and backward pass of affine layers with a ReLU between each two, then softmax
    cross-entropy, as the layers run them one after another; every argument is C-contiguous
    and of the dtype of x (masks bool, labels ``np.intp``).

    x (N, H[0]); labels (N,) the class of each row; rows (N, K) the targets as rows (one-hot
    or soft; the book then takes (y - t) / N) or None; weights and biases: tuples of the L
    layers'. Written: activations[l] and masks[l] (N, H[l+1]), the ReLU output and
    ``input <= 0`` after layer l < L-1; y (N, K) the softmax and row_loss (N,) each row's
    ``log(y[label] + 1e-7)``, so that the loss is ``-row_loss.sum() / N``; dW[l], db[l] the
    gradients of the mean loss. There must be at least one hidden layer (L >= 2).
    """
    L = len(weights)
    if L < 2 or not len(biases) == len(dW) == len(db) == L or not (
            len(activations) == len(masks) == L - 1):
        # (checked here: an empty tuple has no element type to compile for)
        raise ValueError("dense_relu_gradient: needs 2+ layers, a bias, dW and db for each, "
                         "and an activation and a mask array for each but the last")
    if not (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
            and x.flags.c_contiguous):
        raise TypeError("dense_relu_gradient: x must be a C-contiguous float32 or float64 "
                        f"array; got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 2 or x.shape[0] == 0:
        # (the mean loss of no rows is undefined; BLAS refuses the empty product)
        raise ValueError(f"dense_relu_gradient: x must be (N, features) with N >= 1; got shape "
                         f"{x.shape}")
    misfit = _misfit(x, labels, rows, weights, biases, activations, masks, y, row_loss, dW,
                     db)
    if misfit is not None:
        # Numba would compile another kernel for most of these (an int8 mask, float64 y
        # beside float32 x) and compute something else, or fail to type it
        raise TypeError(f"dense_relu_gradient: {misfit}")
    dtype = x.dtype
    outputs = tuple(np.empty((x.shape[0], W.shape[1]), dtype) for W in weights)
    if rows is None:
        rows = np.empty((0, 0), dtype)
    run = _dense_relu_gradient if blas.AVAILABLE else _dense_relu_gradient.py_func
    with single_threaded_blas():  # the pool thread's half too: it runs inside this pin
        run(x, labels, rows, dtype.type(1e-7), weights, biases, outputs, activations, masks, y,
            row_loss, dW, db, handover.mailbox())


def _misfit(x, labels, rows, weights, biases, activations, masks, y, row_loss, dW, db):
    """Which argument is not a C-contiguous array of the type the kernel takes, or None."""
    real = x.dtype
    for name, arrays, dtype, ndim in (
            ("labels", (labels,), np.intp, 1), ("rows", () if rows is None else (rows,), real, 2),
            ("weights", weights, real, 2), ("biases", biases, real, 1),
            ("activations", activations, real, 2), ("masks", masks, np.bool_, 2),
            ("y", (y,), real, 2), ("row_loss", (row_loss,), real, 1), ("dW", dW, real, 2),
            ("db", db, real, 1)):
        for array in arrays:
            if not (type(array) is np.ndarray and array.dtype == dtype
                    and array.flags.c_contiguous):
                return (f"{name} must hold C-contiguous arrays of dtype {np.dtype(dtype)}; got "
                        f"{getattr(array, 'dtype', type(array).__name__)}")
            if array.ndim != ndim:
                # (Numba would compile the kernel again for it, and index it as it comes)
                return f"{name} must hold {ndim}-D arrays; got shape {array.shape}"
    return None
