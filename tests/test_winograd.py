"""The Winograd F(2x2, 3x3) path of the jit conv pipeline: its transforms against their NumPy
twins, and the convolutions it runs against the im2col twin, over random shapes, paddings,
odd edges and both dtypes; values that are not finite must take the im2col path."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import blas, pipeline, winograd
from fastconv.kernels.reference import winograd as twin
from fastconv.kernels.shapes import conv_output_hw

from test_kernels import assert_all_close, assert_close, conv_operands
from test_pipeline import part_path, recording_choices, recording_results

SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


def every_3x3_by_winograd():
    """Every 3x3 stride-1 conv takes the Winograd F(2x2, 3x3) path, whatever its channels
    (F(4x4, 3x3) off: test_winograd4.py has it); yields a list of each call's choice (True:
    Winograd)."""
    return recording_choices("_winograd_operands", {(pipeline, "WINOGRAD_MIN_CHANNELS"): 1,
                                                    (pipeline, "WINOGRAD4"): False})


@st.composite
def tile_geometry(draw):
    """(count, C, tiles_h, tiles_w, conv_h, conv_w), with odd output edges too."""
    conv_h, conv_w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    tiles_h, tiles_w = winograd.tiles_hw(conv_h, conv_w)
    return draw(st.integers(1, 3)), draw(st.integers(1, 4)), tiles_h, tiles_w, conv_h, conv_w




@SETTINGS
@given(tile_geometry(), DTYPES, st.integers(0, 2**32 - 1), st.integers(0, 2))
def test_input_transform_and_its_adjoint_match_twin(geometry, dtype, seed, pad):
    count, C, tiles_h, tiles_w, conv_h, conv_w = geometry
    rng = np.random.default_rng(seed)
    xp = rng.standard_normal((count, C, 2 * tiles_h + 2, 2 * tiles_w + 2)).astype(dtype)
    down = np.empty(winograd.transform_scratch_size(count, tiles_h, tiles_w), dtype)
    V = np.full((16, C, count * tiles_h * tiles_w), np.nan, dtype)
    assert not winograd._input_transform(xp, count, tiles_h, tiles_w, V, down)
    assert_close(V, twin.input_transform(xp, tiles_h, tiles_w), dtype)
    # the adjoint writes the gradient of an image of H x W under a padding of pad straight
    # into images n0.. of dx, and nothing else of it
    pad = min(pad, (conv_h + 1) // 2, (conv_w + 1) // 2)
    H, W = conv_h + 2 - 2 * pad, conv_w + 2 - 2 * pad
    dV = rng.standard_normal(V.shape).astype(dtype)
    n0 = 1
    dx = np.full((n0 + count + 1, C, H, W), np.nan, dtype)
    winograd._input_transform_adjoint(dV, count, tiles_h, tiles_w, pad, dx, n0, down)
    padded = twin.input_transform_adjoint(dV, count, tiles_h, tiles_w)
    assert_close(dx[n0:n0 + count], padded[:, :, pad:pad + H, pad:pad + W], dtype)
    assert np.isnan(dx[:n0]).all() and np.isnan(dx[n0 + count:]).all()


@SETTINGS
@given(tile_geometry(), st.integers(1, 4), DTYPES, st.integers(0, 2**32 - 1),
       st.integers(0, 3))
def test_output_transform_and_its_adjoint_match_twin(geometry, FN, dtype, seed, margin):
    # the pipeline's M has a margin of columns past the chunk's tiles (_winograd_columns):
    # NaN there must be neither read nor written
    count, _, tiles_h, tiles_w, conv_h, conv_w = geometry
    tiles = count * tiles_h * tiles_w
    rng = np.random.default_rng(seed)
    M = np.full((16, FN, tiles + margin), np.nan, dtype)
    M[:, :, :tiles] = rng.standard_normal((16, FN, tiles))
    rows = np.full((FN, count * conv_h * conv_w), np.nan, dtype)
    winograd._output_transform(M, count, tiles_h, tiles_w, conv_h, conv_w, rows)
    want_rows = twin.output_transform(M[:, :, :tiles], count, tiles_h, tiles_w, conv_h, conv_w)
    assert_close(rows, want_rows, dtype)
    dY = rng.standard_normal(rows.shape).astype(dtype)
    dM = np.full(M.shape, np.nan, dtype)
    assert not winograd._output_transform_adjoint(dY, count, tiles_h, tiles_w, conv_h, conv_w, dM)
    want = twin.output_transform_adjoint(dY, count, tiles_h, tiles_w, conv_h, conv_w)
    assert_close(dM[:, :, :tiles], want, dtype)
    assert np.isnan(dM[:, :, tiles:]).all()


def test_the_twins_are_each_others_adjoints():
    """<T v, w> = <v, T* w> for both transforms, so the twins are not merely self-consistent."""
    rng = np.random.default_rng(0)
    count, C, tiles_h, tiles_w, conv_h, conv_w = 2, 3, 3, 4, 5, 8
    xp = rng.standard_normal((count, C, 2 * tiles_h + 2, 2 * tiles_w + 2))
    V = rng.standard_normal((16, C, count * tiles_h * tiles_w))
    assert np.isclose(np.vdot(twin.input_transform(xp, tiles_h, tiles_w), V),
                      np.vdot(xp, twin.input_transform_adjoint(V, count, tiles_h, tiles_w)))
    rows = rng.standard_normal((C, count * conv_h * conv_w))
    lhs = np.vdot(twin.output_transform(V, count, tiles_h, tiles_w, conv_h, conv_w), rows)
    rhs = np.vdot(V, twin.output_transform_adjoint(rows, count, tiles_h, tiles_w, conv_h, conv_w))
    assert np.isclose(lhs, rhs)


def test_window_indices_are_kept_beside_their_values_at_the_compares_width():
    """pool.index_scratch: int32 beside float32 (the pooled tiles' loops ran 1.2-1.8x faster
    than with intp) and intp beside float64, compiled and as Python."""
    from numba import njit
    from fastconv.kernels.jit.pool import index_scratch

    @njit
    def scratch_dtype_of(values):
        return index_scratch(3, values)
    for dtype, want in ((np.float32, np.int32), (np.float64, np.intp)):
        values = np.zeros(2, dtype)
        assert scratch_dtype_of(values).dtype == want
        assert index_scratch(3, values).dtype == want and len(index_scratch(3, values)) == 3


def test_filter_gradient_is_the_adjoint_of_filter_transform():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 2, 3, 3))
    dU = rng.standard_normal((16, 3, 2))
    assert np.isclose(np.vdot(winograd.filter_transform(W, np.float64), dU),
                      np.vdot(W, winograd.filter_gradient(dU)))


@SETTINGS
@given(st.integers(1, 70), st.integers(1, 70), DTYPES, st.integers(0, 2**32 - 1))
def test_filter_transform_and_its_adjoint_match_their_twins(FN, C, dtype, seed):
    # FN * C from 1 to 4900 filters: blocks of FILTER_BLOCK, and the last one partial. Each
    # value sums at most 9 terms with coefficients 0.25-1 in float64 (in another order than
    # the twin's einsum), then rounds to dtype.
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((FN, C, 3, 3)) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
    U = winograd.filter_transform(W, dtype)
    assert U.dtype == dtype and U.shape == (16, FN, C)
    scale = 8 * np.finfo(dtype).eps * float(np.max(np.abs(W)))
    np.testing.assert_allclose(U, twin.filter_transform(W, dtype), rtol=0, atol=scale)
    dU = rng.standard_normal((16, FN, C)).astype(dtype)
    dW = winograd.filter_gradient(dU)
    assert dW.dtype == dtype and dW.shape == W.shape
    scale = 8 * np.finfo(dtype).eps * float(np.max(np.abs(dU)))
    np.testing.assert_allclose(dW, twin.filter_gradient(dU), rtol=0, atol=scale)


@st.composite
def winograd_geometry(draw):
    """(x shape, pad) of a 3x3 stride-1 conv: odd and even outputs, pads 0-3."""
    pad = draw(st.integers(0, 3))
    H = draw(st.integers(max(1, 3 - 2 * pad), 11))
    W = draw(st.integers(max(1, 3 - 2 * pad), 11))
    return (draw(st.integers(1, 4)), draw(st.integers(1, 5)), H, W), pad


@SETTINGS
@given(winograd_geometry(), st.integers(1, 5), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_by_winograd_matches_twin(geometry, FN, dtype, need_dx, seed):
    shape, pad = geometry
    rng, x, W, b = conv_operands(shape, FN, 3, 3, dtype, seed)
    with every_3x3_by_winograd() as chosen:
        out, ctx = jit.conv_relu_forward(x, W, b, 1, pad)
        ref_out, ref_ctx = reference.conv_relu_forward(x, W, b, 1, pad)
        dout = rng.standard_normal(out.shape).astype(dtype)
        got = jit.conv_relu_backward(dout, ref_out, x, W, ctx, 1, pad, need_dx)
    assert chosen == [True, True]
    assert_close(out, ref_out, dtype)
    want = reference.conv_relu_backward(dout, ref_out, x, W, ref_ctx, 1, pad, need_dx)
    assert_all_close(got, want, dtype)


@SETTINGS
@given(winograd_geometry(), st.integers(1, 5), DTYPES, st.integers(0, 2**32 - 1))
def test_conv_relu_2x2_pool_by_winograd_matches_twin(geometry, FN, dtype, seed):
    shape, pad = geometry
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], 3, 3, 1, pad)
    if conv_h < 2 or conv_w < 2:
        return
    rng, x, W, b = conv_operands(shape, FN, 3, 3, dtype, seed)
    pool = (2, 2, 2, 0)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
    dout = rng.standard_normal(ref_out.shape).astype(dtype)
    with every_3x3_by_winograd() as chosen:
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, pad, *pool)
    # the forward pass of a pool whose windows do not tile the output goes by im2col, whose
    # loop alone compiles the general pool
    tiles = conv_h % 2 == 0 and conv_w % 2 == 0
    assert chosen == ([True, True] if tiles else [True])
    assert_close(out, ref_out, dtype)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, pad,
                                             *pool)
    assert_all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "filter", "gradient"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_value_that_is_not_finite_reaches_what_im2col_reaches(dtype, where, value):
    """The transforms mix a tile's 16 inputs: a NaN or inf in the input would reach outputs
    whose windows never held it, and an inf in the gradient would come back as NaN (inf -
    inf); those parts must take the im2col path."""
    rng, x, W, b = conv_operands((4, 3, 8, 8), 4, 3, 3, dtype, 5)
    dout = rng.standard_normal((4, 4, 8, 8)).astype(dtype)
    if where == "filter":
        W[1, 2, 0, 1] = value
    elif where == "input":
        x[1, 2, 4, 5] = value
    else:  # where ReLU passes it on
        dout[1, 2, 4, 5] = value
        b[2] = 100
    with every_3x3_by_winograd() as chosen, np.errstate(invalid="ignore"):
        ref_out, ref_ctx = reference.conv_relu_forward(x, W, b, 1, 1)
        out, ctx = jit.conv_relu_forward(x, W, b, 1, 1)
        got = jit.conv_relu_backward(dout, ref_out, x, W, ctx, 1, 1)
        want = reference.conv_relu_backward(dout, ref_out, x, W, ref_ctx, 1, 1)
    assert chosen == ([False, False] if where == "filter" else [True, True])
    for g, w in zip((out,) + got, (ref_out,) + want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(g[finite], w[finite], rtol=2e-5, atol=2e-5)


def test_deep_convnet_layers_choose_winograd_from_8_channels():
    """Both dtypes take Winograd for 3x3 stride-1 convs from 8 input channels, whatever the
    output's size, as the measurements in pipeline.py decided; 1 channel stays on im2col."""
    def chosen(C, H, dtype):
        x = np.zeros((1, C, H, H), dtype)
        _, _, geometry, _ = pipeline._layer_operands(x, np.zeros((4, C, 3, 3), dtype), 1, 1)
        return pipeline._winograd_operands(x, np.zeros((4, C, 3, 3), dtype), geometry) is not None
    for dtype in (np.float32, np.float64):
        assert chosen(16, 28, dtype) and chosen(32, 14, dtype) and chosen(64, 8, dtype)
        assert chosen(8, 4, dtype) and not chosen(7, 28, dtype) and not chosen(1, 28, dtype)


def integer_operands(shape, FN, dtype, seed):
    """(rng, x, W, b), the last three of small integers, for FN 3x3 filters: every sum of
    the conv is exact."""
    rng = np.random.default_rng(seed)
    return (rng, rng.integers(-2, 3, shape).astype(dtype),
            rng.integers(-1, 2, (FN, shape[1], 3, 3)).astype(dtype),
            rng.integers(-2, 3, FN).astype(dtype))


@pytest.mark.parametrize("path", ["compiled", "python"] if blas.AVAILABLE else ["python"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pooled", [True, False])
def test_winograd_parts_of_several_chunks_compiled_or_as_python(path, dtype, pooled):
    """Each part walks several chunks (one image each), compiled or as Python (no BLAS bound
    for compiled code), and both match the twin: pooled by tiles, or not pooled (the output
    transform to rows, an odd number of them)."""
    rng, x, W, b = conv_operands((6, 3, 10 if pooled else 9, 10), 4, 3, 3, dtype, 11)
    pool = (2, 2, 2, 0)
    with every_3x3_by_winograd() as chosen, part_path(path, chunk_bytes=1):
        if pooled:
            ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1,
                                                                            *pool)
            dout = rng.standard_normal(ref_out.shape).astype(dtype)
            out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *pool)
            got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, 1,
                                              *pool)
            want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx,
                                                     1, 1, *pool)
        else:
            ref_out, ref_ctx = reference.conv_relu_forward(x, W, b, 1, 1)
            dout = rng.standard_normal(ref_out.shape).astype(dtype)
            out, ctx = jit.conv_relu_forward(x, W, b, 1, 1)
            got = jit.conv_relu_backward(dout, ref_out, x, W, ctx, 1, 1)
            want = reference.conv_relu_backward(dout, ref_out, x, W, ref_ctx, 1, 1)
    assert chosen == [True, True]
    assert_close(out, ref_out, dtype)
    assert_all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_argmax", [True, False])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_pooled_layer_with_a_bias_that_is_not_finite_reruns_by_im2col(dtype, with_argmax,
                                                                         value):
    """The Winograd loop pools only by tiles and with finite biases; it hands any other
    layer's part to im2col, whose loop has the general pool. Small integers keep the sums
    exact, so that ties pick the same window index on any CPU."""
    _, x, W, b = integer_operands((4, 3, 8, 8), 5, dtype, 7)
    b[3] = value
    pool = (2, 2, 2, 0)
    ref_out, ref_argmax, _ = reference.conv_relu_pool_forward(x, W, b, 1, 1, *pool)
    with every_3x3_by_winograd() as chosen, \
            recording_results("_winograd_forward_chunks") as results:
        out, argmax, _ = jit.conv_relu_pool_forward(x, W, b, 1, 1, *pool,
                                                    with_argmax=with_argmax)
    assert chosen == [True] and results and not any(results)
    assert_close(out, ref_out, dtype)  # NaN and inf where the twin has them
    if with_argmax:
        np.testing.assert_array_equal(argmax, ref_argmax)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_pool_that_is_not_by_tiles_goes_by_im2col_forward(dtype):
    """A 3x3 stride-2 pool overlaps its windows: the forward pass goes by im2col from the
    start (the Winograd loop does not compile that pool), the backward pass by Winograd.
    Small integers keep the sums exact, so that ties pick the same window index."""
    rng, x, W, b = integer_operands((3, 3, 9, 9), 4, dtype, 2)
    pool = (3, 3, 2, 1)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1, *pool)
    dout = rng.standard_normal(ref_out.shape).astype(dtype)
    with every_3x3_by_winograd() as chosen:
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *pool)
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, 1, *pool)
    assert chosen == [True]  # asked only by the backward pass
    assert_close(out, ref_out, dtype)
    np.testing.assert_array_equal(argmax, ref_argmax)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, 1,
                                             *pool)
    assert_all_close(got, want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_pooled_gradient_that_is_not_finite_reaches_what_im2col_reaches(dtype, value):
    """The 2x2 pool's windows are the tiles here, and its gradient goes to the tiles without
    the conv output's rows: that path must also hand a NaN or inf over to im2col."""
    rng, x, W, b = conv_operands((4, 3, 8, 8), 4, 3, 3, dtype, 5)
    b[2] = 100  # the pool passes the gradient on
    pool = (2, 2, 2, 0)
    with every_3x3_by_winograd() as chosen, np.errstate(invalid="ignore"):
        ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1, *pool)
        dout = rng.standard_normal(ref_out.shape).astype(dtype)
        dout[1, 2, 1, 2] = value
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, None, 1, 1, *pool)
        want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, 1,
                                                 *pool)
    assert chosen == [True]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(g[finite], w[finite], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", [0, 1])
def test_on_integers_winograd_is_exact_ties_and_window_indices_included(dtype, pad):
    """Small integers keep every transform exact (G's halves make quarters at most), so the
    Winograd blocks must give the twin's values, window indices (the first maximum on ties)
    and gradients bit for bit, with and without the indices."""
    rng, x, W, b = integer_operands((3, 4, 8, 10), 5, dtype, 3)
    pool = (2, 2, 2, 0)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
    dout = rng.integers(-3, 4, ref_out.shape).astype(dtype)
    with every_3x3_by_winograd() as chosen:
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, pad, *pool)
        values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, pad, *pool, with_argmax=False)
        got = jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, pad, *pool)
        relu_out, relu_ctx = jit.conv_relu_forward(x, W, b, 1, pad)
    assert chosen == [True] * 4
    assert (np.unique(ref_argmax).size, (ref_out == 0).any()) == (4, True)  # ties and zeros
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(values, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, pad,
                                             *pool)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(relu_out, reference.conv_relu_forward(x, W, b, 1, pad)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_argmax", [True, False])
def test_pooled_tiles_hand_a_nan_beside_a_larger_cell_over_to_im2col(dtype, with_argmax):
    """An overflow in the products can make one output of a tile NaN next to a larger finite
    one. The pooled maximum then looks finite, but im2col's pool gives NaN there (as
    np.argmax does), so the chunk must be handed over."""
    FN, windows = 2, 3
    M = np.zeros((16, FN, windows), dtype)
    M[0, 1, 2] = np.nan  # only the top-left output y00 of the tile sums the cell m00
    M[3, 1, 2] = -1  # y01 = -m03 = 1, the others 0
    b = np.zeros(FN, dtype)
    out = np.zeros((1, FN, windows), dtype)
    argmax = np.zeros((1, FN, windows) if with_argmax else (0, FN, windows), np.intp)
    finished = winograd._pooled_output_tiles(M, 0, 1, b, out, argmax, with_argmax)
    assert not finished
    M[0, 1, 2] = 0  # the same tile without the NaN pools 1 at the top-right cell
    assert winograd._pooled_output_tiles(M, 0, 1, b, out, argmax, with_argmax)
    assert out[0, 1, 2] == 1 and (not with_argmax or argmax[0, 1, 2] == 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("row, col", [(0, 0), (4, 7), (7, 7), (7, 4), (2, 6)])
def test_a_value_that_is_not_finite_anywhere_in_the_input_reaches_what_im2col_reaches(
        dtype, value, pad, row, col):
    """test_a_value_that_is_not_finite_reaches_what_im2col_reaches puts its value at (4, 5) of
    an 8x8 image. The input transform reads each tile row's last two padded columns in a loop
    of their own (``winograd._input_transform``), with its own check: a value there that is
    not finite must send the chunk to im2col too. Missed, an inf there comes out of the
    transforms as NaN (inf - inf) where im2col gives +-inf. Those columns are the image's
    column 7 with pad 1 (padded column 8 of 10), its columns 6 and 7 with pad 0; the other
    positions are controls."""
    rng, x, W, b = conv_operands((4, 3, 8, 8), 4, 3, 3, dtype, 5)
    x[1, 2, row, col] = value
    with every_3x3_by_winograd() as chosen, np.errstate(invalid="ignore"):
        want, _ = reference.conv_relu_forward(x, W, b, 1, pad)
        got, _ = jit.conv_relu_forward(x, W, b, 1, pad)
        want_plain, _ = reference.conv2d_forward(x, W, b, 1, pad)
        got_plain, _ = jit.conv2d_forward(x, W, b, 1, pad)
    assert chosen == [True, True]  # both went to the Winograd path first
    for g, w in ((got, want), (got_plain, want_plain)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        finite = np.isfinite(w)
        # unit-scale operands, 27 taps: far above float32 rounding, far below the values
        np.testing.assert_allclose(g[finite], w[finite], rtol=2e-5, atol=2e-5)
