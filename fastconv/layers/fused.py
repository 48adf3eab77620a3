"""Convolution -> Relu (-> Pooling) run as one block, for the networks.

A block wraps the network's own layer objects and calls one fused kernel per step in place
of three; the numbers are those of the three layers run one after the other. What the
block keeps up to date is what the networks and the book's scripts read: ``conv.x`` (and
so ``conv.col``), ``conv.dW``, ``conv.db``, ``pool.argmax``. The full-size
intermediate arrays are never made, so ``relu.mask`` and ``pool.x`` are not set.

A forward pass that no backward pass will follow (``with_argmax=False``: the networks'
``predict`` and ``accuracy``) keeps no ``pool.argmax`` either, and pools with a max that
needs no window index.

The networks run consecutive blocks, and the affine layer after them, as one
:class:`~fastconv.layers.chain.BlockChain`.

A script may still walk the network's layers backward by hand, as the book's ``gradient``
methods do. The Relu and Pooling of a block then find that their last forward ran fused and
call :meth:`ConvReluBlock.run_unfused` first, which runs the three layers one after another
on the block's input: one extra forward pass, and the same numbers as unfused layers.
"""
from fastconv.backend import kernels
from fastconv.kernels.shapes import conv_output_hw
from fastconv._validate import (as_float_array, as_real_array, check_ran_forward, check_saved,
                                check_shape, check_unchanged)

from .activation import Relu
from .spatial import Convolution, Pooling

__all__ = ["ConvReluBlock", "fuse"]


class ConvReluBlock:
    def __init__(self, conv, relu, pool=None):
        self.conv, self.relu, self.pool = conv, relu, pool
        self.out = None
        self._out_saved = None  # (shape, dtype) of the out that forward left

    def forward(self, x, with_argmax=True):
        """The block's output; ``with_argmax=False`` when no backward pass will follow."""
        x, (W, b, stride, pad, pool), _ = self.operands(x)
        k = kernels()
        if pool is None:
            out, ctx = k.conv_relu_forward(x, W, b, stride, pad)
            argmax = None
        else:
            out, argmax, ctx = k.conv_relu_pool_forward(x, W, b, stride, pad, *pool,
                                                        with_argmax=with_argmax)
        return self.keep(x, ctx, out, argmax)

    def operands(self, x):
        """(x, (W, b, stride, pad, pool), output shape): x, W and b as the kernels take them,
        checked, in the dtype the block computes in; pool is (pool_h, pool_w, stride, pad),
        or None."""
        x, W, b, stride, pad = self.conv._prepare(x)
        shape = self.conv.output_shape(x.shape)
        pool = None
        if self.pool is not None:
            pool = self.pool._geometry(shape)
            shape = shape[:2] + conv_output_hw(*shape[2:], *pool)
        return x, (W, b, stride, pad, pool), shape

    def keep(self, x, ctx, out, argmax):
        """Record a fused forward pass on the block and its layers; returns out."""
        if self.pool is not None:
            self.pool.keep_argmax(argmax)
            self.pool.fused_block = self
            self.pool._window = self.pool._current_window()
        self.relu.fused_block = self
        self.conv._keep(x, ctx)
        self.out = out
        self._out_saved = (out.shape, out.dtype)
        return out

    def run_unfused(self):
        """Run conv, relu (and pool) one after another on the block's last input, so that
        each layer holds the state of its own forward pass for a backward walk by hand."""
        out = self.relu.forward(self.conv.forward(self.conv.x))
        if self.pool is not None:
            self.pool.forward(out)

    def backward(self, dout):
        out, argmax, x, W, ctx, stride, pad, pool = self.saved_operands()
        dout = self.checked_dout(dout)
        k, need_dx = kernels(), self.conv.need_input_grad
        if pool is None:
            grads = k.conv_relu_backward(dout, out, x, W, ctx, stride, pad, need_dx=need_dx)
        else:
            grads = k.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad, *pool,
                                              need_dx=need_dx)
        dx, self.conv.dW, self.conv.db = grads
        return dx

    def saved_operands(self):
        """(out, argmax, x, W, ctx, stride, pad, pool) of the last forward pass, as the
        backward kernels take them (argmax and pool None without a pool), once it is checked
        that nothing the kernels index by has changed since."""
        check_ran_forward(self, self._out_saved is not None)
        check_saved(self, "out", *self._out_saved)  # the ReLU's mask, and the pool's maxima
        conv, pool = self.conv, self.pool
        check_unchanged(conv, conv._geometry, conv._current_geometry())
        argmax = window = None
        if pool is not None:
            check_unchanged(pool, pool._window, pool._current_window())
            if pool.argmax is None:
                raise RuntimeError("the block's last forward pass kept no argmax (inference "
                                   "mode): run it with with_argmax=True before backward")
            argmax = pool.checked_argmax(self.out.shape)
            window = (pool.pool_h, pool.pool_w, pool.stride, pool.pad)
        W = as_real_array("W", conv.W, ndim=4).astype(self.out.dtype, copy=False)
        return self.out, argmax, conv.x, W, conv.ctx, conv.stride, conv.pad, window

    def checked_dout(self, dout):
        """dout as the backward kernels take it: the shape of the block's output, its dtype."""
        dout = as_float_array("dout", dout, ndim=4)
        check_shape("dout", dout, self.out.shape)
        return dout.astype(self.out.dtype, copy=False)


def fuse(layers):
    """The layers as run: each Convolution -> Relu (-> Pooling) run becomes one block."""
    steps, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if (type(layer) is Convolution and i + 1 < len(layers)
                and type(layers[i + 1]) is Relu):
            pool = layers[i + 2] if i + 2 < len(layers) and type(layers[i + 2]) is Pooling else None
            steps.append(ConvReluBlock(layer, layers[i + 1], pool))
            i += 3 if pool is not None else 2
        else:
            steps.append(layer)
            i += 1
    return steps
