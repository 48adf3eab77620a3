import math

import numpy as np

from fastconv.backend import kernels
from fastconv._validate import (FLOAT_DTYPES, as_float_array, as_real_array, bias_vector,
                                check_batch, check_ran_forward, check_saved, check_shape,
                                compute_dtype)


class Affine:
    """y = x.reshape(N, -1) @ W + b; backward restores x's original shape.

    Like the book, W may hold integers and b may be a number (broadcast over the outputs);
    the layer computes in the dtype NumPy gives ``x @ W + b``, which must be a float.
    """

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None
        self._x_saved = None  # (shape, dtype) of the x that forward left
        # fastconv: a network sets this False on its first layer, whose dx nobody reads
        self.need_input_grad = True

    def forward(self, x):
        x_shape, x2, W, b = self._usual_operands(x) or self._checked_operands(x)
        out = kernels().affine_forward(x2, W, b)
        self._keep_input(x_shape, x2)
        return out

    def weights_for(self, x_shape, dtype):
        """W, where forward would take an input of ``x_shape`` and ``dtype`` (a native float
        dtype) with the usual operands, as they come: weights and bias arrays of that dtype,
        a bias vector, as many weight rows as features an input has; else None. A
        ``BlockChain`` then multiplies its input by W itself (``finish_forward``)."""
        W, b = self.W, self.b
        if (type(W) is np.ndarray and type(b) is np.ndarray and W.dtype == b.dtype == dtype
                and W.ndim == 2 and b.shape == W.shape[1:] and len(x_shape) >= 2
                and x_shape[0] and math.prod(x_shape[1:]) == W.shape[0]):
            return W
        return None

    def finish_forward(self, x, product):
        """What ``forward(x)`` returns and leaves, given ``product``, the (N, outputs) array
        x.reshape(N, -1) @ W that ``weights_for``'s W gave (it becomes the output)."""
        product += self.b
        self._keep_input(x.shape, x.reshape(x.shape[0], -1))
        return product

    def keep_pass(self, x_shape, x2, dW, db):
        """What a forward pass on an input of ``x_shape`` (x2 as (N, features)) and the
        backward pass after it leave, given their gradients (a network's fused gradient)."""
        self._keep_input(x_shape, x2)
        self.dW, self.db = dW, db

    def _keep_input(self, x_shape, x2):
        self.original_x_shape = x_shape
        self.x = x2
        self._x_saved = (x2.shape, x2.dtype)

    def _usual_operands(self, x):
        """(x's shape, x as (N, features), W, b) for the usual call (a native float array
        and ``weights_for``'s operands), which the checks would pass through unchanged; None
        for any other. Skipping the checks there matters on the few-sample batches of the
        book's gradient checks, where they were most of a call."""
        if (type(x) is np.ndarray and x.dtype.type in FLOAT_DTYPES and x.dtype.isnative
                and self.weights_for(x.shape, x.dtype) is not None):
            return x.shape, x.reshape(x.shape[0], -1), self.W, self.b
        return None

    def _checked_operands(self, x):
        """What _usual_operands gives, for any input the book's layer takes, cast to the
        dtype NumPy gives ``x @ W + b`` (integer or float16 images with float64 weights:
        float64, as in the book, as ``Convolution`` takes them); a clear error for any other."""
        x = as_real_array("x", x)
        W = as_real_array("W", self.W, ndim=2)
        if W.shape[1] == 0:
            raise ValueError(f"W must have at least one output column (features, outputs); "
                             f"got shape {W.shape}")
        if x.ndim < 2:
            raise ValueError(f"x must be at least 2-D (batch first); got shape {x.shape}")
        check_batch("x", x)
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != W.shape[0]:
            raise ValueError(f"x has {x2.shape[1]} features per sample (shape {x.shape}) "
                             f"but W expects {W.shape[0]} (W shape {W.shape})")
        as_real_array("b", self.b)  # a clear TypeError before NumPy's own
        dtype = compute_dtype(x2, W, self.b)
        b = bias_vector("b", self.b, W.shape[1], dtype)
        return x.shape, x2.astype(dtype, copy=False), W.astype(dtype, copy=False), b

    def backward(self, dout):
        dout, x, W = self.backward_operands(dout)
        dx, self.dW, self.db = kernels().affine_backward(dout, x, W, self.need_input_grad)
        return None if dx is None else dx.reshape(*self.original_x_shape)

    def backward_operands(self, dout):
        """(dout, x, W) as the backward kernel takes them, all in x's dtype, once it is
        checked that they fit the last forward pass."""
        check_ran_forward(self, self.x is not None)
        if self._x_saved is not None:  # (a subclass's own forward may not record it)
            check_saved(self, "x", *self._x_saved)  # an edited x would set dout's dtype
        dout = as_float_array("dout", dout, ndim=2)
        W = as_real_array("W", self.W, ndim=2)
        if W.shape[0] != self.x.shape[1]:
            raise ValueError(f"W has shape {W.shape} but the forward pass had "
                             f"{self.x.shape[1]} features per sample; run forward again")
        check_shape("dout", dout, (self.x.shape[0], W.shape[1]))
        shape = self.original_x_shape  # public: dx takes it, after dW and db are set
        if (not isinstance(shape, (tuple, list)) or len(shape) < 2 or shape[0] != self.x.shape[0]
                or math.prod(shape[1:]) != self.x.shape[1]):
            raise ValueError(f"{type(self).__name__}.original_x_shape must be the shape of "
                             f"the last forward pass's x, {self.x.shape[0]} samples of "
                             f"{self.x.shape[1]} values; got {shape!r}")
        dtype = self.x.dtype
        return dout.astype(dtype, copy=False), self.x, W.astype(dtype, copy=False)
