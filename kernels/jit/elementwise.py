"""ReLU, affine and softmax-cross-entropy kernels compiled by Numba.

Same contract as ``fastconv.kernels.reference.elementwise``. Element loops work on flat
contiguous views; the affine GEMMs stay with BLAS and only the bias add and the column sum
(the bias gradient) are compiled, each column summed by one thread so the result does not
depend on the thread count.
"""
import numpy as np
from numba import prange

from . import recycle
from .contracts import bias, float_array, labels, real_number, same_dtype, shaped
from .dispatch import in_parts_above, parallel_above
from .float32_exp import exp
from .gemm import blas_scope, matmul, matmul_pair

__all__ = ["blas_scope", "relu_forward", "relu_backward", "affine_forward", "affine_backward",
           "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
           "weight_decay_gradient"]

# From this size of the first array on, the element-by-element loops run in parts on two or
# more threads (``dispatch.in_parts_above``). Zen 5, ReLU forward, 2 threads: float32 500,000
# elements (2 MB) 37 us in parts against 43 serial and 145 as a parallel loop; 250,000: 25
# against 20 us; a book-style SimpleConvNet's ReLU on its conv output in float64 (1,728,000
# elements) 307 against 577 and 398 us.
ELEMENTWISE_IN_PARTS_BYTES = 2 << 20


@in_parts_above(ELEMENTWISE_IN_PARTS_BYTES)
def _relu_forward_flat(x, out, mask):
    for i in range(x.size):
        v = x[i]
        if v <= 0:
            out[i] = 0
            mask[i] = True
        else:
            out[i] = v
            mask[i] = False


@in_parts_above(ELEMENTWISE_IN_PARTS_BYTES)
def _relu_backward_flat(dout, mask):
    for i in range(dout.size):
        if mask[i]:
            dout[i] = 0


@parallel_above()
def _add_row_vector(y, b):
    for i in prange(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] += b[j]


@parallel_above()
def _column_sum(a, out):
    # summed in float64 on purpose (like the conv kernels' bias gradient), stored in out's dtype
    for j in prange(a.shape[1]):
        total = 0.0
        for i in range(a.shape[0]):
            total += a[i, j]
        out[j] = total


@parallel_above()
def _softmax_cross_entropy_rows(x, t, eps, y, row_loss):
    N, K = x.shape
    zero = x.dtype.type(0)
    for i in prange(N):
        peak = x[i, 0]
        for k in range(1, K):
            if x[i, k] > peak:
                peak = x[i, k]
        for k in range(K):  # apart from the sum, so that float32's exp vectorizes
            y[i, k] = exp(x[i, k] - peak)
        total = zero
        for k in range(K):
            total += y[i, k]
        for k in range(K):
            y[i, k] = y[i, k] / total
        row_loss[i] = np.log(y[i, t[i]] + eps)


@parallel_above()
def _softmax_cross_entropy_grad(y, t, n, dx):
    N, K = y.shape
    one = y.dtype.type(1)
    for i in prange(N):
        for k in range(K):
            dx[i, k] = y[i, k] / n
        dx[i, t[i]] = (y[i, t[i]] - one) / n


@in_parts_above(ELEMENTWISE_IN_PARTS_BYTES)
def _add_scaled_flat(a, scale, b, out):
    # two roundings, a product then a sum, as NumPy's a + scale * b makes them: no fastmath,
    # so LLVM does not fuse them into one FMA
    for i in range(a.size):
        out[i] = a[i] + scale * b[i]


def weight_decay_gradient(grad, lam, W):
    """grad + lam * W as a new array, lam a scalar of their dtype: one pass where NumPy makes
    two, with the same bits. Other operands (shapes that broadcast, mixed dtypes) go to
    NumPy."""
    real_number("weight_decay_gradient", "lam", lam)
    if not (type(grad) is np.ndarray and type(W) is np.ndarray and grad.shape == W.shape
            and grad.dtype == W.dtype and grad.dtype.char in "fd" and grad.dtype.isnative
            and np.result_type(lam, grad) == grad.dtype):
        return grad + lam * W
    out = recycle.empty(grad.shape, grad.dtype)
    _add_scaled_flat(np.ascontiguousarray(grad).reshape(-1), grad.dtype.type(lam),
                     np.ascontiguousarray(W).reshape(-1), out.reshape(-1))
    return out


def relu_forward(x):
    float_array("relu_forward", "x", x)
    x = np.require(x, requirements="C")  # keeps a 0-d array 0-d, as the book's x <= 0 does
    out = recycle.empty(x.shape, x.dtype) if type(x) is np.ndarray else np.empty_like(x)
    mask = recycle.empty(x.shape, np.bool_)
    _relu_forward_flat(x.reshape(-1), out.reshape(-1), mask.reshape(-1))
    return out, mask


def relu_backward(dout, mask):
    float_array("relu_backward", "dout", dout)
    if not dout.flags.writeable:  # (the twin's in-place write fails on it too)
        raise ValueError("relu_backward: dout must be writable: it is zeroed in place where "
                         "the input was <= 0, as in the book")
    mask = np.asarray(mask)  # a 0-d input's mask may come as a NumPy bool
    shaped("relu_backward", "mask", mask, np.shape(dout), " (dout's)")
    if mask.dtype != np.bool_:
        raise TypeError(f"relu_backward: mask must be the boolean array that relu_forward "
                        f"returned; got dtype {mask.dtype}")
    if not dout.flags.c_contiguous:
        # in place, as the twin and the book: a caller may read dout afterwards
        np.copyto(dout, 0, where=mask)
        return dout
    _relu_backward_flat(dout.reshape(-1), np.ascontiguousarray(mask).reshape(-1))
    return dout


def _affine_operands(kernel, x, W):
    """Raises unless x (N, D) and W (D, M) are float matrices that multiply."""
    float_array(kernel, "x", x, 2)
    float_array(kernel, "W", W, 2)
    same_dtype(kernel, "x", x, W=W)
    if W.shape[0] != x.shape[1]:
        raise ValueError(f"{kernel}: W must have one row for each of x's {x.shape[1]} "
                         f"columns; got W of shape {W.shape}")


def affine_forward(x, W, b):
    _affine_operands("affine_forward", x, W)
    same_dtype("affine_forward", "x", x, b=bias("affine_forward", b, W.shape[1], "column of W"))
    y = matmul(x, W)
    _add_row_vector(y, b)
    return y


def affine_backward(dout, x, W, need_dx=True):
    _affine_operands("affine_backward", x, W)
    shaped("affine_backward", "dout", float_array("affine_backward", "dout", dout),
           (x.shape[0], W.shape[1]), " (x @ W's)")
    same_dtype("affine_backward", "x", x, dout=dout)
    dout = np.ascontiguousarray(dout)
    db = np.empty(dout.shape[1], dtype=dout.dtype)
    _column_sum(dout, db)
    if not need_dx:
        return None, matmul(x.T, dout), db
    dx, dW = matmul_pair(dout, W.T, x.T, dout)
    return dx, dW, db


def softmax_cross_entropy_forward(x, t):
    x = np.ascontiguousarray(float_array("softmax_cross_entropy_forward", "x", x, 2))
    t = labels("softmax_cross_entropy_forward", t, *x.shape)
    y = np.empty_like(x)
    row_loss = np.empty(x.shape[0], dtype=x.dtype)
    _softmax_cross_entropy_rows(x, t, x.dtype.type(1e-7), y, row_loss)
    return y, x.dtype.type(-row_loss.sum() / x.shape[0])


def softmax_cross_entropy_backward(y, t):
    float_array("softmax_cross_entropy_backward", "y", y, 2)
    t = labels("softmax_cross_entropy_backward", t, *y.shape)
    dx = np.empty_like(y)
    _softmax_cross_entropy_grad(y, t, y.dtype.type(y.shape[0]), dx)
    return dx
