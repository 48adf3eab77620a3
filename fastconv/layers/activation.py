import numpy as np

from fastconv.backend import kernels
from fastconv.functions import sigmoid
from fastconv.kernels import reference
from fastconv._validate import (FLOAT_DTYPES, as_float_array, as_real_array, check_ran_forward,
                                check_shape)


class Relu:
    def __init__(self):
        self.mask = None
        self.fused_block = None  # the ConvReluBlock whose fused forward ran last, if any

    def forward(self, x):
        x = as_real_array("x", x)
        # integers and float16 as the book computes them: in NumPy, in x's dtype
        k = kernels() if x.dtype.type in FLOAT_DTYPES else reference
        out, mask = k.relu_forward(x)
        self.keep_pass(mask)
        return out

    def keep_pass(self, mask):
        """What a forward pass leaves, given its mask (also a network's fused gradient)."""
        self.mask = mask
        self.fused_block = None

    def backward(self, dout):
        """Zeroes dout where x <= 0. Like the book, it may do so in dout itself."""
        if self.fused_block is not None:
            self.fused_block.run_unfused()  # a network ran this layer fused: see run_unfused
        check_ran_forward(self, self.mask is not None)
        if not isinstance(self.mask, (np.ndarray, np.bool_)):  # a 0-d x's mask is a bool_
            raise ValueError(f"Relu.mask must be the boolean array that forward left; got "
                             f"{type(self.mask).__name__}; run forward again")
        dout = as_float_array("dout", dout)
        check_shape("dout", dout, self.mask.shape)
        return kernels().relu_backward(dout, self.mask)


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out = sigmoid(as_real_array("x", x))  # integers too, as in the book: float64
        return self.out

    def backward(self, dout):
        check_ran_forward(self, self.out is not None)
        dout = as_float_array("dout", dout)
        check_shape("dout", dout, self.out.shape)
        return dout * (1.0 - self.out) * self.out
