"""Batch normalization in plain NumPy, the book's expressions: the oracle for the jit twin.

x is (N, D): every one of the D features is normalized over the N samples. Scalars come in
the arrays' dtype (``eps``), so float32 stays float32.
"""
import numpy as np

__all__ = ["batchnorm_forward", "batchnorm_backward"]


def _check_rows(kernel, name, a):
    # the statistics of no rows are undefined: NumPy would warn and return NaN (forward) or
    # divide by a Python zero (backward)
    if a.shape[0] == 0:
        raise ValueError(f"{kernel}: {name} must hold at least one row; got shape {a.shape}")


def batchnorm_forward(x, gamma, beta, eps):
    """Training mode. Returns (out, mu, var, xc, xn, std); mu, var and std are (D,)."""
    _check_rows("batchnorm_forward", "x", x)
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc ** 2, axis=0)
    std = np.sqrt(var + eps)
    xn = xc / std
    return gamma * xn + beta, mu, var, xc, xn, std


def batchnorm_backward(dout, xc, xn, std, gamma):
    """Returns (dx, dgamma, dbeta) for the saved xc, xn (N, D) and std (D,)."""
    _check_rows("batchnorm_backward", "dout", dout)
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    return dxc - dmu / n, dgamma, dbeta
