"""The direct stride-1 convolution of the jit pipeline (``kernels/jit/direct.py``) and its
vectors (``simd.py``): the products against a float64 NumPy oracle over random shapes,
paddings, filter counts and both dtypes, the layers that run it against their twins, bit
identity with 1 and 2 threads, and operands that do not fit."""
import os

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import direct, epilogues as ep, pipeline, simd
from fastconv.kernels.jit.im2col import _row_slot
from fastconv.kernels.shapes import conv_output_hw

from test_kernels import assert_all_close, assert_close, conv_operands
from test_pipeline import recording_choices, recording_results

SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


def every_conv_directly(max_channels=8):
    """Every stride-1 conv of up to max_channels channels that Winograd does not take runs
    directly, whatever the CPU; yields a list of each forward call's choice (True: direct)."""
    return recording_choices("_direct_operands", {(pipeline, "DIRECT_CONV"): True,
                                                  (simd, "FULL_WIDTH"): True,
                                                  (pipeline, "DIRECT_MAX_CHANNELS"): max_channels})


def oracle_rows(x, W, pad, split_rows):
    """The conv's (FN, N * out_h * out_w) rows in float64, each image's output rows in the
    order of ``_row_slot``, summed tap by tap; and the same sum of |terms|, the scale of
    its rounding."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    out_h, out_w = conv_output_hw(H, Wd, FH, FW, 1, pad)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((FN, N, out_h, out_w))
    magnitude = np.zeros_like(out)
    for c in range(C):
        for ky in range(FH):
            for kx in range(FW):
                terms = (W[:, c, ky, kx, None, None, None].astype(np.float64)
                         * xp[None, :, c, ky:ky + out_h, kx:kx + out_w])
                out += terms
                magnitude += np.abs(terms)
    rows_of = np.empty(out_h, dtype=int)
    for oy in range(out_h):
        rows_of[_row_slot.py_func(oy, out_h, split_rows)] = oy
    return out[:, :, rows_of].reshape(FN, -1), magnitude[:, :, rows_of].reshape(FN, -1)


def direct_scratch(C, H, W, FH, FW, pad, dtype):
    out_w = W + 2 * pad - FW + 1
    return (np.empty((1, C, H + 2 * pad, W + 2 * pad), dtype),
            np.empty(direct.shifted_size(C, FW, H + 2 * pad, out_w), dtype),
            np.empty(2 * C * FH * FW, np.int64))


@st.composite
def direct_geometry(draw):
    """(x shape, FN, FH, FW, pad, split_rows): filters up to 6x6, outputs from a single
    position (refused by direct_rows and left to im2col) to a few blocks of vectors, filter
    counts below, at and past blocks of 6."""
    FH, FW, pad = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, FH - 2 * pad), 30))
    W = draw(st.integers(max(1, FW - 2 * pad), 30))
    out_h = H + 2 * pad - FH + 1
    split_rows = out_h % 2 == 0 and draw(st.booleans())
    return ((draw(st.integers(1, 3)), draw(st.integers(1, 4)), H, W), draw(st.integers(1, 14)),
            FH, FW, pad, split_rows)


@SETTINGS
@given(direct_geometry(), DTYPES, st.integers(0, 2**32 - 1))
def test_direct_rows_match_the_oracle(geometry, dtype, seed):
    shape, FN, FH, FW, pad, split_rows = geometry
    N, C, H, W = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    weights = rng.standard_normal((FN, C, FH, FW)).astype(dtype)
    out_h, out_w = conv_output_hw(H, W, FH, FW, 1, pad)
    padded_weights = direct.direct_weights(weights.reshape(FN, -1))
    # images n0..n1-1 of a larger batch, into rows that start as NaN
    n0 = int(rng.integers(0, N))
    rows = np.full((padded_weights.shape[0], (N - n0) * out_h * out_w), np.nan, dtype)
    operands = (x, n0, N, padded_weights, FH, FW, pad, out_h, out_w, split_rows,
                *direct_scratch(C, H, W, FH, FW, pad, dtype), rows)
    run = out_h * out_w // (2 if split_rows else 1)
    if run < direct.BLOCK_VECTORS * simd.LANES[np.dtype(dtype)]:
        # the last block of a run starts a block before its end, inside the run
        with pytest.raises(ValueError, match="direct_rows"):
            direct.direct_rows(*operands)
        assert np.isnan(rows).all()
        return
    direct.direct_rows(*operands)
    want, magnitude = oracle_rows(x[n0:], weights, pad, split_rows)
    # one rounding per FMA, C*FH*FW of them, each at most eps of the running |sum|
    bound = 2 * C * FH * FW * np.finfo(dtype).eps * magnitude + np.finfo(dtype).tiny
    assert np.all(np.abs(rows[:FN] - want) <= bound)
    assert np.all(rows[FN:] == 0)  # the zero filters that fill the last block of 6


@SETTINGS
@given(direct_geometry(), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_run_directly_matches_twin(geometry, dtype, need_dx, seed):
    shape, FN, FH, FW, pad, _ = geometry
    rng, x, W, b = conv_operands(shape, FN, FH, FW, dtype, seed)
    with every_conv_directly() as chosen:
        out, ctx = jit.conv_relu_forward(x, W, b, 1, pad)
        ref_out, ref_ctx = reference.conv_relu_forward(x, W, b, 1, pad)
        dout = rng.standard_normal(out.shape).astype(dtype)
        got = jit.conv_relu_backward(dout, ref_out, x, W, ctx, 1, pad, need_dx)
    winograd = (FH, FW) == (3, 3) and shape[1] >= pipeline.WINOGRAD_MIN_CHANNELS
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], FH, FW, 1, pad)
    assert chosen == ([] if winograd else [direct.holds_blocks(conv_h, conv_w, dtype)])
    assert_close(out, ref_out, dtype)
    want = reference.conv_relu_backward(dout, ref_out, x, W, ref_ctx, 1, pad, need_dx)
    assert_all_close(got, want, dtype)


@SETTINGS
@given(direct_geometry(), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_2x2_pool_run_directly_matches_twin(geometry, dtype, with_argmax, seed):
    """The pooled layers split each image's output rows (even rows first), as the pool
    reads them."""
    shape, FN, FH, FW, pad, _ = geometry
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], FH, FW, 1, pad)
    if conv_h < 2 or conv_w < 2:
        return
    rng, x, W, b = conv_operands(shape, FN, FH, FW, dtype, seed)
    pool = (2, 2, 2, 0)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
    with every_conv_directly() as chosen:
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, pad, *pool,
                                                      with_argmax=with_argmax)
    # where the windows tile the output, and it holds a block of vectors
    assert chosen == [conv_h % 2 == 0 and conv_w % 2 == 0
                      and direct.holds_blocks(conv_h, conv_w, dtype)]
    assert_close(out, ref_out, dtype)
    if with_argmax:  # where two cells of a window tie within rounding, either may win
        dout = rng.standard_normal(ref_out.shape).astype(dtype)
        with every_conv_directly():
            got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, pad,
                                              *pool)
        want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1,
                                                 pad, *pool)
        assert_all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "bias"])
@pytest.mark.parametrize("with_argmax", [True, False])
def test_a_pool_that_meets_a_nan_reruns_its_part_by_im2col(dtype, where, with_argmax):
    """The direct loop pools only planes without NaN (the split pool's fast path); a part
    that holds one is done again by the im2col loop, whose general pool takes it."""
    rng, x, W, b = conv_operands((6, 1, 16, 16), 7, 5, 5, dtype, 11)
    if where == "input":
        x[4, 0, 3, 5] = np.nan
    else:
        b[2] = np.nan
    ref_out, ref_argmax, _ = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
    with every_conv_directly() as chosen, \
            recording_results("_direct_forward_chunks") as calls:
        out, argmax, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0,
                                                    with_argmax=with_argmax)
    assert chosen == [True] and False in calls
    assert_close(out, ref_out, dtype)  # NaN where the twin has NaN
    if with_argmax:
        finite = np.isfinite(ref_out)
        np.testing.assert_array_equal(argmax[finite], ref_argmax[finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_layers_are_bit_identical_with_1_and_2_threads(dtype):
    # SimpleConvNet's first block, and DeepConvNet's first conv (pad 1, 16 filters: a last
    # block of 6 that is partial), forward and backward (their weight gradients summed
    # directly too, DeepConvNet's by 5x5 tiles that overlap)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 1, 28, 28)).astype(dtype)
    W5, b5 = rng.standard_normal((30, 1, 5, 5)).astype(dtype), rng.standard_normal(30)
    W3, b3 = rng.standard_normal((16, 1, 3, 3)).astype(dtype), rng.standard_normal(16)
    d5 = rng.standard_normal((20, 30, 12, 12)).astype(dtype)
    d3 = rng.standard_normal((20, 16, 28, 28)).astype(dtype)
    before = numba.get_num_threads()
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            with every_conv_directly() as chosen, \
                    recording_results("_direct_gradient") as summed_directly:
                pooled = jit.conv_relu_pool_forward(x, W5, b5.astype(dtype), 1, 0, 2, 2, 2, 0)
                relu, ctx = jit.conv_relu_forward(x, W3, b3.astype(dtype), 1, 1)
                grads = (jit.conv_relu_pool_backward(d5, *pooled[:2], x, W5, pooled[2], 1, 0,
                                                     2, 2, 2, 0, need_dx=False)[1:]
                         + jit.conv_relu_backward(d3, relu, x, W3, ctx, 1, 1,
                                                  need_dx=False)[1:])
            assert chosen == [True, True]
            assert summed_directly == [True] * 4  # asked by each forward and backward pass
            results.append((pooled[0], pooled[1], relu) + grads)
        finally:
            numba.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_the_direct_path_is_taken_only_when_asked_and_where_it_was_measured_to_win():
    x = np.zeros((2, 4, 12, 12), np.float32)
    Wm = np.zeros((8, 4 * 9), np.float32)
    geometry = (3, 3, 1, 1, 12, 12)
    relu = (ep.OUTPUT_RELU, None, ep.NO_POOL, None, None)
    tiles = (ep.OUTPUT_RELU_POOL, None, (2, 2, 2, 0), None, None)
    overlapping = (ep.OUTPUT_RELU_POOL_VALUES, None, (3, 3, 2, 1), None, None)
    saved = pipeline.DIRECT_CONV, simd.FULL_WIDTH
    try:
        pipeline.DIRECT_CONV, simd.FULL_WIDTH = False, True  # FASTCONV_DIRECT_CONV=0
        assert pipeline._direct_operands(x, Wm, geometry, relu) is None
        pipeline.DIRECT_CONV = True
        assert pipeline._direct_operands(x, Wm, geometry, relu) is not None
        assert pipeline._direct_operands(x, Wm, geometry, tiles) is not None
        # a pool whose windows do not tile the output goes by im2col, whose loop has it
        assert pipeline._direct_operands(x, Wm, geometry, overlapping) is None
        assert pipeline._direct_operands(x, Wm, (3, 3, 1, 1, 11, 12), tiles) is None
        assert pipeline._direct_operands(x, Wm, (3, 3, 2, 1, 6, 6), relu) is None  # stride 2
        wide = np.zeros((2, pipeline.DIRECT_MAX_CHANNELS + 1, 12, 12), np.float32)
        assert pipeline._direct_operands(wide, Wm, geometry, relu) is None
        simd.FULL_WIDTH = False  # AVX2: the 18 accumulators would not fit its 16 registers
        assert pipeline._direct_operands(x, Wm, geometry, relu) is None
    finally:
        pipeline.DIRECT_CONV, simd.FULL_WIDTH = saved


def test_the_switch_is_read_from_the_environment(tmp_path):
    import subprocess
    import sys
    code = "from fastconv.kernels.jit import pipeline; print(pipeline.DIRECT_CONV)"
    for value, want in (("1", "True"), ("0", "False"), (None, "True")):
        env = {k: v for k, v in os.environ.items() if k != "FASTCONV_DIRECT_CONV"}
        if value is not None:
            env["FASTCONV_DIRECT_CONV"] = value
        printed = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert printed == want


@pytest.mark.parametrize("what", ["shifted", "offsets", "rows", "weights", "images",
                                  "geometry", "padded", "no padded image", "positions"])
def test_operands_that_do_not_fit_are_refused_before_anything_is_written(what):
    """The vectors load and store unchecked, so direct_rows proves every index in range
    first."""
    dtype = np.float32
    N, C, H, W, FH, FW, pad = 3, 2, 14, 13, 3, 3, 1
    if what == "positions":  # each half a run of 30 outputs, short of a block of 48
        H, W = 6, 10
    out_h, out_w = conv_output_hw(H, W, FH, FW, 1, pad)
    x = np.ones((N, C, H, W), dtype)
    weights = direct.direct_weights(np.ones((7, C * FH * FW), dtype))
    padded, shifted, offsets = direct_scratch(C, H, W, FH, FW, pad, dtype)
    rows = np.full((weights.shape[0], N * out_h * out_w), np.nan, dtype)
    n0, n1 = 0, N
    if what == "shifted":  # one element short of the shifted rows
        shifted = shifted[:-1]
    elif what == "offsets":
        offsets = offsets[:C * FH * FW - 1]
    elif what == "rows":
        rows = rows[:, :-1]
    elif what == "weights":
        weights = weights[:-1]
    elif what == "images":
        n1 = N + 1
    elif what == "geometry":
        out_w += 1
    elif what == "padded":
        padded = np.empty((1, C, H + 2 * pad - 1, W + 2 * pad), dtype)
    elif what == "no padded image":
        padded = padded[:0]
    offsets[:] = -1
    with pytest.raises(ValueError, match="direct_rows"):
        direct.direct_rows(x, n0, n1, weights, FH, FW, pad, out_h, out_w, True, padded,
                           shifted, offsets, rows)
    assert np.isnan(rows).all() and (offsets == -1).all()


def test_vectors_as_python_mean_what_the_compiled_ones_do():
    """NUMBA_DISABLE_JIT runs simd's Python versions."""
    for dtype, lanes in ((np.float32, 16), (np.float64, 8)):
        a = np.arange(40, dtype=dtype)
        out = np.zeros(40, dtype)
        v = simd.fma(simd.load(a, 3), simd.splat(dtype(2)), simd.splat(dtype(1)))
        simd.store(out, 5, v)
        want = np.zeros(40, dtype)
        want[5:5 + lanes] = 2 * a[3:3 + lanes] + 1
        np.testing.assert_array_equal(out, want)
        assert simd.LANES[np.dtype(dtype)] == lanes


def test_vectors_of_8_lanes_hold_8_values_in_either_dtype():
    """simd.load8/store8/splat8, compiled and as Python: 256 bits of float32, 512 of float64."""
    @numba.njit
    def compiled(a, out):
        two, one = simd.splat8(a.dtype.type(2)), simd.splat8(a.dtype.type(1))
        simd.store8(out, 5, simd.fma(simd.load8(a, 3), two, one))

    for dtype in (np.float32, np.float64):
        a = np.arange(40, dtype=dtype)
        want = np.zeros(40, dtype)
        want[5:13] = 2 * a[3:11] + 1
        out = np.zeros(40, dtype)
        compiled(a, out)
        np.testing.assert_array_equal(out, want)
        out = np.zeros(40, dtype)
        simd.store8(out, 5, simd.fma(simd.load8(a, 3), simd.splat8(dtype(2)),
                                     simd.splat8(dtype(1))))
        np.testing.assert_array_equal(out, want)
