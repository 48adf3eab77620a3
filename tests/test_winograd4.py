"""The Winograd F(4x4, 3x3) path of the jit conv pipeline (float32 layers under a 2x2 pool
that tiles an output of whole 4x4 tiles): its transforms against their NumPy twins, and the
pooled convolutions it runs against the im2col twin, over random shapes, paddings and
chunkings; values that are not finite must take the im2col path, and the results must not
depend on the thread count."""
import contextlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import blas, pipeline, winograd4
from fastconv.kernels.reference import winograd4 as twin

from test_kernels import assert_all_close, assert_close
from test_pipeline import part_path, recording_choices

SETTINGS = settings(max_examples=30, deadline=None)
POOL = (2, 2, 2, 0)
pytestmark = pytest.mark.skipif(not pipeline.WINOGRAD4,
                                reason="F(4x4, 3x3) runs only where the CPU has AVX-512")


def every_pooled_3x3_by_winograd4():
    """Every float32 3x3 stride-1 conv under a pool of whole 4x4 tiles takes F(4x4, 3x3),
    whatever its channels and width; yields the list of each call's choice."""
    return recording_choices("_winograd4_operands",
                             {(pipeline, "WINOGRAD_MIN_CHANNELS"): 1,
                              (winograd4, "MIN_OUTPUT_WIDTH"): 4})


@contextlib.contextmanager
def loop_results():
    """Records what each call of winograd4's chunk loops returned (False: the part went on
    by im2col), compiled or as Python; yields {"forward": [...], "backward": [...]}."""
    results = {"forward": [], "backward": []}
    saved = winograd4.forward_chunks, winograd4.backward_chunks

    def recording(name, loop):
        def run(*args):
            results[name].append(loop(*args))
            return results[name][-1]

        def run_as_python(*args):
            results[name].append(loop.py_func(*args))
            return results[name][-1]
        run.py_func = run_as_python
        return run
    winograd4.forward_chunks = recording("forward", saved[0])
    winograd4.backward_chunks = recording("backward", saved[1])
    try:
        yield results
    finally:
        winograd4.forward_chunks, winograd4.backward_chunks = saved


def operands(shape, FN, seed, scale=1.0):
    """Random float32 (rng, x, W, b): filters scaled like a trained network's, so that the
    outputs are of order 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    W = (scale * rng.standard_normal((FN, shape[1], 3, 3)) / np.sqrt(9 * shape[1]))
    b = 0.1 * rng.standard_normal(FN)
    return rng, x, W.astype(np.float32), b.astype(np.float32)


@st.composite
def pooled_geometry(draw):
    """(x shape, pad) of a 3x3 stride-1 conv whose output is of whole 4x4 tiles."""
    pad = draw(st.integers(0, 3))
    conv_h, conv_w = 4 * draw(st.integers(1, 3)), 4 * draw(st.integers(1, 3))
    return (draw(st.integers(1, 5)), draw(st.integers(1, 6)), conv_h + 2 - 2 * pad,
            conv_w + 2 - 2 * pad), pad


def padded(x, pad, conv_h, conv_w):
    """x zero-padded to (count, C, conv_h + 2, conv_w + 2), as the jit kernels pad it."""
    return np.pad(x, ((0, 0), (0, 0), (pad, conv_h + 2 - x.shape[2] - pad),
                      (pad, conv_w + 2 - x.shape[3] - pad)))


def scratch(count, C, FN, conv_h, conv_w):
    """The kernels' scratch arrays, filled with NaN (a value read before it is written
    shows)."""
    return tuple(np.full(size, np.nan, np.float32)
                 for size in winograd4.scratch_sizes(count, C, FN, conv_h, conv_w))


@SETTINGS
@given(pooled_geometry(), st.integers(0, 2**32 - 1))
def test_input_transform_and_its_adjoint_match_twin(geometry, seed):
    shape, pad = geometry
    count, C = shape[:2]
    conv_h, conv_w = shape[2] + 2 * pad - 2, shape[3] + 2 * pad - 2
    th, tw = conv_h // 4, conv_w // 4
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    V, _, pads, edge, rows, _, _ = scratch(count, C, 1, conv_h, conv_w)
    assert not winograd4.input_transform(x, 0, count, pad, th, tw, V, pads, edge, rows)
    T = count * th * tw
    want = twin.input_transform(padded(x, pad, conv_h, conv_w), th, tw)
    # B^T d B sums up to 36 values times at most 25: a scale far above float32 rounding
    np.testing.assert_allclose(V[:, :, :T], want, rtol=0, atol=2e-5 * np.abs(want).max())
    dV = np.full(V.shape, np.nan, np.float32)
    dV[:, :, :T] = rng.standard_normal((36, C, T))
    dx = np.full(shape, np.nan, np.float32)
    winograd4.input_transform_adjoint(dV, 0, count, pad, th, tw, dx, pads, edge, rows)
    whole = twin.input_transform_adjoint(dV[:, :, :T], count, th, tw)
    want = whole[:, :, pad:pad + shape[2], pad:pad + shape[3]]
    np.testing.assert_allclose(dx, want, rtol=0, atol=2e-5 * np.abs(whole).max())


def test_the_twins_are_each_others_adjoints():
    rng = np.random.default_rng(5)
    xp = rng.standard_normal((2, 3, 10, 14))
    dV = rng.standard_normal((36, 3, 2 * 2 * 3))
    left = np.vdot(twin.input_transform(xp, 2, 3), dV)
    assert np.isclose(left, np.vdot(xp, twin.input_transform_adjoint(dV, 2, 2, 3)))
    W = rng.standard_normal((4, 3, 3, 3))
    dU = rng.standard_normal((36, 4, 3))
    assert np.isclose(np.vdot(twin.filter_transform(W), dU),
                      np.vdot(W.reshape(12, 9), twin.filter_gradient(dU)))


@pytest.mark.parametrize("FN, C", [(1, 1), (2, 3), (16, 16), (64, 64), (5, 7)])
def test_filter_transform_and_its_adjoint_match_their_twins(FN, C):
    rng = np.random.default_rng(FN * C)
    W = rng.standard_normal((FN, C, 3, 3)).astype(np.float32)
    want = twin.filter_transform(W)
    np.testing.assert_allclose(winograd4.filter_transform(W), want, rtol=0,
                               atol=8 * np.finfo(np.float32).eps * np.abs(want).max())
    dU = rng.standard_normal((36, FN, C)).astype(np.float32)
    want = twin.filter_gradient(dU)
    np.testing.assert_allclose(winograd4.filter_gradient(dU), want, rtol=0,
                               atol=16 * np.finfo(np.float32).eps * np.abs(want).max())


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 20),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_pooled_output_tiles_match_twin(count, th, tw, FN, with_argmax, seed):
    rng = np.random.default_rng(seed)
    T = count * th * tw
    _, M, _, _, _, cells, windows = scratch(count, 1, FN, 4 * th, 4 * tw)
    M[:, :, :T] = rng.standard_normal((36, FN, T))
    b = rng.standard_normal(FN).astype(np.float32)
    out = np.full((count + 1, FN, 2 * th, 2 * tw), -7, np.float32)  # image 0 is not written
    argmax = np.full(out.shape, -7, np.intp)
    assert winograd4.pooled_output_tiles(M, 1, count, th, tw, b, out, argmax, with_argmax,
                                         cells, windows)
    want, want_argmax, windows = twin.pooled_output_tiles(M[:, :, :T], count, th, tw, b)
    assert (out[0] == -7).all() and (argmax[0] == -7).all()
    scale = max(1.0, np.abs(want).max())
    np.testing.assert_allclose(out[1:], want, rtol=0, atol=2e-5 * scale)
    if with_argmax:
        # the first maximum, wherever the window's two largest cells are further apart than
        # the rounding (cells of 0 after the ReLU are exact on both sides)
        ordered = np.sort(windows, axis=-1)
        clear = ((ordered[..., 3] - ordered[..., 2] > 1e-4 * scale)
                 | (ordered[..., 3] == 0))
        assert clear.mean() > 0.5
        np.testing.assert_array_equal(argmax[1:][clear], want_argmax[clear])
    else:
        assert (argmax == -7).all()


@SETTINGS
@given(pooled_geometry(), st.integers(1, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_pool_by_winograd4_matches_twin(geometry, FN, need_dx, seed):
    shape, pad = geometry
    rng, x, W, b = operands(shape, FN, seed)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *POOL)
    dout = rng.standard_normal(ref_out.shape).astype(np.float32)
    with every_pooled_3x3_by_winograd4() as chosen, loop_results() as ran:
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, pad, *POOL)
        values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, pad, *POOL, with_argmax=False)
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, pad, *POOL,
                                          need_dx=need_dx)
    assert chosen == [True, True, True]
    assert False not in ran["forward"] + ran["backward"] and ran["backward"]
    assert_close(out, ref_out, np.float32)
    np.testing.assert_array_equal(values, out)
    assert_clear_argmax_equal(x, W, b, pad, argmax, ref_argmax)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, pad,
                                             *POOL, need_dx=need_dx)
    assert_all_close(got, want, np.float32)


def assert_clear_argmax_equal(x, W, b, pad, argmax, ref_argmax, least=0.0):
    """argmax is the twin's wherever the window's two largest cells are further apart than
    float32's rounding of these outputs (cells that are 0 after the ReLU are exact), and
    that is at least `least` of the windows."""
    conv, _ = reference.conv_relu_forward(x.astype(np.float64), W.astype(np.float64),
                                          b.astype(np.float64), 1, pad)
    N, FN, H, Wd = conv.shape
    windows = np.sort(conv.reshape(N, FN, H // 2, 2, Wd // 2, 2).transpose(0, 1, 2, 4, 3, 5)
                      .reshape(N, FN, H // 2, Wd // 2, 4), axis=-1)
    scale = max(1.0, float(np.abs(conv).max()))
    clear = (windows[..., 3] - windows[..., 2] > 1e-4 * scale) | (windows[..., 3] == 0)
    assert clear.mean() >= least
    np.testing.assert_array_equal(argmax[clear], ref_argmax[clear])


@pytest.mark.parametrize("shape, pad", [((5, 8, 28, 28), 1),   # runs of 14, rows of 35 tiles
                                        ((7, 8, 14, 14), 2),   # runs of 8 (conv 16x16)
                                        ((9, 16, 8, 8), 1),    # runs of 4, 18 tiles a row
                                        ((3, 8, 66, 66), 0)])  # runs of 32: 16-lane copies
def test_deep_convnet_shapes_match_twin_over_several_chunks(shape, pad):
    """The shapes of DeepConvNet's pooled layers (rows of more than one vector of tiles,
    copies of 8 and 16 lanes, int64 indices by vectors), in chunks of 2 images and a last
    one of 1, against the twin."""
    rng, x, W, b = operands(shape, 12, 3)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, pad, *POOL)
    dout = rng.standard_normal(ref_out.shape).astype(np.float32)
    per_image = winograd4.CELLS * shape[1] * ((shape[2] + 2 * pad - 2) // 4) * (
        (shape[3] + 2 * pad - 2) // 4) * 4
    saved = pipeline.WINOGRAD4_CHUNK_BYTES, pipeline.MIN_CHUNK_POSITIONS
    pipeline.WINOGRAD4_CHUNK_BYTES, pipeline.MIN_CHUNK_POSITIONS = 2 * per_image, 1
    try:
        with every_pooled_3x3_by_winograd4() as chosen, loop_results() as ran:
            out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, pad, *POOL)
            got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, pad,
                                              *POOL)
    finally:
        pipeline.WINOGRAD4_CHUNK_BYTES, pipeline.MIN_CHUNK_POSITIONS = saved
    assert chosen == [True, True] and ran["forward"] and ran["backward"]
    assert False not in ran["forward"] + ran["backward"]
    assert_close(out, ref_out, np.float32)
    assert_clear_argmax_equal(x, W, b, pad, argmax, ref_argmax, least=0.9)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, pad,
                                             *POOL)
    assert_all_close(got, want, np.float32)


@pytest.mark.parametrize("where", ["input", "gradient"])
def test_finite_values_that_overflow_in_the_transforms_go_by_im2col(where):
    """Finite inputs or gradients of 1e37 overflow in F(4x4, 3x3)'s transforms (factors up to
    225) where im2col's sums stay finite: the part reruns by im2col and gives its values."""
    rng, x, W, b = operands((2, 8, 8, 8), 2, 39)
    if where == "input":  # all positive, where the transforms' sums overflow to +inf alone
        rng = np.random.default_rng(39)
        scale = 10 ** rng.uniform(35, 38)
        x = (np.abs(rng.standard_normal((1, 8, 8, 8))) * scale).astype(np.float32)
        x *= rng.choice([-1, 1], (1, 1, 8, 8)).astype(np.float32)
        W = (rng.standard_normal((2, 8, 3, 3)) * 0.01).astype(np.float32)
        b = np.zeros(2, np.float32)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
    dout = rng.standard_normal(ref_out.shape).astype(np.float32)
    if where == "gradient":
        dout *= np.float32(1e37)
    with every_pooled_3x3_by_winograd4(), loop_results() as ran, np.errstate(over="ignore"):
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, 1, *POOL)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, 1,
                                             *POOL)
    # (with the input, the backward loop's dU overflows, which the pipeline checks)
    assert ran["forward"] and set(ran["forward"]) == {where == "gradient"}
    if where == "gradient":
        assert ran["backward"] and set(ran["backward"]) == {False}
    for g, w in zip((out,) + tuple(got), (ref_out,) + tuple(want)):
        assert np.isfinite(w).all() and np.isfinite(g).all()
        assert_close(g / np.abs(w).max(), w / np.abs(w).max(), np.float32)


@pytest.mark.parametrize("path", ["compiled", "python"] if blas.AVAILABLE else ["python"])
def test_parts_of_several_chunks_compiled_or_as_python(path):
    """Each part walks several chunks (one image each), compiled or as Python, and both
    match the twin."""
    rng, x, W, b = operands((5, 3, 8, 12), 4, 11)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
    dout = rng.standard_normal(ref_out.shape).astype(np.float32)
    saved = pipeline.WINOGRAD4_CHUNK_BYTES
    pipeline.WINOGRAD4_CHUNK_BYTES = 1
    try:
        with every_pooled_3x3_by_winograd4() as chosen, part_path(path, chunk_bytes=1):
            out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
            got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, 1,
                                              *POOL)
    finally:
        pipeline.WINOGRAD4_CHUNK_BYTES = saved
    assert chosen == [True, True]
    assert_close(out, ref_out, np.float32)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1, 1,
                                             *POOL)
    assert_all_close(got, want, np.float32)


@pytest.mark.parametrize("where", ["input", "last column", "filter", "bias", "gradient"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_value_that_is_not_finite_reaches_what_im2col_reaches(where, value):
    """Not finite anywhere, the pass reruns by im2col (or, for a filter or bias, never takes
    F(4x4, 3x3)): the same NaN and infinities as the twin, and finite values where it has
    them."""
    rng, x, W, b = operands((3, 4, 8, 8), 3, 2)
    if where == "last column":  # read apart from the rest (the tiles' edge columns)
        x[1, 2, 3, -1] = value
    elif where != "gradient":
        {"input": x, "filter": W, "bias": b}[where].flat[2] = value
    with every_pooled_3x3_by_winograd4() as chosen, np.errstate(invalid="ignore",
                                                               over="ignore"):
        ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
        dout = rng.standard_normal(ref_out.shape).astype(np.float32)
        if where == "gradient":
            dout.flat[3] = value
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
        got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, 1, 1, *POOL)
        want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, 1,
                                                 1, *POOL)
    # taken, then left, where the input or the gradient is not finite
    assert chosen == ([False, False] if where == "filter" else
                      [True] if where == "bias" else [True, True])
    for g, w in zip((out,) + tuple(got), (ref_out,) + tuple(want)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(g[finite], w[finite], rtol=2e-5, atol=2e-4)


def test_float64_and_other_layers_keep_their_paths():
    """float64 (the book's numbers), an output of half tiles, no pool or another pool, and a
    4x4 output (narrower than MIN_OUTPUT_WIDTH) do not take F(4x4, 3x3)."""
    def takes(x, pool=POOL, W=None):
        W = np.zeros((4, x.shape[1], 3, 3), x.dtype) if W is None else W
        geometry = (3, 3, 1, 1) + tuple(np.array(x.shape[2:]))
        return pipeline._winograd4_operands(x, W, geometry, pool is not None) is not None
    assert takes(np.zeros((2, 8, 16, 16), np.float32))
    assert not takes(np.zeros((2, 8, 16, 16), np.float64))
    assert not takes(np.zeros((2, 8, 14, 14), np.float32))
    assert not takes(np.zeros((2, 8, 16, 16), np.float32), pool=None)
    assert takes(np.zeros((2, 8, 8, 8), np.float32))
    assert not takes(np.zeros((2, 8, 4, 4), np.float32))
    assert not takes(np.zeros((2, 4, 16, 16), np.float32))  # fewer than 8 channels


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_one_thread_equals_two(run_with_threads):
    rng, x, W, b = operands((16, 8, 16, 16), 12, 7)

    def block():
        out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, *POOL)
        dout = np.random.default_rng(3).standard_normal(out.shape).astype(np.float32)
        return (out, argmax) + tuple(jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx,
                                                                 1, 1, *POOL))
    with every_pooled_3x3_by_winograd4() as chosen:
        one = run_with_threads(1, block)
        two = run_with_threads(2, block)
    assert chosen == [True] * 4
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)
