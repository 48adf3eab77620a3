"""The public jit kernels, called directly with arguments that do not fit: each raises a clear
error that names the kernel and the argument, before its compiled loops touch memory.

Without the checks of kernels/jit/contracts.py every case here crashed the process (a
negative pad, a label past the last class, 2-D optimizer arrays) or read past an array's end
and returned what lay there (a short bias, mismatched batches). The fault sweep of 2026-12-06
found them by placing each argument in front of 1e30 values.
"""
import re
import subprocess
import sys

import numpy as np
import pytest

from fastconv.kernels import jit as J
from fastconv.kernels import reference as R

rng = np.random.default_rng(11)


def rand(*shape):
    return rng.standard_normal(shape)


def conv_operands(N=2, C=3, H=12, FN=4, F=3):
    return rand(N, C, H, H), rand(FN, C, F, F), rand(FN)


def block_backward_operands():
    """(dout, out, argmax, x, W) of a 3x3 pad-1 conv -> relu -> 2x2 pool block."""
    x, W, b = conv_operands()
    out, argmax, _ = J.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    return rand(*out.shape), out, argmax, x, W


def _adam(shape):
    arrays = [np.ones(shape) for _ in range(4)]
    return lambda: J.adam_update(*arrays, 0.001, 0.9, 0.999, 1e-7)


def _pool_backward(dout_shape, argmax_shape, x_shape=(2, 3, 6, 6)):
    return lambda: J.maxpool_backward(rand(*dout_shape), np.zeros(argmax_shape, np.intp),
                                      x_shape, 2, 2, 2)


# (the operands of a backward case are made when the case runs, not when pytest collects
# the file: a forward pass compiles kernels, and a test that is not selected needs none)
def _block_backward(change):
    def call():
        dout, out, argmax, x, W = block_backward_operands()
        args = dict(dout=dout, out=out, argmax=argmax, x=x, W=W)
        args.update(change(args))
        return J.conv_relu_pool_backward(args["dout"], args["out"], args["argmax"],
                                         args["x"], args["W"], None, 1, 1, 2, 2, 2, 0)
    return call


def _blocks_backward(change):
    """conv_blocks_backward of one pooled block and an affine layer, changed by change."""
    def call():
        x, W, b = conv_operands()
        W2 = rand(144, 10)
        (out, argmax, ctx), = J.conv_blocks_forward(x, [(W, b, 1, 1, (2, 2, 2, 0))], W2)[0]
        args = dict(dout=rand(2, 10), x2=out.reshape(2, -1), W2=W2)
        args.update(change(args))
        blocks = [(out, argmax, x, W, ctx, 1, 1, (2, 2, 2, 0))]
        return J.conv_blocks_backward(args["dout"], blocks, affine=(args["x2"], args["W2"]))
    return call


def _read_only_relu_backward():
    dout = np.ones(4)
    dout.flags.writeable = False
    return J.relu_backward(dout, np.zeros(4, bool))


def _blocks_backward_affine(change):
    """conv_blocks_backward of one pooled block, with affine = change(x2, W2)."""
    def call():
        x, W, b = conv_operands()
        W2 = rand(144, 10)
        (out, argmax, ctx), = J.conv_blocks_forward(x, [(W, b, 1, 1, (2, 2, 2, 0))], W2)[0]
        blocks = [(out, argmax, x, W, ctx, 1, 1, (2, 2, 2, 0))]
        return J.conv_blocks_backward(rand(2, 10), blocks,
                                      affine=change(out.reshape(2, -1), W2))
    return call

x0, W0, b0 = conv_operands()
# what once crashed the process: run in a child (below), so that a check that goes missing
# fails a test instead of killing the suite
ONCE_CRASHED = {
    "sgd on 2-D arrays": (lambda: J.sgd_update(np.ones((10, 5)), np.ones((10, 5)), 0.1),
                          ValueError, "must be 1-D"),
    "momentum on 2-D arrays": (
        lambda: J.momentum_update(np.ones((10, 5)), np.ones((10, 5)), np.zeros((10, 5)),
                                  0.01, 0.9), ValueError, "must be 1-D"),
    "adam on 2-D float32 arrays": (_adam((784, 50)), ValueError, "must be 1-D"),
    "sgd on an integer parameter": (
        lambda: J.sgd_update(np.array([1, 1]), np.array([30.0, -30.0]), 0.01), TypeError,
        "must hold float32 or float64"),
    "momentum with an integer velocity": (
        lambda: J.momentum_update(np.ones(4), np.full(4, 0.5), np.ones(4, np.int64), 0.1, 0.9),
        TypeError, "must hold float32 or float64"),
    "adagrad with a boolean state": (
        lambda: J.adagrad_update(np.ones(4), np.ones(4), np.ones(4, bool), 0.1, 1e-7),
        TypeError, "must hold float32 or float64"),
    # (compiled, Numba cannot type these calls; with NUMBA_DISABLE_JIT the check runs)
    "sgd on a 0-d parameter": (
        lambda: J.sgd_update(np.array(1.0), np.ones(50), 0.01), (TypeError, ValueError),
        "param, grad and the state arrays must be 1-D"),
    "adam with a 2-D gradient": (
        lambda: J.adam_update(*(np.ones(6) if i != 1 else np.ones((6, 2)) for i in range(4)),
                              0.001, 0.9, 0.999, 1e-7), (TypeError, ValueError),
        "param, grad and the state arrays must be 1-D"),
    "softmax backward, a label past the last class": (
        lambda: J.softmax_cross_entropy_backward(np.full((4, 5), 0.2), np.array([0, 10**9, 2, 3])),
        ValueError, "t labels must lie in [0, 5)"),
    "softmax backward, a negative label": (
        lambda: J.softmax_cross_entropy_backward(np.full((4, 5), 0.2), np.array([0, -1, 2, 3])),
        ValueError, "got -1 at row 1"),
    "softmax forward, a label far below 0": (
        lambda: J.softmax_cross_entropy_forward(np.zeros((4, 5)), np.array([0, -10**6, 2, 3])),
        ValueError, "t labels must lie"),
    "softmax backward, t shorter than y": (
        lambda: J.softmax_cross_entropy_backward(np.full((4, 5), 0.2), np.array([0, 1, 2])),
        ValueError, "one label for each of the 4 rows"),
    "softmax backward, 0-d t": (
        lambda: J.softmax_cross_entropy_backward(np.full((4, 5), 0.2), np.array(1)),
        ValueError, "got shape ()"),
    "softmax forward, float labels": (
        lambda: J.softmax_cross_entropy_forward(np.zeros((4, 5)), np.array([0.0, 1, 2, 3])),
        TypeError, "integer labels"),
    "conv forward, pad -1": (lambda: J.conv2d_forward(x0, W0, b0, 1, -1), ValueError,
                             "conv2d_forward: pad must be at least 0"),
    "fused conv forward, pad -1": (lambda: J.conv_relu_forward(x0, W0, b0, 1, -1), ValueError,
                                   "pad must be at least 0"),
    "fused pooled conv forward, pad -1": (
        lambda: J.conv_relu_pool_forward(x0, W0, b0, 1, -1, 2, 2, 2, 0), ValueError,
        "pad must be at least 0"),
}
CASES = {
    # (what once read past an array's end)
    "affine forward, b shorter than W's columns": (
        lambda: J.affine_forward(np.ones((2, 3)), np.ones((3, 5)), np.zeros(4)), ValueError,
        "affine_forward: b must have shape (5,)"),
    "affine forward, W of other rows": (
        lambda: J.affine_forward(np.ones((4, 5)), np.ones((6, 5)), np.ones(5)), ValueError,
        "affine_forward: W must have one row for each of x's 5 columns; got W of shape (6, 5)"),
    "affine forward, a 1-D x": (
        lambda: J.affine_forward(np.ones(24), np.ones((6, 5)), np.ones(5)), ValueError,
        "affine_forward: x must have 2 axes; got shape (24,)"),
    "affine backward, dout of other columns": (
        lambda: J.affine_backward(np.ones((4, 3)), rand(4, 2), rand(2, 5)), ValueError,
        "affine_backward: dout must have shape (4, 5)"),
    "batchnorm forward, gamma short": (
        lambda: J.batchnorm_forward(rand(6, 5), np.ones(4), np.zeros(5), 1e-5), ValueError,
        "gamma must have shape (5,)"),
    "batchnorm forward, 0-d beta": (
        lambda: J.batchnorm_forward(rand(6, 5), np.ones(5), np.array(0.0), 1e-5), ValueError,
        "beta must have shape (5,)"),
    "batchnorm backward, xc a row short": (
        lambda: J.batchnorm_backward(np.ones((6, 5)), rand(5, 5), rand(6, 5), np.ones(5),
                                     np.ones(5)), ValueError, "xc must have shape (6, 5)"),
    "col2im, col a row short": (
        lambda: J.col2im(np.ones((287, 27)), (2, 3, 12, 12), 3, 3, 1, 1), ValueError,
        "col must have shape (288, 27)"),
    "conv forward, b shorter than the filters": (
        lambda: J.conv2d_forward(x0, W0, np.zeros(3), 1, 1), ValueError,
        "b must have shape (4,)"),
    "conv forward, W of other channels": (
        lambda: J.conv2d_forward(x0, rand(4, 2, 3, 3), b0, 1, 1), ValueError,
        "W must have x's 3 channels"),
    "conv backward, dout of fewer images": (
        lambda: J.conv2d_backward(np.ones((1, 4, 12, 12)), x0, W0, None, 1, 1), ValueError,
        "dout must have shape (2, 4, 12, 12)"),
    "pooled block backward, argmax an image short": (
        _block_backward(lambda a: {"argmax": a["argmax"][:1]}), ValueError,
        "argmax must have shape (2, 4, 6, 6)"),
    "pooled block backward, dout an image short": (
        _block_backward(lambda a: {"dout": a["dout"][:1]}), ValueError,
        "dout must have shape (2, 4, 6, 6)"),
    "pooled block backward, x of more images": (
        _block_backward(lambda a: {"x": np.concatenate([a["x"], a["x"]])}), ValueError,
        "dout must have shape (4, 4, 6, 6)"),
    "pooled block backward, argmax of another dtype": (
        _block_backward(lambda a: {"argmax": a["argmax"].astype(np.int8)}), TypeError,
        "argmax must be the intp window indices"),
    "max-pool backward, dout of fewer images than argmax": (
        _pool_backward((1, 3, 3, 3), (2, 3, 3, 3)), ValueError,
        "dout must have shape (2, 3, 3, 3)"),
    "max-pool backward, argmax of fewer images": (
        _pool_backward((2, 3, 3, 3), (1, 3, 3, 3)), ValueError,
        "argmax must have shape (2, 3, 3, 3)"),
    "col2im, an input_shape of three sizes": (
        lambda: J.col2im(np.ones((288, 27)), (2, 3, 12), 3, 3, 1, 1), ValueError,
        "col2im: input_shape must be (N, C, H, W) with N at least 0 and C, H and W at least "
        "1; got (2, 3, 12)"),
    "max-pool backward, an x_shape with no channels": (
        _pool_backward((2, 3, 3, 3), (2, 3, 3, 3), (2, 0, 6, 6)), ValueError,
        "x_shape must be (N, C, H, W) with N at least 0 and C, H and W at least 1"),
    "max-pool backward, an x_shape of fewer images than dout": (
        _pool_backward((2, 3, 3, 3), (2, 3, 3, 3), (0, 3, 6, 6)), ValueError,
        "dout must have shape (0, 3, 3, 3)"),
    # (the edges of a range: one past the last class, one element too many)
    "softmax forward, a label equal to the class count": (
        lambda: J.softmax_cross_entropy_forward(np.zeros((4, 5)), np.array([0, 5, 2, 3])),
        ValueError, "t labels must lie in [0, 5); got 5 at row 1"),
    "conv forward, W of no filters": (
        lambda: J.conv2d_forward(x0, W0[:0], b0[:0], 1, 1), ValueError,
        "conv2d_forward: W must hold at least one filter; got shape (0, 3, 3, 3)"),
    "sgd, a gradient one element longer than the parameter": (
        lambda: J.sgd_update(np.ones(6), np.ones(7), 0.1), ValueError,
        "every array must have the parameter's size"),
    # (what raised NumPy's or Python's words: an AttributeError, a reshape, matmul's, 1 / 0)
    "blocks forward, W2 of other rows": (
        lambda: J.conv_blocks_forward(x0, [(W0, b0, 1, 1, (2, 2, 2, 0))], rand(100, 10)),
        ValueError, "conv_blocks_forward: W2 must be (features, outputs) with one row for each "
        "of the last block's 144 outputs per image; got shape (100, 10)"),
    "blocks backward, dout of other columns": (
        _blocks_backward(lambda a: {"dout": rand(2, 9)}), ValueError,
        "conv_blocks_backward: dout must have shape (2, 10) (the affine layer's output"),
    "blocks backward, x2 of other features": (
        _blocks_backward(lambda a: {"x2": a["x2"][:, 1:]}), ValueError,
        "conv_blocks_backward: affine[0] must have shape (2, 144)"),
    "conv forward, no images": (
        lambda: J.conv2d_forward(x0[:0], W0, b0, 1, 1), ValueError,
        "conv2d_forward: x must hold at least one image; got shape (0, 3, 12, 12)"),
    "conv backward, no images": (
        lambda: J.conv2d_backward(np.ones((0, 4, 12, 12)), x0[:0], W0, None, 1, 1), ValueError,
        "conv2d_backward: x must hold at least one image"),
    "pooled block forward, no images": (
        lambda: J.conv_relu_pool_forward(x0[:0], W0, b0, 1, 1, 2, 2, 2, 0), ValueError,
        "conv_relu_pool_forward: x must hold at least one image"),
    "max-pool forward, pool_h 0": (lambda: J.maxpool_forward(np.ones((1, 1, 4, 4)), 0, 2, 2),
                                   ValueError, "maxpool_forward: pool_h must be at least 1"),
    "fused pool, pool_w 0": (lambda: J.conv_relu_pool_forward(x0, W0, b0, 1, 1, 2, 0, 2, 0),
                             ValueError, "pool_w must be at least 1"),
    "fused pool, a window larger than the output": (
        lambda: J.conv_relu_pool_forward(x0, W0, b0, 1, 1, 20, 20, 2, 0), ValueError,
        "a 20x20 window does not fit the 12x12 input"),
    "im2col, stride -1": (lambda: J.im2col(np.ones((2, 3, 9, 9)), 3, 3, -1, 0), ValueError,
                          "im2col: stride must be at least 1"),
    "im2col, a float stride": (lambda: J.im2col(np.ones((2, 3, 9, 9)), 3, 3, 1.0, 0),
                               TypeError, "stride must be an integer"),
    "relu backward, a mask smaller than dout": (
        lambda: J.relu_backward(np.ones((4, 5, 2)), np.zeros((4, 5), bool)), ValueError,
        "mask must have shape (4, 5, 2)"),
    "relu backward, an int8 mask": (
        lambda: J.relu_backward(np.ones((4, 5)), np.zeros((4, 5), np.int8)), TypeError,
        "mask must be the boolean array"),
    # (what computed in integers where the twin computes in floats)
    "softmax forward, integer scores": (
        lambda: J.softmax_cross_entropy_forward(np.zeros((4, 5), np.int64), np.arange(4)),
        TypeError, "x must be a float32 or float64 array in the machine's byte order; got <i8"),
    "conv forward, big-endian x": (
        lambda: J.conv2d_forward(x0.astype(">f8"), W0, b0, 1, 1), TypeError,
        "x must be a float32 or float64 array in the machine's byte order; got >f8"),
    "affine backward, boolean dout": (
        lambda: J.affine_backward(np.ones((4, 3), bool), rand(4, 2), rand(2, 3)), TypeError,
        "dout must be a float32 or float64 array in the machine's byte order; got |b1"),
    # (what the sweep of 2026-12-07 found computing something else than the twin, or raising
    # Numba's or NumPy's words; /tmp/sweepA of that session)
    "weight decay, lam None": (
        lambda: J.weight_decay_gradient(np.ones((2, 2)), None, np.ones((2, 2))), TypeError,
        "weight_decay_gradient: lam must be a real number; got None"),
    "batchnorm forward, eps None": (
        lambda: J.batchnorm_forward(rand(5, 4), np.ones(4), np.zeros(4), None), TypeError,
        "batchnorm_forward: eps must be a real number; got None"),
    "batchnorm forward, eps as text": (
        lambda: J.batchnorm_forward(rand(5, 4), np.ones(4), np.zeros(4), "0.1"), TypeError,
        "eps must be a real number; got '0.1'"),
    "batchnorm forward, float32 gamma beside float64 x": (
        lambda: J.batchnorm_forward(rand(5, 4), np.ones(4, np.float32), np.zeros(4), 1e-5),
        TypeError, "batchnorm_forward: gamma must have x's dtype float64; got float32"),
    "batchnorm backward, float32 std": (
        lambda: J.batchnorm_backward(rand(6, 5), rand(6, 5), rand(6, 5),
                                     np.ones(5, np.float32), np.ones(5)), TypeError,
        "batchnorm_backward: std must have dout's dtype float64; got float32"),
    "affine forward, a float64 bias beside float32 x and W": (
        lambda: J.affine_forward(rand(4, 3).astype(np.float32), rand(3, 2).astype(np.float32),
                                 np.zeros(2)), TypeError,
        "affine_forward: b must have x's dtype float32; got float64"),
    "affine forward, float32 W beside float64 x": (
        lambda: J.affine_forward(rand(4, 3), rand(3, 2).astype(np.float32), np.zeros(2)),
        TypeError, "affine_forward: W must have x's dtype float64; got float32"),
    "affine backward, float32 dout": (
        lambda: J.affine_backward(rand(4, 2).astype(np.float32), rand(4, 3), rand(3, 2)),
        TypeError, "affine_backward: dout must have x's dtype float64; got float32"),
    "conv forward, float32 b beside float64 x": (
        lambda: J.conv2d_forward(x0, W0, b0.astype(np.float32), 1, 1), TypeError,
        "conv2d_forward: b must have x's dtype float64; got float32"),
    "conv forward, float32 W beside float64 x": (
        lambda: J.conv2d_forward(x0, W0.astype(np.float32), b0, 1, 1), TypeError,
        "conv2d_forward: W must have x's dtype float64; got float32"),
    "conv backward, float32 dout": (
        lambda: J.conv2d_backward(rand(2, 4, 12, 12).astype(np.float32), x0, W0, None, 1, 1),
        TypeError, "conv2d_backward: dout must have x's dtype float64; got float32"),
    "pooled block backward, float32 dout": (
        _block_backward(lambda a: {"dout": a["dout"].astype(np.float32)}), TypeError,
        "conv_relu_pool_backward: dout must have x's dtype float64; got float32"),
    "conv forward, x of no channels": (
        lambda: J.conv2d_forward(np.zeros((2, 0, 6, 6)), np.zeros((4, 0, 3, 3)), b0, 1, 1),
        ValueError, "conv2d_forward: x must have at least one channel; got shape (2, 0, 6, 6)"),
    "blocks forward, integer x and no blocks": (
        lambda: J.conv_blocks_forward(np.arange(384).reshape(2, 3, 8, 8), [],
                                      np.full((192, 2), 0.5)), TypeError,
        "conv_blocks_forward: x must be a float32 or float64 array"),
    "blocks forward, float32 W2 beside float64 x": (
        lambda: J.conv_blocks_forward(x0, [(W0, b0, 1, 1, (2, 2, 2, 0))],
                                      rand(144, 10).astype(np.float32)), TypeError,
        "conv_blocks_forward: W2 must have x's dtype float64; got float32"),
    "blocks forward, complex W2": (
        lambda: J.conv_blocks_forward(x0, [(W0, b0, 1, 1, (2, 2, 2, 0))],
                                      rand(144, 10).astype(complex)), TypeError,
        "conv_blocks_forward: W2 must be a float32 or float64 array"),
    "blocks backward, float32 dout": (
        _blocks_backward(lambda a: {"dout": a["dout"].astype(np.float32)}), TypeError,
        "conv_blocks_backward: W2 must have dout's dtype float32; got float64"),
    "relu forward, complex x": (
        lambda: J.relu_forward(np.ones(3, complex)), TypeError,
        "relu_forward: x must be a float32 or float64 array in the machine's byte order"),
    "relu forward, None": (lambda: J.relu_forward(None), TypeError,
                           "relu_forward: x must be a float32 or float64 array"),
    "relu backward, dout a list": (
        lambda: J.relu_backward([1.0, 2.0], np.zeros(2, bool)), TypeError,
        "relu_backward: dout must be a float32 or float64 array"),
    "relu backward, a read-only dout": (_read_only_relu_backward, ValueError,
                                        "relu_backward: dout must be writable"),
    "col2im, an input_shape of floats": (
        lambda: J.col2im(np.ones((288, 27)), (2, 3, 12.7, 12), 3, 3, 1, 1), TypeError,
        "col2im: input_shape must be a tuple of four integers (N, C, H, W); got "
        "(2, 3, 12.7, 12)"),
    "col2im, input_shape None": (
        lambda: J.col2im(np.ones((288, 27)), None, 3, 3, 1, 1), TypeError,
        "input_shape must be a tuple of four integers"),
    "im2col, a bool filter size": (lambda: J.im2col(np.ones((2, 3, 9, 9)), True, 3, 1, 0),
                                   TypeError, "im2col: filter_h must be an integer; got True"),
    "max-pool forward, a pad of 2**63": (
        lambda: J.maxpool_forward(np.ones((2, 3, 6, 6)), 2, 2, 2, 2**63), ValueError,
        "maxpool_forward: pad must be at most 2147483647; got 9223372036854775808"),
    "im2col, a pad of 2**31": (lambda: J.im2col(np.ones((2, 3, 9, 9)), 3, 3, 1, 2**31),
                               ValueError, "im2col: pad must be at most 2147483647"),
    "blocks forward, a block of four items": (
        lambda: J.conv_blocks_forward(x0, [(W0, b0, 1, 1)]), ValueError,
        "conv_blocks_forward: blocks[0] must be a tuple (W, b, stride, pad, pool); got 4 "
        "items"),
    "blocks backward, no blocks": (
        lambda: J.conv_blocks_backward(rand(2, 10), []), ValueError,
        "conv_blocks_backward: blocks must be a list of at least 1 block tuples"),
    "blocks backward, affine of one array": (
        _blocks_backward_affine(lambda x2, W2: (x2,)), ValueError,
        "conv_blocks_backward: affine must be None or (x2, W2)"),
    "sgd, a list as the parameter": (
        lambda: J.sgd_update([1.0] * 10, np.ones(10), 0.1), TypeError,
        "sgd_update: param, grad and the state arrays must be 1-D float32 or float64 arrays "
        "of one size (param and the states writable), the hyperparameters numbers; got list, "
        "float64[10], float"),
    "sgd, a float16 parameter": (
        lambda: J.sgd_update(np.ones(10, np.float16), np.ones(10), 0.1), TypeError,
        "got float16[10], float64[10], float"),
}


@pytest.mark.parametrize("case", sorted(CASES))
# a list is refused before Numba types it, which warns of reflected lists first (other
# warnings vary with Numba's release: 0.58 warns of its old-style errors on float16)
@pytest.mark.filterwarnings("error:\\s*Encountered the use of a type that is scheduled "
                            "for deprecation")
def test_a_misfit_argument_raises_a_clear_error(case):
    call, error, message = CASES[case]
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("contract_cases", sys.argv[1])
cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cases)
for name, (call, error, message) in sorted(cases.ONCE_CRASHED.items()):
    print(name, flush=True)  # the last name printed is the one that crashed
    try:
        call()
    except error as raised:
        print("raised", message in str(raised), flush=True)
    else:
        print("returned", flush=True)
"""


def test_the_calls_that_once_crashed_raise_a_clear_error():
    done = subprocess.run([sys.executable, "-c", CHILD, __file__], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-500:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0::2] == sorted(ONCE_CRASHED)
    assert set(lines[1::2]) == {"raised True"}, done.stdout


def test_a_call_numba_cannot_type_says_what_the_arguments_must_be():
    if not hasattr(J.sgd_update.serial, "py_func"):
        pytest.skip("NUMBA_DISABLE_JIT: nothing is typed")
    with pytest.raises(TypeError) as raised:
        J.sgd_update(np.array(1.0), np.ones(50), 0.01)
    assert str(raised.value) == (
        "sgd_update: param, grad and the state arrays must be 1-D float32 or float64 arrays "
        "of one size (param and the states writable), the hyperparameters numbers; got "
        "float64[], float64[50], float")


def test_the_labels_are_checked_in_any_integer_dtype():
    y = np.full((3, 4), 0.25)
    for dtype in (np.int8, np.uint8, np.int32, np.uint64):
        t = np.array([0, 3, 1], dtype)
        np.testing.assert_array_equal(J.softmax_cross_entropy_backward(y, t),
                                      R.softmax_cross_entropy_backward(y, t.astype(np.intp)))
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        J.softmax_cross_entropy_backward(y, np.array([0, 2**63, 1], np.uint64))


@pytest.mark.parametrize("kernels", [J, R], ids=["jit", "reference"])
def test_batch_normalization_of_no_rows_is_refused(kernels):
    with pytest.raises(ValueError, match=r"batchnorm_forward: x must hold at least one row"):
        kernels.batchnorm_forward(np.ones((0, 5)), np.ones(5), np.zeros(5), 1e-7)
    empty = np.ones((0, 5))
    with pytest.raises(ValueError, match=r"batchnorm_backward: dout must hold at least one "):
        kernels.batchnorm_backward(empty, empty, empty, np.ones(5), np.ones(5))


def test_pooling_and_im2col_of_an_empty_batch_match_the_twin():
    x = np.ones((0, 3, 6, 6))
    results = []
    for kernels in (J, R):
        out, argmax = kernels.maxpool_forward(x, 2, 2, 2)
        dx = kernels.maxpool_backward(np.ones(out.shape), argmax, x.shape, 2, 2, 2)
        col = kernels.col2im(np.ones((0, 27)), x.shape, 3, 3, 1, 1)
        rows = kernels.im2col(x, 3, 3, 1, 1)
        results.append([(a.shape, a.dtype) for a in (out, dx, col, rows)])
    assert results[0] == results[1] == [((0, 3, 3, 3), np.float64), ((0, 3, 6, 6), np.float64),
                                        ((0, 3, 6, 6), np.float64), ((0, 27), np.float64)]


def test_relu_backward_zeroes_a_strided_dout_in_place_as_the_twin_does():
    base = rand(6, 8)
    mask = rand(6, 4) < 0
    results = []
    for kernels in (J, R):
        whole = base.copy()
        dout = whole[:, ::2]
        assert kernels.relu_backward(dout, mask) is dout
        results.append(whole)
    np.testing.assert_array_equal(results[0], results[1])
    assert (results[0][:, ::2][mask] == 0).all() and mask.any()


def test_a_refused_block_backward_pass_writes_nothing():
    dout, out, argmax, x, W = block_backward_operands()
    saved = [a.copy() for a in (dout, out, argmax, x, W)]
    with pytest.raises(ValueError):
        J.conv_relu_pool_backward(dout[:1], out, argmax, x, W, None, 1, 1, 2, 2, 2, 0)
    for before, after in zip(saved, (dout, out, argmax, x, W)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("pool", [True, False])
def test_fitting_arguments_still_match_the_twin(pool):
    x, W, b = conv_operands()
    results = []
    for kernels in (J, R):
        if pool:
            out, argmax, ctx = kernels.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
            dout = np.random.default_rng(0).standard_normal(out.shape)
            grads = kernels.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 1, 2, 2,
                                                    2, 0)
        else:
            out, ctx = kernels.conv_relu_forward(x, W, b, 1, 1)
            dout = np.random.default_rng(0).standard_normal(out.shape)
            grads = kernels.conv_relu_backward(dout, out, x, W, ctx, 1, 1)
        results.append((out,) + tuple(grads))
    for mine, theirs in zip(*results):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max())


# The 20x20 case above is too tall and too wide at once: a window that
# fits one way only must be refused too (``contracts.windows`` checks out_h and out_w; with
# out_w < 1 unchecked, a too-wide pool returned an empty array and a too-wide filter failed in
# NumPy's words).
@pytest.mark.parametrize("call, message", [
    (lambda: J.maxpool_forward(np.ones((1, 1, 4, 4)), 2, 5, 1),
     "maxpool_forward: a 2x5 window does not fit the 4x4 input padded by 0"),
    (lambda: J.maxpool_forward(np.ones((1, 1, 4, 4)), 5, 2, 1),
     "maxpool_forward: a 5x2 window does not fit the 4x4 input padded by 0"),
    (lambda: J.im2col(np.ones((2, 3, 9, 9)), 3, 12, 1, 1),
     "im2col: a 3x12 window does not fit the 9x9 input padded by 1"),
    (lambda: J.conv2d_forward(rand(2, 3, 12, 6), rand(4, 3, 3, 9), rand(4), 1, 1),
     "conv2d_forward: a 3x9 window does not fit the 12x6 input padded by 1"),
    (lambda: J.conv_relu_pool_forward(rand(2, 3, 12, 12), rand(4, 3, 3, 3), rand(4), 1, 1,
                                      2, 20, 2, 0),
     "a 2x20 window does not fit the 12x12 input"),
], ids=["pool too wide", "pool too tall", "im2col too wide", "conv too wide",
        "fused pool too wide"])
def test_a_window_that_does_not_fit_one_way_is_refused(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# The cases above refuse x_shape (2, 0, 6, 6) and (2, 3, 12); a negative image
# count must be refused as well, and named: without the check of N (``contracts.image_shape``)
# these calls still failed, but on "dout must have shape (-2, 3, 3, 3)" and "col must have
# shape (-288, 27)": errors that blame an argument that is fine.
@pytest.mark.parametrize("call, message", [
    (lambda: J.maxpool_backward(np.ones((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), np.intp),
                                (-2, 3, 6, 6), 2, 2, 2),
     "maxpool_backward: x_shape must be (N, C, H, W) with N at least 0 and C, H and W at "
     "least 1; got (-2, 3, 6, 6)"),
    (lambda: J.col2im(np.ones((288, 27)), (-2, 3, 12, 12), 3, 3, 1, 1),
     "col2im: input_shape must be (N, C, H, W) with N at least 0 and C, H and W at least 1; "
     "got (-2, 3, 12, 12)"),
], ids=["max-pool backward", "col2im"])
def test_a_negative_image_count_is_refused_by_name(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
