import numbers

import numpy as np

from fastconv.backend import kernels
from fastconv._validate import (as_float_array, as_real_array, check_batch, check_fraction,
                                check_ran_forward, check_saved, check_shape, common_dtype)


class Dropout:
    """http://arxiv.org/abs/1207.0580 ; draws its mask from np.random like the book."""

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = check_fraction("dropout_ratio", dropout_ratio)
        self.mask = None

    def forward(self, x, train_flg=True):
        x = as_real_array("x", x)  # integers too, as in the book
        ratio = check_fraction("dropout_ratio", self.dropout_ratio)  # it may be set later
        if train_flg:
            self.mask = np.random.rand(*x.shape) > ratio
            return x * self.mask
        # the scale in x's float dtype (a NumPy float64 ratio would make float32 x float64);
        # integers times the book's Python float give float64
        return x * (x.dtype.type(1.0 - ratio) if x.dtype.kind == "f" else 1.0 - ratio)

    def backward(self, dout):
        check_ran_forward(self, self.mask is not None)
        dout = as_float_array("dout", dout)
        check_shape("dout", dout, self.mask.shape)
        return dout * self.mask


class BatchNormalization:
    """http://arxiv.org/abs/1502.03167

    Like the book, a 4-D input (N, C, H, W) is normalized per feature of the flattened
    (N, C*H*W) view, so gamma and beta have C*H*W entries (as do the running statistics).
    Every size is checked at every call, since the kernels trust them.
    """

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None
        self._trained_shape = None  # the input shape of the last training-mode forward pass
        self._trained_sizes = None  # (N, D, dtype) of the arrays that pass left for backward

    def forward(self, x, train_flg=True):
        x = as_float_array("x", x, ndim=(2, 4))
        flat = x.reshape(x.shape[0], -1) if x.shape[0] else x.reshape(0, int(np.prod(x.shape[1:])))
        features = flat.shape[1]
        gamma = self._vector("gamma", self.gamma, features, x.shape)
        beta = self._vector("beta", self.beta, features, x.shape)
        if self.running_mean is not None or self.running_var is not None:
            self._vector("running_mean", self.running_mean, features, x.shape)
            self._vector("running_var", self.running_var, features, x.shape)
        momentum = self.momentum
        if not isinstance(momentum, numbers.Real) or isinstance(momentum, (bool, np.bool_)):
            raise TypeError(f"momentum must be a real number; got {momentum!r}")
        if train_flg:
            check_batch("x", x)  # batch statistics of no sample are undefined
        out = self._forward(flat, gamma, beta, train_flg)
        self.input_shape = x.shape
        if train_flg:
            self._trained_shape = x.shape  # what backward takes, whatever ran since
        return out.reshape(*x.shape)

    @staticmethod
    def _vector(name, value, features, x_shape):
        array = as_float_array(name, value)
        if array.size != features:
            raise ValueError(f"x has {features} features per sample (shape {x_shape}) "
                             f"but {name} has {array.size}")
        return array

    def _forward(self, x, gamma, beta, train_flg):
        dtype = common_dtype(x, gamma)
        x = x.astype(dtype, copy=False)
        eps = dtype.type(10e-7)
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1], dtype=dtype)
            self.running_var = np.zeros(x.shape[1], dtype=dtype)
        if not train_flg:
            mean = np.reshape(self.running_mean, -1)
            var = np.reshape(self.running_var, -1)
            xn = (x - mean) / np.sqrt(var + eps)
            return gamma.reshape(-1) * xn + beta.reshape(-1)
        gamma = np.asarray(gamma, dtype=dtype).reshape(-1)
        beta = np.asarray(beta, dtype=dtype).reshape(-1)
        out, mu, var, xc, xn, std = kernels().batchnorm_forward(x, gamma, beta, eps)
        self.batch_size = x.shape[0]
        self.xc, self.xn, self.std = xc, xn, std
        self._trained_sizes = xc.shape + (xc.dtype,)
        m = self.momentum
        self.running_mean = m * self.running_mean + (1 - m) * mu
        self.running_var = m * self.running_var + (1 - m) * var
        return out

    def backward(self, dout):
        check_ran_forward(self, self._trained_shape is not None)
        dout = as_float_array("dout", dout)
        check_shape("dout", dout, self._trained_shape)
        N, D, dtype = self._trained_sizes
        for name, shape in (("xc", (N, D)), ("xn", (N, D)), ("std", (D,))):
            check_saved(self, name, shape, dtype)
        gamma = as_float_array("gamma", self.gamma)
        if gamma.size != D:
            raise ValueError(f"gamma has {gamma.size} entries but the last training-mode "
                             f"forward pass had {D} features; run forward again")
        dx = self._backward(dout.reshape(N, D), gamma)
        return dx.reshape(*dout.shape)

    def _backward(self, dout, gamma):
        dtype = self.xc.dtype
        gamma = np.asarray(gamma, dtype=dtype).reshape(-1)
        dx, self.dgamma, self.dbeta = kernels().batchnorm_backward(
            dout.astype(dtype, copy=False), self.xc, self.xn, self.std, gamma)
        return dx
