import numpy as np

from fastconv.backend import kernels
from fastconv._validate import as_float_array, check_shape, common_dtype


class Dropout:
    """http://arxiv.org/abs/1207.0580 ; draws its mask from np.random like the book."""

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        x = as_float_array("x", x)
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x * x.dtype.type(1.0 - self.dropout_ratio)

    def backward(self, dout):
        check_shape("dout", np.asarray(dout), self.mask.shape)
        return dout * self.mask


class BatchNormalization:
    """http://arxiv.org/abs/1502.03167

    Like the book, a 4-D input (N, C, H, W) is normalized per feature of the flattened
    (N, C*H*W) view, so gamma and beta have C*H*W entries.
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

    def forward(self, x, train_flg=True):
        x = as_float_array("x", x, ndim=(2, 4))
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != np.size(self.gamma):
            raise ValueError(f"x has {flat.shape[1]} features per sample (shape {x.shape}) "
                             f"but gamma has {np.size(self.gamma)}")
        out = self._forward(flat, train_flg)
        self.input_shape = x.shape
        return out.reshape(*x.shape)

    def _forward(self, x, train_flg):
        dtype = common_dtype(x, self.gamma)
        x = x.astype(dtype, copy=False)
        eps = dtype.type(10e-7)
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1], dtype=dtype)
            self.running_var = np.zeros(x.shape[1], dtype=dtype)
        if not train_flg:
            xn = (x - self.running_mean) / np.sqrt(self.running_var + eps)
            return self.gamma * xn + self.beta
        gamma = np.asarray(self.gamma, dtype=dtype).reshape(-1)
        beta = np.asarray(self.beta, dtype=dtype).reshape(-1)
        out, mu, var, xc, xn, std = kernels().batchnorm_forward(x, gamma, beta, eps)
        self.batch_size = x.shape[0]
        self.xc, self.xn, self.std = xc, xn, std
        m = self.momentum
        self.running_mean = m * self.running_mean + (1 - m) * mu
        self.running_var = m * self.running_var + (1 - m) * var
        return out

    def backward(self, dout):
        dout = np.asarray(dout)
        check_shape("dout", dout, self.input_shape)
        dx = self._backward(dout.reshape(dout.shape[0], -1))
        return dx.reshape(*self.input_shape)

    def _backward(self, dout):
        dtype = self.xc.dtype
        gamma = np.asarray(self.gamma, dtype=dtype).reshape(-1)
        dx, self.dgamma, self.dbeta = kernels().batchnorm_backward(
            dout.astype(dtype, copy=False), self.xc, self.xn, self.std, gamma)
        return dx
