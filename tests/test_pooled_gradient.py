"""The weight gradient gathered at a max pool's maxima (``kernels/jit/pooled_gradient.py``):
against a float64 oracle over random shapes, paddings and pools (tiling, overlapping,
padded) in both dtypes, with argmax values that name no cell; images holding a value that is
not finite left to the dense sum; operands that do not fit; and the layers that take it
(behind a max pool) against their twins and summing by it. Bit identity with 1 and 2
threads is tested with the direct forward pass (test_direct.py)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import pooled_gradient as pg

from test_kernels import assert_all_close, conv_operands
from test_direct_gradient import every_gradient_directly

SETTINGS = settings(max_examples=40, deadline=None)


def oracle(x, FH, FW, pad, pool, dout, out, argmax):
    """(dW (FN, C*FH*FW), db, sum of |terms| of dW) in float64: the pool's gradient routed to
    the argmax cells the ReLU kept, then summed against every tap."""
    N, C, H, W = x.shape
    pool_h, pool_w, stride, pool_pad = pool
    conv_h, conv_w = H + 2 * pad - FH + 1, W + 2 * pad - FW + 1
    FN = dout.shape[1]
    grad = np.zeros((N, FN, conv_h, conv_w))
    for n, f, py, px in np.ndindex(dout.shape):
        k = argmax[n, f, py, px]
        if out[n, f, py, px] == 0 or not 0 <= k < pool_h * pool_w:
            continue
        oy, ox = py * stride - pool_pad + k // pool_w, px * stride - pool_pad + k % pool_w
        if 0 <= oy < conv_h and 0 <= ox < conv_w:
            grad[n, f, oy, ox] += dout[n, f, py, px]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dW, magnitude = np.zeros((FN, C, FH, FW)), np.zeros((FN, C, FH, FW))
    for ky in range(FH):
        for kx in range(FW):
            tap = xp[:, :, ky:ky + conv_h, kx:kx + conv_w]
            dW[:, :, ky, kx] = np.einsum("nfyx,ncyx->fc", grad, tap)
            magnitude[:, :, ky, kx] = np.einsum("nfyx,ncyx->fc", np.abs(grad), np.abs(tap))
    return dW.reshape(FN, -1), grad.sum(axis=(0, 2, 3)), magnitude.reshape(FN, -1)


def scratch(C, H, W, FH, pad, FN, dtype):
    """(padded image, row sums, bias sums)."""
    return (np.empty(pg.patch_size(C, H + 2 * pad, W + 2 * pad), dtype),
            np.zeros(FN * C * FH * pg.ROW_LANES, dtype), np.zeros(FN))


def pool_operands(rng, N, FN, out_h, out_w, cells, dtype):
    """(dout, out, argmax): out zero in about half the windows (the ReLU cut them), argmax
    from -1 to cells, one past and one before the window's cells included."""
    shape = (N, FN, out_h, out_w)
    dout = rng.standard_normal(shape).astype(dtype)
    out = (rng.random(shape) * (rng.random(shape) < 0.5)).astype(dtype)
    argmax = rng.integers(-1, cells + 1, shape).astype(np.intp)
    return dout, out, argmax


@st.composite
def geometries(draw):
    """(x shape, FN, FH, FW, pad, pool) with a pool output of at least one window."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    FH = draw(st.integers(1, 6))
    FW = draw(st.integers(1, pg.ROW_LANES))
    pad = draw(st.integers(0, 2))
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(FH, 16)),
             draw(st.integers(FW, 16)))
    pool_h, pool_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pool_pad = draw(st.integers(0, min(pool_h, pool_w) - 1))
    pool = (pool_h, pool_w, draw(st.integers(1, 3)), pool_pad)
    return shape, draw(st.integers(1, 8)), FH, FW, pad, pool, dtype


@SETTINGS
@given(geometries(), st.integers(0, 2**32 - 1))
def test_the_gathered_gradient_matches_the_oracle(geometry, seed):
    shape, FN, FH, FW, pad, pool, dtype = geometry
    N, C, H, W = shape
    conv_h, conv_w = H + 2 * pad - FH + 1, W + 2 * pad - FW + 1
    out_h = (conv_h + 2 * pool[3] - pool[0]) // pool[2] + 1
    out_w = (conv_w + 2 * pool[3] - pool[1]) // pool[2] + 1
    assume(out_h > 0 and out_w > 0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    dout, out, argmax = pool_operands(rng, N, FN, out_h, out_w, pool[0] * pool[1], dtype)
    n0 = int(rng.integers(0, N))
    patch, sums, db = scratch(C, H, W, FH, pad, FN, dtype)
    assert pg.add_pooled_weight_gradient(x, n0, N, FH, FW, pad, pool, dout, out, argmax,
                                         patch, sums, db)
    dW = np.zeros((FN, C * FH * FW), dtype)
    pg.add_row_sums(sums, FW, dW)
    want, want_db, magnitude = oracle(x[n0:], FH, FW, pad, pool, dout[n0:], out[n0:],
                                      argmax[n0:])
    # the even and the odd windows of an image summed apart, then added, then the images:
    # at most that many roundings, each within eps of the running |sum|
    adds = out_h * out_w + 2 * (N - n0) + 2
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(dW - want) <= 2 * adds * eps * magnitude + np.finfo(dtype).tiny)
    np.testing.assert_allclose(db, want_db, rtol=1e-12, atol=1e-12 * np.abs(dout).sum())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_images_with_a_value_that_is_not_finite_are_left_to_the_dense_sum(value):
    # a cell the dense sum routes nothing to still adds 0 * x there, NaN for these
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 12, 12))
    x[2, 0, 5, 7] = value
    dout, out, argmax = pool_operands(rng, 3, 6, 4, 4, 4, np.float64)
    patch, sums, db = scratch(1, 12, 12, 5, 0, 6, np.float64)
    operands = (5, 5, 0, (2, 2, 2, 0), dout, out, argmax, patch, sums, db)
    assert not pg.add_pooled_weight_gradient(x, 1, 3, *operands)
    assert not sums.any() and not db.any()
    assert pg.add_pooled_weight_gradient(x, 0, 2, *operands)  # the images before it
    assert sums.any() and db.any()


@pytest.mark.parametrize("what", ["images", "filter wider than a vector", "pool",
                                  "out", "argmax", "dout", "padded image", "sums", "bias",
                                  "negative pad", "no filter rows"])
def test_operands_that_do_not_fit_are_refused_before_anything_is_written(what):
    """The vectors load and store unchecked, so every index is proved in range first."""
    N, C, H, W, FH, FW, pad, FN = 2, 1, 12, 12, 5, 5, 0, 4
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, C, H, W))
    dout, out, argmax = pool_operands(rng, N, FN, 4, 4, 4, np.float64)
    patch, sums, db = scratch(C, H, W, FH, pad, FN, np.float64)
    n1, pool = N, (2, 2, 2, 0)
    if what == "images":
        n1 = N + 1
    elif what == "filter wider than a vector":
        FW = 9
        x = rng.standard_normal((N, C, H, 16))
    elif what == "pool":
        pool = (2, 2, 0, 0)
    elif what == "out":
        out = out[:, :, :, :3].copy()
    elif what == "argmax":
        argmax = argmax[:1].copy()
    elif what == "dout":
        dout = dout[:, :, :0]
    elif what == "padded image":
        patch = patch[:-1]
    elif what == "sums":
        sums = sums[:-1]
    elif what == "bias":
        db = db[:-1]
    elif what == "negative pad":  # the image would be copied past the padded one's end
        pad = -2
        patch = np.empty(pg.patch_size(C, H - 4, W - 4))
        dout, out, argmax = pool_operands(rng, N, FN, 2, 2, 4, np.float64)
    elif what == "no filter rows":
        FH = 0
        sums = sums[:0]
    with pytest.raises(ValueError, match="add_pooled_weight_gradient"):
        pg.add_pooled_weight_gradient(x, 0, n1, FH, FW, pad, pool, dout, out, argmax, patch,
                                      sums, db)
    assert not sums.any() and not db.any()


def test_layers_behind_a_max_pool_gather_their_gradient():
    assert pg.gathers(True, 5) and pg.gathers(True, 8)
    assert not pg.gathers(False, 5)  # no pool: every cell has a gradient
    assert not pg.gathers(True, 9)   # a filter row wider than a row vector


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", [(2, 2, 2, 0), (3, 3, 2, 0), (3, 3, 2, 1), (2, 2, 1, 0)])
def test_a_layer_sums_its_gradient_by_the_gather_and_matches_its_twin(pool, dtype):
    """One image: the layer's weight gradient has the gather's bits (the dense sum's differ),
    with the windows tiling the conv output, overlapping, or padded."""
    rng, x, W, b = conv_operands((1, 1, 20, 20), 6, 5, 5, dtype, 3)
    out, argmax, ctx = reference.conv_relu_pool_forward(x, W, b, 1, 0, *pool)
    dout = rng.standard_normal(out.shape).astype(dtype)
    with every_gradient_directly() as chosen:
        got = jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 0, *pool,
                                          need_dx=False)
    assert chosen == [True]
    want = reference.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 0, *pool,
                                             need_dx=False)
    assert_all_close(got, want, dtype)
    patch, sums, db = scratch(1, 20, 20, 5, 0, 6, dtype)
    pg.add_pooled_weight_gradient(x, 0, 1, 5, 5, 0, pool, dout, out, argmax, patch, sums, db)
    gathered = np.zeros((6, 25), dtype)
    pg.add_row_sums(sums, 5, gathered)
    np.testing.assert_array_equal(got[1].reshape(6, 25), gathered)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_part_with_an_image_that_is_not_finite_is_summed_densely_from_the_start(value,
                                                                                   dtype):
    # the gather stops at the chunk of that image, the last of its part, and the sums of
    # the chunks before it are dropped: NaN where the twin has NaN
    rng, x, W, b = conv_operands((40, 1, 20, 20), 6, 5, 5, dtype, 4)
    x[39, 0, 9, 9] = value
    out, argmax, ctx = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
    dout = rng.standard_normal(out.shape).astype(dtype)
    with every_gradient_directly():
        got = jit.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 0, 2, 2, 2, 0,
                                          need_dx=False)
    with np.errstate(invalid="ignore"):  # inf * 0 in the twin's product
        want = reference.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 0, 2, 2, 2,
                                                 0, need_dx=False)
    assert np.isnan(want[1]).any()
    assert_all_close(got, want, dtype)
