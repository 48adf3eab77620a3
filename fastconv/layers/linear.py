from fastconv.backend import kernels
from fastconv._validate import as_float_array, check_shape, common_dtype


class Affine:
    """y = x.reshape(N, -1) @ W + b; backward restores x's original shape."""

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None
        # fastconv: a network sets this False on its first layer, whose dx nobody reads
        self.need_input_grad = True

    def forward(self, x):
        x = as_float_array("x", x)
        W = as_float_array("W", self.W, ndim=2)
        b = as_float_array("b", self.b, ndim=1)
        if x.ndim < 2:
            raise ValueError(f"x must be at least 2-D (batch first); got shape {x.shape}")
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != W.shape[0]:
            raise ValueError(f"x has {x2.shape[1]} features per sample (shape {x.shape}) "
                             f"but W expects {W.shape[0]} (W shape {W.shape})")
        check_shape("b", b, (W.shape[1],))
        dtype = common_dtype(x2, W)
        x2 = x2.astype(dtype, copy=False)
        out = kernels().affine_forward(x2, W.astype(dtype, copy=False), b)
        self.original_x_shape = x.shape
        self.x = x2
        return out

    def backward(self, dout):
        dout = as_float_array("dout", dout, ndim=2)
        check_shape("dout", dout, (self.x.shape[0], self.W.shape[1]))
        dout = dout.astype(self.x.dtype, copy=False)
        W = self.W.astype(self.x.dtype, copy=False)
        dx, self.dW, self.db = kernels().affine_backward(dout, self.x, W, self.need_input_grad)
        return None if dx is None else dx.reshape(*self.original_x_shape)
