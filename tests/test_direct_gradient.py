"""The weight gradient summed from the direct conv's shifted rows
(``kernels/jit/direct_gradient.py``): against a float64 oracle over random shapes, paddings,
filter and tap counts (whole tiles of 5 and tiles that overlap) and both dtypes; the layers
that take it against their twins (bit identity with 1 and 2 threads is tested with the
direct forward pass, in test_direct.py); which layers take it; and operands that do not
fit."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import direct, direct_gradient as dg, pipeline, simd
from fastconv.kernels.jit.im2col import _row_slot
from fastconv.kernels.shapes import conv_output_hw

from test_kernels import assert_all_close, conv_operands
from test_direct import direct_geometry
from test_pipeline import recording_choices

SETTINGS = settings(max_examples=40, deadline=None)


def every_gradient_directly():
    """Every stride-1 conv of up to 8 channels that Winograd does not take sums its weight
    gradient directly where it fits, whatever the CPU; yields each call's choice (True or
    False)."""
    return recording_choices("_direct_gradient", {(pipeline, "DIRECT_CONV"): True,
                                                  (simd, "FULL_WIDTH"): True,
                                                  (pipeline, "DIRECT_MAX_CHANNELS"): 8},
                             taken=bool)


def oracle_gradient(x, rows, FH, FW, pad, split_rows):
    """dW (FN, C*FH*FW) = rows @ im2col.T in float64, rows (FN, N * out_h * out_w) with each
    image's output rows in the order of ``_row_slot``; and the sum of |terms|."""
    N, C, H, W = x.shape
    out_h, out_w = conv_output_hw(H, W, FH, FW, 1, pad)
    order = np.empty(out_h, dtype=int)
    for oy in range(out_h):
        order[_row_slot.py_func(oy, out_h, split_rows)] = oy
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    grad = rows.astype(np.float64).reshape(rows.shape[0], N, out_h, out_w)
    dW, magnitude = [], []
    for c in range(C):
        for ky in range(FH):
            for kx in range(FW):
                tap = xp[:, c, ky:ky + out_h, kx:kx + out_w][:, order]
                dW.append(np.einsum("fnyx,nyx->f", grad, tap))
                magnitude.append(np.einsum("fnyx,nyx->f", np.abs(grad), np.abs(tap)))
    return np.stack(dW, axis=1), np.stack(magnitude, axis=1)


def scratch(N, C, H, W, FH, FW, pad, FN, dtype):
    """(padded, shifted, taps, run starts, sums) for N images."""
    out_w = W + 2 * pad - FW + 1
    K = C * FH * FW
    return (np.empty((1, C, H + 2 * pad, W + 2 * pad), dtype),
            np.empty(N * direct.shifted_size(C, FW, H + 2 * pad, out_w), dtype),
            np.empty(N * 2 * K, np.int64), np.empty(N * 2, np.int64),
            np.zeros(FN * K * simd.LANES[np.dtype(dtype)], dtype))


@SETTINGS
@given(direct_geometry(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_the_direct_weight_gradient_matches_the_oracle(geometry, dtype, seed):
    """Filters and taps from below a tile (refused) past several, runs of whole vectors or
    not (the direct forward pass's shapes)."""
    shape, FN, FH, FW, pad, split_rows = geometry
    N, C, H, W = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    out_h, out_w = conv_output_hw(H, W, FH, FW, 1, pad)
    n0 = int(rng.integers(0, N))
    rows = rng.standard_normal((FN, (N - n0) * out_h * out_w)).astype(dtype)
    padded, shifted, taps, starts, sums = scratch(N - n0, C, H, W, FH, FW, pad, FN, dtype)
    operands = (x, n0, N, FH, FW, pad, out_h, out_w, split_rows, padded, shifted, taps,
                starts, rows, sums)
    if not dg.gradient_fits(FN, C * FH * FW, out_h, out_w, split_rows, dtype):
        with pytest.raises(ValueError, match="add_direct_weight_gradient"):
            dg.add_direct_weight_gradient(*operands)
        assert not sums.any()
        return
    dg.add_direct_weight_gradient(*operands)
    dW = np.zeros((FN, C * FH * FW), dtype)
    dg.add_lane_sums(sums, dW)
    want, magnitude = oracle_gradient(x[n0:], rows, FH, FW, pad, split_rows)
    # each lane sums its positions one after another, then the lanes are added: at most
    # that many roundings, each within eps of the running |sum|
    lanes = simd.LANES[np.dtype(dtype)]
    adds = rows.shape[1] // lanes + lanes + 1
    bound = 2 * adds * np.finfo(dtype).eps * magnitude + np.finfo(dtype).tiny
    assert np.all(np.abs(dW - want) <= bound)


def test_tiles_that_overlap_add_each_sum_once():
    """16 filters and 9 taps: the last tiles start at filter 11 and tap 4, over sums that
    the tiles before them added."""
    dtype = np.float64
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 1, 28, 28)).astype(dtype)
    rows = rng.standard_normal((16, 2 * 28 * 28)).astype(dtype)
    padded, shifted, taps, starts, sums = scratch(2, 1, 28, 28, 3, 3, 1, 16, dtype)
    dg.add_direct_weight_gradient(x, 0, 2, 3, 3, 1, 28, 28, False, padded, shifted, taps,
                                  starts, rows, sums)
    dW = np.zeros((16, 9), dtype)
    dg.add_lane_sums(sums, dW)
    want, _ = oracle_gradient(x, rows, 3, 3, 1, False)
    np.testing.assert_allclose(dW, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("what", ["sums", "taps", "starts", "shifted", "rows", "images",
                                  "filters", "geometry", "run", "padded", "no padded image"])
def test_operands_that_do_not_fit_are_refused_before_anything_is_written(what):
    """The vectors load and store unchecked, so every index is proved in range first."""
    dtype = np.float32
    N, C, H, W, FH, FW, pad, FN = 3, 1, 28, 28, 5, 5, 0, 30
    out_h, out_w = conv_output_hw(H, W, FH, FW, 1, pad)
    x = np.ones((N, C, H, W), dtype)
    rows = np.ones((FN, N * out_h * out_w), dtype)
    padded, shifted, taps, starts, sums = scratch(N, C, H, W, FH, FW, pad, FN, dtype)
    n1 = N
    if what == "sums":
        sums = sums[:-1]
    elif what == "taps":
        taps = taps[:N * 2 * C * FH * FW - 1]
    elif what == "starts":
        starts = starts[:2 * N - 1]
    elif what == "shifted":
        shifted = shifted[:-1]
    elif what == "rows":
        rows = rows[:, :-1]
    elif what == "images":
        n1 = N + 1
    elif what == "filters":  # fewer than a tile
        rows, sums = rows[:4], sums[:4 * C * FH * FW * 16]
    elif what == "geometry":
        out_w -= 1
    elif what == "run":  # 11 x 11 positions: runs of no whole number of vectors
        x, out_h, out_w = np.ones((N, C, 15, 15), dtype), 11, 11
        rows = np.ones((FN, N * 121), dtype)
    elif what in ("padded", "no padded image"):  # 24 x 24 images padded by 2
        pad = 2
        x = np.ones((N, C, out_h, out_w), dtype)
        padded, shifted, taps, starts, sums = scratch(N, C, out_h, out_w, FH, FW, pad, FN,
                                                      dtype)
        padded = padded[:, :, 1:] if what == "padded" else padded[:0]
    taps[:] = -1
    split_rows = what != "run"  # as SimpleConvNet's pooled layer; 11 rows do not split
    with pytest.raises(ValueError, match="add_direct_weight_gradient"):
        dg.add_direct_weight_gradient(x, 0, n1, FH, FW, pad, out_h, out_w, split_rows, padded,
                                      shifted, taps, starts, rows, sums)
    assert not sums.any() and (taps == -1).all()
    if what in ("padded", "no padded image"):  # the operands it was cut from do fit
        padded = scratch(N, C, out_h, out_w, FH, FW, pad, FN, dtype)[0]
        dg.add_direct_weight_gradient(x, 0, n1, FH, FW, pad, out_h, out_w, split_rows, padded,
                                      shifted, taps, starts, rows, sums)
        assert sums.any()


@st.composite
def layer_geometry(draw):
    """(x shape, FN, FH, FW, pad) of stride-1 layers, many of whose gradients fit."""
    FH, FW, pad = draw(st.integers(2, 5)), draw(st.integers(2, 5)), draw(st.integers(0, 2))
    size = draw(st.sampled_from([8, 10, 12, 16, 20, 24, 28]))
    # an output of size x size
    return ((draw(st.integers(1, 4)), draw(st.integers(1, 3)), size + FH - 1 - 2 * pad,
             size + FW - 1 - 2 * pad), draw(st.integers(4, 12)), FH, FW, pad)


@SETTINGS
@given(layer_geometry(), st.sampled_from([np.float32, np.float64]), st.booleans(),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_layers_whose_gradient_is_summed_directly_match_their_twins(geometry, dtype, pooled,
                                                                     need_dx, seed):
    shape, FN, FH, FW, pad = geometry
    rng, x, W, b = conv_operands(shape, FN, FH, FW, dtype, seed)
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], FH, FW, 1, pad)
    pool = (2, 2, 2, 0)
    if pooled:
        out, argmax, ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
        dout = rng.standard_normal(out.shape).astype(dtype)
        with every_gradient_directly() as chosen:
            got = jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, pad, *pool,
                                              need_dx=need_dx)
        want = reference.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, pad, *pool,
                                                 need_dx=need_dx)
    else:
        out, ctx = reference.conv_relu_forward(x, W, b, 1, pad)
        dout = rng.standard_normal(out.shape).astype(dtype)
        with every_gradient_directly() as chosen:
            got = jit.conv_relu_backward(dout, out, x, W, ctx, 1, pad, need_dx=need_dx)
        want = reference.conv_relu_backward(dout, out, x, W, ctx, 1, pad, need_dx=need_dx)
    winograd = (FH, FW) == (3, 3) and shape[1] >= pipeline.WINOGRAD_MIN_CHANNELS
    split = pooled and conv_h % 2 == 0 and conv_w % 2 == 0
    fits = dg.gradient_fits(FN, shape[1] * FH * FW, conv_h, conv_w, split, dtype)
    # asked only where no input gradient is needed, and Winograd does not take the layer
    assert chosen == ([] if winograd or need_dx else [fits])
    assert_all_close(got, want, dtype)


def test_the_direct_gradient_is_taken_only_where_the_direct_forward_would_be():
    x = np.zeros((2, 1, 28, 28), np.float32)
    Wm = np.zeros((30, 25), np.float32)
    geometry = (5, 5, 1, 0, 24, 24)
    saved = pipeline.DIRECT_CONV, simd.FULL_WIDTH
    try:
        pipeline.DIRECT_CONV, simd.FULL_WIDTH = True, True
        assert pipeline._direct_gradient(x, Wm, geometry, True)
        assert pipeline._direct_gradient(x, Wm, geometry, False)
        assert not pipeline._direct_gradient(x, Wm[:4], geometry, True)  # under a tile
        assert not pipeline._direct_gradient(x, Wm, (5, 5, 2, 0, 12, 12), False)  # stride 2
        # 23 x 23 outputs: runs of no whole number of vectors
        assert not pipeline._direct_gradient(x[:, :, :27, :27], Wm, (5, 5, 1, 0, 23, 23), False)
        wide = np.zeros((2, pipeline.DIRECT_MAX_CHANNELS + 1, 28, 28), np.float32)
        assert not pipeline._direct_gradient(wide, Wm, geometry, False)
        pipeline.DIRECT_CONV = False  # FASTCONV_DIRECT_CONV=0
        assert not pipeline._direct_gradient(x, Wm, geometry, True)
        pipeline.DIRECT_CONV, simd.FULL_WIDTH = True, False  # AVX2
        assert not pipeline._direct_gradient(x, Wm, geometry, True)
    finally:
        pipeline.DIRECT_CONV, simd.FULL_WIDTH = saved


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("need_dx", [False, True])
def test_a_backward_pass_after_a_direct_forward_pass_finds_its_loop_compiling(need_dx,
                                                                              pooled):
    """The forward pass names the backward loop to compile in a helper: the direct one
    where its gradient fits, behind a pool the gathering one (``pooled_gradient``). A layer
    that needs an input gradient runs by im2col."""
    rng, x, W, b = conv_operands((4, 1, 28, 28), 30, 5, 5, np.float32, 2)
    started, finished = [], []
    saved = pipeline.background_compile.start, pipeline.background_compile.finish
    pipeline.background_compile.start = lambda dtype, loop: started.append(loop)
    pipeline.background_compile.finish = lambda dtype, loop: finished.append(loop)
    try:
        with every_gradient_directly():
            if pooled:
                out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
                dout = rng.standard_normal(out.shape).astype(np.float32)
                jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 0, 2, 2, 2, 0,
                                            need_dx=need_dx)
            else:
                out, ctx = jit.conv_relu_forward(x, W, b, 1, 0)
                dout = rng.standard_normal(out.shape).astype(np.float32)
                jit.conv_relu_backward(dout, out, x, W, ctx, 1, 0, need_dx=need_dx)
    finally:
        pipeline.background_compile.start, pipeline.background_compile.finish = saved
    loop = "gather" if pooled else "direct"
    assert started == [loop]
    assert finished == ["im2col" if need_dx else loop]
