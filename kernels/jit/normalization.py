"""Batch normalization compiled by Numba; same contract as ``fastconv.kernels.reference``.

The book's batch norm is a dozen NumPy passes over (N, D), each a few microseconds on the
MLPs' 100x100 activations; here the forward pass and the backward pass are one kernel each.
Parallel iterations own blocks of feature columns, and each column is summed over the
samples in order, as NumPy's axis-0 reductions do, so results do not depend on the thread
count and float64 results equal the twin's. Scalars are made in the arrays' dtype: a Python
float would turn a float32 pass into float64.
"""
import numpy as np
from numba import prange

from .contracts import float_array, nonempty, real_number, same_dtype, shaped
from .dispatch import parallel_above

__all__ = ["batchnorm_forward", "batchnorm_backward"]

COLUMNS = 64  # feature columns per parallel iteration: a row segment that vectorizes


# Inner loops run over row segments (slices) with indices from 0: with 2-D indexing from a
# computed column offset, Numba's negative-index handling kept them from vectorizing.
@parallel_above()
def _forward_columns(x, gamma, beta, eps, out, mu, var, xc, xn, std):
    N, D = x.shape
    n = x.dtype.type(N)
    for block in prange((D + COLUMNS - 1) // COLUMNS):
        lo = block * COLUMNS
        hi = min(lo + COLUMNS, D)
        width = hi - lo
        m, v, s = mu[lo:hi], var[lo:hi], std[lo:hi]
        g, b = gamma[lo:hi], beta[lo:hi]
        m[:] = 0
        for i in range(N):
            row = x[i, lo:hi]
            for k in range(width):
                m[k] += row[k]
        for k in range(width):
            m[k] /= n
        v[:] = 0
        for i in range(N):
            row, centred = x[i, lo:hi], xc[i, lo:hi]
            for k in range(width):
                c = row[k] - m[k]
                centred[k] = c
                v[k] += c * c
        for k in range(width):
            v[k] /= n
            s[k] = np.sqrt(v[k] + eps)
        for i in range(N):
            centred, normed, y = xc[i, lo:hi], xn[i, lo:hi], out[i, lo:hi]
            for k in range(width):
                z = centred[k] / s[k]
                normed[k] = z
                y[k] = g[k] * z + b[k]


@parallel_above()
def _backward_columns(dout, xc, xn, std, gamma, two_over_n, dx, dgamma, dbeta):
    N, D = dout.shape
    n = dout.dtype.type(N)
    half = dout.dtype.type(0.5)
    for block in prange((D + COLUMNS - 1) // COLUMNS):
        lo = block * COLUMNS
        hi = min(lo + COLUMNS, D)
        width = hi - lo
        s, g = std[lo:hi], gamma[lo:hi]
        dg, db = dgamma[lo:hi], dbeta[lo:hi]
        dstd = np.zeros(width, dtype=dout.dtype)
        dmu = np.zeros(width, dtype=dout.dtype)
        dg[:] = 0
        db[:] = 0
        for i in range(N):
            grad, centred, normed, d = dout[i, lo:hi], xc[i, lo:hi], xn[i, lo:hi], dx[i, lo:hi]
            for k in range(width):
                db[k] += grad[k]
                dg[k] += normed[k] * grad[k]
                dxn = g[k] * grad[k]
                d[k] = dxn / s[k]  # dxc before the variance term
                dstd[k] += (dxn * centred[k]) / (s[k] * s[k])
        for k in range(width):
            dstd[k] = -dstd[k]
        for i in range(N):
            centred, d = xc[i, lo:hi], dx[i, lo:hi]
            for k in range(width):
                dvar = half * dstd[k] / s[k]
                c = d[k] + two_over_n * centred[k] * dvar
                d[k] = c
                dmu[k] += c
        for i in range(N):
            d = dx[i, lo:hi]
            for k in range(width):
                d[k] = d[k] - dmu[k] / n


def batchnorm_forward(x, gamma, beta, eps):
    """Training mode. Returns (out, mu, var, xc, xn, std); mu, var and std are (D,)."""
    kernel = "batchnorm_forward"
    x = np.ascontiguousarray(nonempty(kernel, "x", float_array(kernel, "x", x, 2), "row"))
    N, D = x.shape
    for name, a in (("gamma", gamma), ("beta", beta)):
        shaped(kernel, name, float_array(kernel, name, a), (D,), " (one value for each column "
               "of x)")
    same_dtype(kernel, "x", x, gamma=gamma, beta=beta)
    real_number(kernel, "eps", eps)
    out, xc, xn = (np.empty_like(x) for _ in range(3))
    mu, var, std = (np.empty(D, dtype=x.dtype) for _ in range(3))
    _forward_columns(x, np.ascontiguousarray(gamma), np.ascontiguousarray(beta),
                     x.dtype.type(eps), out, mu, var, xc, xn, std)
    return out, mu, var, xc, xn, std


def batchnorm_backward(dout, xc, xn, std, gamma):
    """Returns (dx, dgamma, dbeta) for the saved xc, xn (N, D) and std (D,)."""
    kernel = "batchnorm_backward"
    dout = np.ascontiguousarray(nonempty(kernel, "dout", float_array(kernel, "dout", dout, 2),
                                         "row"))
    D = dout.shape[1]
    for name, a, shape in (("xc", xc, dout.shape), ("xn", xn, dout.shape), ("std", std, (D,)),
                           ("gamma", gamma, (D,))):
        shaped(kernel, name, float_array(kernel, name, a), shape, " (as the forward pass "
               "left it for this dout)")
    same_dtype(kernel, "dout", dout, xc=xc, xn=xn, std=std, gamma=gamma)
    dx = np.empty_like(dout)
    dgamma = np.empty(D, dtype=dout.dtype)
    dbeta = np.empty(D, dtype=dout.dtype)
    # 2/N rounded once to the dtype, as NumPy does with the twin's Python float (2.0 / n)
    two_over_n = dout.dtype.type(2.0 / dout.shape[0])
    _backward_columns(dout, np.ascontiguousarray(xc), np.ascontiguousarray(xn),
                      np.ascontiguousarray(std), np.ascontiguousarray(gamma), two_over_n,
                      dx, dgamma, dbeta)
    return dx, dgamma, dbeta
