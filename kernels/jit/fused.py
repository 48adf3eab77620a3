"""Convolution -> ReLU (-> max pool) compiled by Numba, fused into the conv pipeline.

The convolution is the chunked im2col + GEMM pipeline of ``pipeline.py``; what is fused is
the pass after each chunk's GEMM (``epilogues``): bias, ReLU and pooling read the GEMM output
while it is in cache and write only the block's output (and the argmax). The backward pass
needs no saved mask, see ``epilogues``.

``conv_blocks_forward`` and ``conv_blocks_backward`` run consecutive blocks, and the affine
layer after them, as one pass over each part of the batch: a part takes its own images
through every block without waiting for the other parts, since no image needs another's.
A step then hands work to the pool thread twice (forward, backward) instead of twice per
block: waking the idle core costs about 100 us each time on the reference machine.
"""
import math

import numpy as np

from . import recycle
from .contracts import (FUSED_POOL_NAMES, bias, conv_geometry, float_array, same_dtype, shaped,
                        windows)
from .elementwise import _column_sum, affine_backward
from .epilogues import (GRADIENT_RELU, GRADIENT_RELU_POOL, NO_ARGMAX, NO_POOL, OUTPUT_RELU,
                        OUTPUT_RELU_POOL, OUTPUT_RELU_POOL_VALUES)
from .gemm import pieces, single_threaded_blas
from .pipeline import (backward_part, backward_pipeline, forward_part, forward_pipeline,
                       images_parallel)
from .tiled_product import tiled_product, tiles_pay

__all__ = ["conv_relu_forward", "conv_relu_backward",
           "conv_relu_pool_forward", "conv_relu_pool_backward",
           "conv_blocks_forward", "conv_blocks_backward"]


def _block_shape(kernel, x, W, stride, pad, pool):
    """The output shape of a conv -> relu (-> pool) block, pool (pool_h, pool_w, stride, pad)
    or None; raises where the operands do not fit."""
    conv_h, conv_w = conv_geometry(kernel, x, W, stride, pad)
    if pool is None:
        return (x.shape[0], W.shape[0], conv_h, conv_w)
    if len(pool) != 4:
        raise ValueError(f"{kernel}: pool must be (pool_h, pool_w, pool_stride, pool_pad); "
                         f"got {pool!r}")
    return (x.shape[0], W.shape[0]) + windows(kernel, conv_h, conv_w, *pool,
                                              names=FUSED_POOL_NAMES)


def _block_epilogue(kernel, x, W, b, stride, pad, pool, with_argmax):
    """The epilogue (kind, b, pool, out, argmax) of ``forward_epilogue`` for a conv -> relu
    (-> pool) block, pool (pool_h, pool_w, stride, pad) or None, its out and argmax
    allocated (argmax empty without a pool or ``with_argmax``)."""
    shape = _block_shape(kernel, x, W, stride, pad, pool)
    same_dtype(kernel, "x", x, b=bias(kernel, b, W.shape[0]))
    out = recycle.empty(shape, x.dtype)
    if pool is None:
        return OUTPUT_RELU, b, NO_POOL, out, NO_ARGMAX
    argmax = recycle.empty((shape[0] if with_argmax else 0,) + shape[1:], np.intp)
    kind = OUTPUT_RELU_POOL if with_argmax else OUTPUT_RELU_POOL_VALUES
    return kind, b, pool, out, argmax


def _block_prologue(kernel, dout, out, argmax, x, W, stride, pad, pool):
    """The prologue (kind, pool, dout, out, argmax) of ``backward_prologue`` for a block
    whose pool is (pool_h, pool_w, stride, pad) or None, after checking that dout, out and
    argmax have the shapes its forward pass on x gives."""
    shape = _block_shape(kernel, x, W, stride, pad, pool)
    float_array(kernel, "dout", dout)
    shaped(kernel, "dout", dout, shape, " (the block's output for x)")
    # the relu's output, or the pool's: the gradient's mask is where it is positive
    shaped(kernel, "out", float_array(kernel, "out", out), shape, " (the block's output)")
    same_dtype(kernel, "x", x, dout=dout, out=out)
    if pool is None:
        return (GRADIENT_RELU, NO_POOL, np.ascontiguousarray(dout), np.ascontiguousarray(out),
                NO_ARGMAX)
    shaped(kernel, "argmax", argmax, shape, " (one window index for each pooled output)")
    if argmax.dtype != np.intp:
        raise TypeError(f"{kernel}: argmax must be the intp window indices that the forward "
                        f"pass returned; got dtype {argmax.dtype}")
    return (GRADIENT_RELU_POOL, pool, np.ascontiguousarray(dout),
            np.ascontiguousarray(out), np.ascontiguousarray(argmax))


def conv_relu_forward(x, W, b, stride, pad):
    """Returns (out, None)."""
    epilogue = _block_epilogue("conv_relu_forward", x, W, b, stride, pad, None, False)
    forward_pipeline(x, W, stride, pad, epilogue)
    return epilogue[3], None


def conv_relu_backward(dout, out, x, W, ctx, stride, pad, need_dx=True):
    prologue = _block_prologue("conv_relu_backward", dout, out, None, x, W, stride, pad, None)
    return backward_pipeline(x, W, stride, pad, need_dx, prologue)


def conv_relu_pool_forward(x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad,
                           with_argmax=True):
    """Returns (out, argmax, None); argmax is None when not ``with_argmax`` (inference)."""
    epilogue = _block_epilogue("conv_relu_pool_forward", x, W, b, stride, pad,
                               (pool_h, pool_w, pool_stride, pool_pad), with_argmax)
    forward_pipeline(x, W, stride, pad, epilogue)
    _, _, _, out, argmax = epilogue
    return out, (argmax if with_argmax else None), None


def conv_relu_pool_backward(dout, out, argmax, x, W, ctx, stride, pad,
                            pool_h, pool_w, pool_stride, pool_pad, need_dx=True):
    prologue = _block_prologue("conv_relu_pool_backward", dout, out, argmax, x, W, stride, pad,
                               (pool_h, pool_w, pool_stride, pool_pad))
    return backward_pipeline(x, W, stride, pad, need_dx, prologue)


def _block_tuples(kernel, blocks, fields, at_least=0):
    """Raises unless blocks is a list or tuple of at least at_least tuples of the fields."""
    if not isinstance(blocks, (list, tuple)) or len(blocks) < at_least:
        raise ValueError(f"{kernel}: blocks must be a list of at least {at_least} block "
                         f"tuples {fields}; got {blocks!r:.80}")
    size = fields.count(",") + 1
    for i, block in enumerate(blocks):
        if not isinstance(block, tuple) or len(block) != size:
            got = f"{len(block)} items" if isinstance(block, tuple) else type(block).__name__
            raise ValueError(f"{kernel}: blocks[{i}] must be a tuple {fields}; got {got}")


def _affine_after_blocks(kernel, last_out, W2, dout=None, x2=None):
    """Raises unless W2 (features, outputs) takes the last block's output, one row per image,
    and dout and x2, where given, are the affine layer's output gradient and input, all of
    one float dtype."""
    N, features = last_out.shape[0], math.prod(last_out.shape[1:])
    if float_array(kernel, "W2", W2).ndim != 2 or W2.shape[0] != features:
        raise ValueError(f"{kernel}: W2 must be (features, outputs) with one row for each of "
                         f"the last block's {features} outputs per image; got shape "
                         f"{W2.shape}")
    if dout is None:
        same_dtype(kernel, "x", last_out, W2=W2)
        return
    shaped(kernel, "dout", float_array(kernel, "dout", dout), (N, W2.shape[1]),
           " (the affine layer's output gradient)")
    same_dtype(kernel, "dout", dout, W2=W2)
    if x2 is not None:
        shaped(kernel, "affine[0]", x2, (N, features), " (the affine layer's input)")
        same_dtype(kernel, "dout", dout, **{"affine[0]": x2})


# Made part by part of the batch, an affine layer's input gradient reads all its weights in
# each part. In float32, SimpleConvNet's 4320x100 (1.7 MB) then took longer than the two
# whole products side by side (1.76 against 1.46 ms, 2 threads), more than the hand-over
# saves; DeepConvNet's 1024x50 (200 KB) runs in the parts. In float64, where the products
# themselves take twice as long, the parts win at SimpleConvNet's layer too (3.5 MB; Zen 5,
# three alternating rounds: backward pass 2.04-2.10 against 2.20-2.25 ms, step 3.94-4.09
# against 4.16-4.24 ms), while float32 was no faster there (1.08-1.14 against 1.07-1.09).
# The largest weights, by dtype, that still run in the parts; a dtype not listed always does.
AFFINE_IN_PARTS_MAX_BYTES = {np.dtype(np.float32): 1 << 20}


def _blas_product(a, b, out):
    np.matmul(a, b, out=out)


def conv_blocks_forward(x, blocks, W2=None, with_argmax=True):
    """Consecutive conv -> relu (-> pool) blocks, each taking the output of the one before:
    blocks[i] = (W, b, stride, pad, pool), pool (pool_h, pool_w, stride, pad) or None. With
    W2, an affine layer's weights (features, outputs), the last output (one row per image)
    is multiplied by it. Returns ([(out, argmax, ctx)] per block, product or None); argmax is
    None for a block without pool or when not ``with_argmax``."""
    float_array("conv_blocks_forward", "x", x, 4)
    _block_tuples("conv_blocks_forward", blocks, "(W, b, stride, pad, pool)")
    results, parts = [], []
    with single_threaded_blas():
        for W, b, stride, pad, pool in blocks:
            epilogue = _block_epilogue("conv_blocks_forward", x, W, b, stride, pad, pool,
                                       with_argmax)
            parts.append(forward_part(x, W, stride, pad, epilogue))
            x = epilogue[3]
            results.append((x, epilogue[4] if pool is not None and with_argmax else None, None))
        product = None
        if W2 is not None:
            _affine_after_blocks("conv_blocks_forward", x, W2)
            rows = x.reshape(len(x), -1)
            W2 = np.ascontiguousarray(W2)
            product = recycle.empty((len(x), W2.shape[1]), x.dtype)
            multiply = (tiled_product if tiles_pay(W2.shape[1], W2.shape[0], x.dtype)
                        else _blas_product)

        def run(lo, hi):
            for part in parts:
                part(lo, hi)
            if product is not None:
                multiply(rows[lo:hi], W2, product[lo:hi])

        images_parallel(run, len(x))
    return results, product


def conv_blocks_backward(dout, blocks, need_dx=True, affine=None):
    """The backward pass of ``conv_blocks_forward``: blocks[i] = (out, argmax, x, W, ctx,
    stride, pad, pool) as block i's forward pass saw and left them, argmax None without
    pool. With affine = (x2, W2), the affine layer's input (N, features) and weights, dout is
    that layer's output gradient (N, outputs); else the last block's. Returns (dx of the
    first block's input or None, [(dW, db)] per block, (dW2, db2) or None)."""
    _block_tuples("conv_blocks_backward", blocks, "(out, argmax, x, W, ctx, stride, pad, pool)",
                  at_least=1)
    if affine is not None:
        if not isinstance(affine, tuple) or len(affine) != 2:
            raise ValueError("conv_blocks_backward: affine must be None or (x2, W2), the affine "
                             f"layer's input and weights; got {type(affine).__name__}")
        _affine_after_blocks("conv_blocks_backward", blocks[-1][0], affine[1], dout, affine[0])
    dout = np.ascontiguousarray(dout)
    if (affine is not None
            and affine[1].nbytes > AFFINE_IN_PARTS_MAX_BYTES.get(dout.dtype, math.inf)):
        x2, W2 = affine
        dx2, dW2, db2 = affine_backward(dout, x2, W2)
        dx, grads, _ = conv_blocks_backward(dx2.reshape(blocks[-1][0].shape), blocks, need_dx)
        return dx, grads, (dW2, db2)
    with single_threaded_blas():
        if affine is not None:
            x2, W2 = affine
            x2, W2 = np.ascontiguousarray(x2), np.ascontiguousarray(W2)
            top = recycle.empty(blocks[-1][0].shape, dout.dtype)  # the last block's dout
            top_rows = top.reshape(len(top), -1)
        else:
            top = dout
        runs, block_dout = [], top
        for i in reversed(range(len(blocks))):
            out, argmax, x, W, _, stride, pad, pool = blocks[i]
            prologue = _block_prologue("conv_blocks_backward", block_dout, out, argmax, x, W,
                                       stride, pad, pool)
            part, finish, block_dout = backward_part(x, W, stride, pad, need_dx or i > 0,
                                                     prologue)
            runs.append((part, finish))

        affine_rows = {}  # image piece -> the rows of dW2 (features) that its part makes
        if affine is not None:
            images = pieces(len(dout))
            affine_rows = dict(zip(images, pieces(x2.shape[1], len(images))))
            dW2 = recycle.empty((x2.shape[1], dout.shape[1]), dout.dtype)

        def run(lo, hi):
            """Each block's share of its gradients, the last block's first."""
            if affine is not None:
                np.matmul(dout[lo:hi], W2.T, out=top_rows[lo:hi])
                if (lo, hi) in affine_rows:
                    # all images' rows, a share of the features: dout is whole from the start
                    f0, f1 = affine_rows[lo, hi]
                    np.matmul(x2[:, f0:f1].T, dout, out=dW2[f0:f1])
            return [part(lo, hi) for part, _ in runs]

        shares = images_parallel(run, len(dout))
        grads = [finish([share[j] for share in shares]) for j, (_, finish) in enumerate(runs)]
    affine_grads = None
    if affine is not None:
        db2 = np.empty(dout.shape[1], dtype=dout.dtype)
        _column_sum(dout, db2)
        affine_grads = (dW2, db2)
    dx = grads[-1][0]
    return dx, [(dW, db) for _, dW, db in reversed(grads)], affine_grads
