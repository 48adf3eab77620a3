import numpy as np

from fastconv.backend import kernels
from fastconv._validate import (as_float_array, as_image_batch, as_real_array, bias_vector,
                                check_batch, check_int, check_ran_forward, check_shape,
                                check_unchanged, check_window, compute_dtype)
from fastconv.kernels.shapes import conv_output_hw


class Convolution:
    """2-D convolution (cross-correlation) with W (FN, C, FH, FW) and b (FN,).

    Like the book, W may hold integers and b may be a number (``Convolution(w, 0)``); the
    layer computes in the dtype NumPy gives x, W and b together, which must be a float.
    """

    def __init__(self, W, b, stride=1, pad=0):
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x = None
        self.ctx = None  # what the backend's backward pass needs besides x (None: nothing)
        self.dW = None
        self.db = None
        # fastconv: a network sets this False on its first layer, which then skips col2im
        self.need_input_grad = True
        self._col = None
        self._geometry = None  # W's shape, stride, pad, x's shape and dtype at forward

    @property
    def col(self):
        """The book's im2col of x, (N*out_h*out_w, C*FH*FW).

        The Numba backend does not keep it (it rebuilds im2col chunk by chunk in the backward
        pass), so it is built here on first access.
        """
        if self.x is None:
            return None
        if self._col is None:
            if isinstance(self.ctx, np.ndarray):
                self._col = self.ctx
            else:
                FH, FW = self.W.shape[2:]
                self._col = kernels().im2col(self.x, FH, FW, self.stride, self.pad)
        return self._col

    @property
    def col_W(self):
        return self.W.reshape(self.W.shape[0], -1).T

    def forward(self, x):
        x, W, b, stride, pad = self._prepare(x)
        out, ctx = kernels().conv2d_forward(x, W, b, stride, pad)
        self._keep(x, ctx)
        return out

    def _keep(self, x, ctx):
        self.x, self.ctx, self._col = x, ctx, None
        self._geometry = self._current_geometry()

    def _current_geometry(self):
        # x too: the Numba backend's backward pass rebuilds im2col from it, indexed by the
        # forward's shapes (a fused block's output and argmax)
        return {"W.shape": np.shape(self.W), "stride": self.stride, "pad": self.pad,
                "x.shape": np.shape(self.x), "x.dtype": getattr(self.x, "dtype", None)}

    def _prepare(self, x):
        """Checked (x, W, b, stride, pad), all arrays in the dtype the convolution runs in."""
        x = as_image_batch("x", x)
        W = as_real_array("W", self.W, ndim=4)
        as_real_array("b", self.b)  # a clear TypeError before NumPy's own
        stride = check_int("stride", self.stride, 1)
        pad = check_int("pad", self.pad, 0)
        FN, C, FH, FW = W.shape
        N, xC, H, Wd = x.shape
        if 0 in W.shape:  # the kernels would divide by zero or hand BLAS an empty matrix
            raise ValueError(f"W must have at least one filter, channel, row and column "
                             f"(FN, C, FH, FW); got shape {W.shape}")
        if xC != C:
            raise ValueError(f"x has {xC} channels (shape {x.shape}) but W expects {C} "
                             f"(W shape {W.shape}); x must be (N, {C}, H, W)")
        check_batch("x", x)
        check_window("filter", H, Wd, FH, FW, stride, pad)
        dtype = compute_dtype(x, W, self.b)
        b = bias_vector("b", self.b, FN, dtype)
        return (x.astype(dtype, copy=False), W.astype(dtype, copy=False), b, stride, pad)

    def output_shape(self, x_shape):
        N, C, H, W = x_shape
        FN, _, FH, FW = self.W.shape
        return (N, FN) + conv_output_hw(H, W, FH, FW, self.stride, self.pad)

    def backward(self, dout):
        check_ran_forward(self, self.x is not None)
        check_unchanged(self, self._geometry, self._current_geometry())
        dout = as_float_array("dout", dout, ndim=4)
        check_shape("dout", dout, self.output_shape(self.x.shape))
        dout = dout.astype(self.x.dtype, copy=False)
        W = as_real_array("W", self.W, ndim=4).astype(self.x.dtype, copy=False)
        dx, self.dW, self.db = kernels().conv2d_backward(
            dout, self.x, W, self.ctx, self.stride, self.pad, self.need_input_grad)
        return dx


class Pooling:
    """Max pooling; the padding takes part as -inf, so it is never the maximum."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.argmax = None  # (N, C, out_h, out_w) window index ky*pool_w + kx
        self._argmax_made = None  # the argmax array the last forward pass made
        self.fused_block = None  # the ConvReluBlock whose fused forward ran last, if any
        self._window = None  # (pool_h, pool_w, stride, pad) of the last forward pass

    @property
    def arg_max(self):
        """The book's flat layout of the argmax: rows ordered (n, oy, ox, c), read-only (with
        one channel it is a view of ``argmax``, which a write would change)."""
        if self.argmax is None:
            return None
        flat = self.argmax.transpose(0, 2, 3, 1).ravel()
        flat.flags.writeable = False
        return flat

    def forward(self, x):
        x = as_image_batch("x", x)
        check_batch("x", x)  # as Convolution: the book's im2col fails on an empty batch
        geometry = self._geometry(x.shape)
        out, argmax = kernels().maxpool_forward(x, *geometry)
        self.x, self.fused_block = x, None
        self.keep_argmax(argmax)
        self._window = self._current_window()
        return out

    def _current_window(self):
        # x's shape and dtype too: backward takes them for dx (an integer x truncated dout)
        return {"pool_h": self.pool_h, "pool_w": self.pool_w, "stride": self.stride,
                "pad": self.pad, "x.shape": np.shape(self.x),
                "x.dtype": getattr(self.x, "dtype", None)}

    def _geometry(self, x_shape):
        """Checked (pool_h, pool_w, stride, pad) for an input of ``x_shape``."""
        ph = check_int("pool_h", self.pool_h, 1)
        pw = check_int("pool_w", self.pool_w, 1)
        stride = check_int("stride", self.stride, 1)
        pad = check_int("pad", self.pad, 0)
        if pad >= ph or pad >= pw:
            raise ValueError(f"pad must be smaller than the pool window {ph}x{pw}; got {pad}")
        check_window("pool window", x_shape[2], x_shape[3], ph, pw, stride, pad)
        return ph, pw, stride, pad

    def backward(self, dout):
        if self.fused_block is not None:
            self.fused_block.run_unfused()  # a network ran this layer fused: see run_unfused
        check_ran_forward(self, self.x is not None)
        check_unchanged(self, self._window, self._current_window())
        N, C, H, W = self.x.shape
        out_shape = (N, C) + conv_output_hw(H, W, self.pool_h, self.pool_w, self.stride,
                                            self.pad)
        argmax = self.checked_argmax(out_shape)
        dout = as_float_array("dout", dout, ndim=4)
        check_shape("dout", dout, out_shape)
        return kernels().maxpool_backward(dout.astype(self.x.dtype, copy=False), argmax,
                                          self.x.shape, self.pool_h, self.pool_w,
                                          self.stride, self.pad)

    def keep_argmax(self, argmax):
        """Record the argmax a forward pass made: ``checked_argmax`` takes it as it is."""
        self.argmax = self._argmax_made = argmax

    def checked_argmax(self, out_shape):
        """``argmax`` as the backward kernels read it: window indices (intp) of the forward
        output's shape. The attribute is public, and the kernels index by its shape; an
        array put in its place must also hold indices inside the window, or the kernels
        would drop those gradients without a word (the forward pass's own is not scanned
        again: its min and max took 94 us for a SimpleConvNet batch, under load)."""
        argmax = self.argmax
        if not isinstance(argmax, np.ndarray) or argmax.dtype.kind not in "iu":
            raise ValueError(f"{type(self).__name__}.argmax must be an integer array of the "
                             f"window indices of the last forward pass; got "
                             f"{type(argmax).__name__} {getattr(argmax, 'dtype', '')}".rstrip())
        check_shape(f"{type(self).__name__}.argmax", argmax, out_shape)
        window = check_int("pool_h", self.pool_h, 1) * check_int("pool_w", self.pool_w, 1)
        if argmax is not getattr(self, "_argmax_made", None) and argmax.size and (
                argmax.min() < 0 or argmax.max() >= window):
            raise ValueError(f"{type(self).__name__}.argmax must hold window indices in "
                             f"[0, {window}); got values from {argmax.min()} to "
                             f"{argmax.max()}")
        return argmax.astype(np.intp, copy=False)
