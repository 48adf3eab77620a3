"""Every jit kernel against its NumPy twin, over random shapes, strides, paddings and dtypes."""
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import simd
from fastconv.kernels.shapes import conv_output_hw

from conftest import tolerance

SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def conv_geometry(draw):
    """Random (x shape, filter h/w, stride, pad) where the filter fits at least once."""
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 3))
    fh = draw(st.integers(1, 5))
    fw = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 6))  # includes stride larger than the filter
    pad = draw(st.integers(0, 3))
    H = draw(st.integers(max(1, fh - 2 * pad), 12))
    W = draw(st.integers(max(1, fw - 2 * pad), 12))
    return (N, C, H, W), fh, fw, stride, pad


def assert_close(actual, expected, dtype):
    """Close to the twin's values, NaN where they are NaN. An entry summed from terms of some
    size rounds by about eps times their size however small the entry (a float32 conv output
    of 0.08 from 24 terms of about 40 differed by 2.5e-5): the absolute tolerance scales
    with the largest entry, taken as the size of the terms."""
    assert actual.dtype == expected.dtype == dtype
    assert actual.shape == expected.shape
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    tol = tolerance(dtype)
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale)


def assert_all_close(got, want, dtype):
    """Gradient tuples: entries close, or None on both sides (a skipped dx)."""
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert_close(g, w, dtype)


def pooled_block_operands(geometry, FN, dtype, seed):
    """(rng, (x, W, b, stride, pad, pool_h, pool_w, pool_stride, pool_pad)) for a conv ->
    relu -> pool block of ``block_geometry()``, or None where the pool window does not fit."""
    shape, fh, fw, stride, pad, ph, pw, ps, pp = geometry
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], fh, fw, stride, pad)
    if conv_h + 2 * pp < ph or conv_w + 2 * pp < pw:
        return None
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    return rng, (x, W, b, stride, pad, ph, pw, ps, pp)


def conv_operands(shape, FN, fh, fw, dtype, seed):
    """Random (rng, x, W, b) for a convolution of FN filters over inputs of shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((FN, shape[1], fh, fw)).astype(dtype)
    b = rng.standard_normal(FN).astype(dtype)
    return rng, x, W, b


@SETTINGS
@given(conv_geometry(), DTYPES, st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_match_twin(geometry, dtype, seed):
    shape, fh, fw, stride, pad = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    col = jit.im2col(x, fh, fw, stride, pad)
    # im2col only moves numbers: it is exact
    np.testing.assert_array_equal(col, reference.im2col(x, fh, fw, stride, pad))
    assert col.dtype == dtype
    dcol = rng.standard_normal(col.shape).astype(dtype)
    # the gather sums in the twin's order, so even col2im is exact
    np.testing.assert_array_equal(jit.col2im(dcol, shape, fh, fw, stride, pad),
                                  reference.col2im(dcol, shape, fh, fw, stride, pad))


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), DTYPES,
       st.integers(0, 2**32 - 1))
def test_split_rows_permute_the_im2col_columns_only(N, C, half_h, half_w, fh, fw, stride,
                                                    dtype, seed):
    # the pooled blocks' chunks put each image's even output rows first, then its odd ones:
    # the same columns in another order, and col2im reads them back from where they went
    from fastconv.kernels.jit.im2col import _col2im_padded, _im2col_padded
    out_h, out_w = 2 * half_h, 2 * half_w
    H, W = (out_h - 1) * stride + fh, (out_w - 1) * stride + fw
    rng = np.random.default_rng(seed)
    xp = rng.standard_normal((N, C, H, W)).astype(dtype)
    K, m = C * fh * fw, N * out_h * out_w
    in_row_order, split = np.empty((K, m), dtype), np.empty((K, m), dtype)
    _im2col_padded(xp, N, fh, fw, stride, out_h, out_w, in_row_order, False)
    _im2col_padded(xp, N, fh, fw, stride, out_h, out_w, split, True)
    rows = np.arange(out_h)
    order = np.concatenate([rows[::2], rows[1::2]])  # conv row at each slot
    by_image = in_row_order.reshape(K, N, out_h, out_w)
    np.testing.assert_array_equal(split, by_image[:, :, order].reshape(K, m))
    dcols = rng.standard_normal((K, m)).astype(dtype)
    dx_natural, dx_split = np.empty_like(xp), np.empty_like(xp)
    _col2im_padded(dcols, N, fh, fw, stride, out_h, out_w, dx_natural, False)
    moved = dcols.reshape(K, N, out_h, out_w)[:, :, order].reshape(K, m)
    _col2im_padded(moved, N, fh, fw, stride, out_h, out_w, dx_split, True)
    np.testing.assert_array_equal(dx_split, dx_natural)  # the same sums in the same order


@SETTINGS
@given(conv_geometry(), st.integers(1, 4), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv2d_matches_twin(geometry, FN, dtype, need_dx, seed):
    shape, fh, fw, stride, pad = geometry
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    out, col = jit.conv2d_forward(x, W, b, stride, pad)
    ref_out, ref_col = reference.conv2d_forward(x, W, b, stride, pad)
    assert_close(out, ref_out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    got = jit.conv2d_backward(dout, x, W, col, stride, pad, need_dx)
    want = reference.conv2d_backward(dout, x, W, ref_col, stride, pad, need_dx)
    assert_all_close(got, want, dtype)
    assert (got[0] is None) == (not need_dx)


@st.composite
def pool_geometry(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 3))
    ph = draw(st.integers(1, 4))
    pw = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 5))
    pad = draw(st.integers(0, min(ph, pw) - 1))
    H = draw(st.integers(max(1, ph - 2 * pad), 11))
    W = draw(st.integers(max(1, pw - 2 * pad), 11))
    return (N, C, H, W), ph, pw, stride, pad


@SETTINGS
@given(pool_geometry(), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_maxpool_matches_twin(geometry, dtype, with_ties, seed):
    shape, ph, pw, stride, pad = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    if with_ties:  # ReLU outputs are full of equal zeros: the first maximum must win
        x = np.maximum(np.round(x), 0).astype(dtype)
    out, argmax = jit.maxpool_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = reference.maxpool_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    assert out.dtype == dtype and out.shape == (shape[:2] + conv_output_hw(
        shape[2], shape[3], ph, pw, stride, pad))
    dout = rng.standard_normal(out.shape).astype(dtype)
    assert_close(jit.maxpool_backward(dout, argmax, shape, ph, pw, stride, pad),
                 reference.maxpool_backward(dout, ref_argmax, shape, ph, pw, stride, pad), dtype)


@SETTINGS
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), DTYPES, st.integers(0, 2**32 - 1))
def test_relu_matches_twin(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0  # the boundary: the book's mask is x <= 0
    out, mask = jit.relu_forward(x)
    ref_out, ref_mask = reference.relu_forward(x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(mask, ref_mask)
    assert out.dtype == dtype
    dout = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(jit.relu_backward(dout.copy(), mask),
                                  reference.relu_backward(dout.copy(), ref_mask))


@SETTINGS
@given(st.integers(1, 20), st.integers(1, 30), st.integers(1, 12), DTYPES, st.booleans(),
       st.integers(0, 2**32 - 1))
def test_affine_matches_twin(N, D, M, dtype, need_dx, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D)).astype(dtype)
    W = rng.standard_normal((D, M)).astype(dtype)
    b = rng.standard_normal(M).astype(dtype)
    assert_close(jit.affine_forward(x, W, b), reference.affine_forward(x, W, b), dtype)
    dout = rng.standard_normal((N, M)).astype(dtype)
    got = jit.affine_backward(dout, x, W, need_dx)
    want = reference.affine_backward(dout, x, W, need_dx)
    assert_all_close(got, want, dtype)


def assert_same_bits(got, want):
    """Equal bit patterns, which unlike == tell -0.0 from +0.0, and NaN where want has NaN
    (whose sign and payload depend on which operand the CPU passes on)."""
    got, want = np.ascontiguousarray(got), np.ascontiguousarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    as_bits = {4: np.uint32, 8: np.uint64}[want.itemsize]
    np.testing.assert_array_equal(got.view(as_bits)[~nan], want.view(as_bits)[~nan])


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 1e300]


@SETTINGS
@given(st.lists(st.integers(1, 7), min_size=1, max_size=3), DTYPES,
       st.one_of(st.just(0.0), st.just(-0.0), st.floats(-10, 10, allow_subnormal=False)),
       st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_weight_decay_gradient_matches_twin_bit_for_bit(shape, dtype, lam, specials, transposed,
                                                         seed):
    # the same two roundings as NumPy's grad + lam * W, every sign of zero and NaN included
    rng = np.random.default_rng(seed)
    grad, W = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    if specials:
        with np.errstate(over="ignore"):
            for a in (grad, W):
                a.flat[rng.integers(0, a.size, 3)] = rng.choice(SPECIALS, 3).astype(dtype)
    if transposed:  # views the kernel copies first
        grad, W = grad.T, W.T
    lam = dtype(lam)
    with np.errstate(invalid="ignore", over="ignore"):
        got = jit.weight_decay_gradient(grad, lam, W)
        want = reference.weight_decay_gradient(grad, lam, W)
    assert got.dtype == dtype and got.shape == grad.shape
    assert_same_bits(got, want)
    assert not np.shares_memory(got, grad) and not np.shares_memory(got, W)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("column", [0, 2, 4])
def test_softmax_shifts_by_the_largest_score_wherever_it_is(dtype, column):
    # exp of an unshifted 1000 overflows: a row's peak must be found in every column
    x = np.zeros((3, 5), dtype)
    x[:, column] = 1000
    t = np.array([column, 0, 4])
    y, loss = jit.softmax_cross_entropy_forward(x, t)
    want_y, want_loss = reference.softmax_cross_entropy_forward(x, t)
    assert np.all(np.isfinite(y)) and np.isfinite(loss)
    np.testing.assert_allclose(y, want_y, **tolerance(dtype))
    np.testing.assert_allclose(loss, want_loss, **tolerance(dtype))


def test_affine_bias_gradient_of_float32_is_summed_in_float64():
    # 200,000 rows of 0.1: a float32 running sum drifts by about 1%, one in float64 then
    # rounded once is within an ulp of the exact 20,000
    rows = 200_000
    dout = np.full((rows, 3), 0.1, np.float32)
    x, W = np.zeros((rows, 2), np.float32), np.ones((2, 3), np.float32)
    _, _, db = jit.affine_backward(dout, x, W)
    assert db.dtype == np.float32
    exact = np.float32(rows * np.float64(np.float32(0.1)))
    np.testing.assert_allclose(db, exact, rtol=2 * np.finfo(np.float32).eps)


def test_weight_decay_gradient_leaves_other_operands_to_numpy():
    # shapes that broadcast, and mixed dtypes, as the book's expression takes them
    grad, row = np.ones((3, 4)), np.arange(4.0)
    np.testing.assert_array_equal(jit.weight_decay_gradient(grad, 0.5, row), grad + 0.5 * row)
    mixed = jit.weight_decay_gradient(grad.astype(np.float32), np.float64(0.5), grad)
    assert mixed.dtype == np.float64
    # float32 arrays and a float64 scalar: NumPy 2 computes in float64, NumPy 1.x in float32
    grad32, W32, lam = np.full(3, 0.1, np.float32), np.full(3, 0.3, np.float32), np.float64(0.1)
    want = grad32 + lam * W32
    got = jit.weight_decay_gradient(grad32, lam, W32)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(st.integers(1, 30), st.integers(2, 12), DTYPES, st.floats(0.1, 50),
       st.integers(0, 2**32 - 1))
def test_softmax_cross_entropy_matches_twin(N, K, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((N, K))).astype(dtype)
    t = rng.integers(0, K, N)
    y, loss = jit.softmax_cross_entropy_forward(x, t)
    ref_y, ref_loss = reference.softmax_cross_entropy_forward(x, t)
    assert_close(y, ref_y, dtype)
    assert np.asarray(loss).dtype == dtype
    np.testing.assert_allclose(loss, ref_loss, **tolerance(dtype))
    assert_close(jit.softmax_cross_entropy_backward(y, t),
                 reference.softmax_cross_entropy_backward(ref_y, t), dtype)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 200), DTYPES, st.floats(0.01, 100),
       st.integers(0, 2**32 - 1))
def test_batchnorm_matches_twin(N, D, dtype, scale, seed):
    # D up to 200 spans several column blocks and a partial last one. The column means are
    # of the order of the spread: with a mean far larger than the spread, centring cancels
    # digits and both float32 results drift from the truth (see the next test).
    rng = np.random.default_rng(seed)
    x = (scale * (rng.standard_normal((N, D)) + rng.standard_normal(D))).astype(dtype)
    gamma = rng.standard_normal(D).astype(dtype)
    beta = rng.standard_normal(D).astype(dtype)
    eps = dtype(10e-7)
    got = jit.batchnorm_forward(x, gamma, beta, eps)
    want = reference.batchnorm_forward(x, gamma, beta, eps)
    out, mu, var, xc, xn, std = want
    # Centring a column rounds at the scale of its largest entry, not of its spread, and xn
    # then divides that rounding by the column's std: measure each output against the scale
    # its rounding noise really has, so that the test holds on any SIMD width.
    tol = tolerance(dtype)["atol"]
    reach = np.max(np.abs(x.astype(np.float64)), axis=0)  # per column
    amplified = reach / std.astype(np.float64)
    atol = {"out": tol * (np.abs(gamma) * amplified + np.abs(beta) + 1),
            "mu": tol * reach, "var": tol * reach ** 2, "xc": tol * reach,
            "xn": tol * (amplified + 1), "std": tol * reach}
    for name, g, w in zip(("out", "mu", "var", "xc", "xn", "std"), got, want):
        assert g.dtype == w.dtype == dtype and g.shape == w.shape, name
        excess = np.abs(g.astype(np.float64) - w) - atol[name] - tol * np.abs(w)
        assert np.all(excess <= 0), (name, float(np.max(excess)))
    dout = rng.standard_normal((N, D)).astype(dtype)
    assert_all_close(jit.batchnorm_backward(dout, xc, xn, std, gamma),
                     reference.batchnorm_backward(dout, xc, xn, std, gamma), dtype)


@pytest.mark.parametrize("seed", range(5))
def test_batchnorm_float32_is_as_accurate_as_the_twin_on_ill_conditioned_columns(seed):
    # spread 0.01 around means near 1: centring loses ~7 bits, so the two float32 results
    # differ by ~1e-4 (found by hypothesis); both must stay as close to the float64 truth
    rng = np.random.default_rng(seed)
    x64 = 0.01 * rng.standard_normal((39, 30)) + rng.standard_normal(30)
    gamma64, beta64 = rng.standard_normal((2, 30))
    dout64 = rng.standard_normal((39, 30))
    eps = 10e-7
    truth = reference.batchnorm_forward(x64, gamma64, beta64, eps)
    truth_grads = reference.batchnorm_backward(dout64, *truth[3:6], gamma64)
    f4 = [a.astype(np.float32) for a in (x64, gamma64, beta64, dout64)]
    errors = {}
    for name, k in (("jit", jit), ("twin", reference)):
        fwd = k.batchnorm_forward(*f4[:3], np.float32(eps))
        grads = k.batchnorm_backward(f4[3], *fwd[3:6], f4[1])
        errors[name] = [np.max(np.abs(got - want)) / np.max(np.abs(want))
                        for got, want in zip(fwd + grads, truth + truth_grads)]
    for got, twin in zip(errors["jit"], errors["twin"]):
        assert got <= max(2 * twin, 1e-6), errors


def test_backends_export_the_same_kernels():
    public = lambda m: {n for n in dir(m) if not n.startswith("_") and callable(getattr(m, n))}
    assert public(jit) == public(reference)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_padding_is_never_the_maximum(dtype):
    x = -np.ones((1, 1, 2, 2), dtype=dtype)  # all negative: zero padding would win
    out, argmax = jit.maxpool_forward(x, 2, 2, 2, 1)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2), dtype=dtype))


@st.composite
def block_geometry(draw):
    """A convolution followed by a pool window that fits its output."""
    shape, fh, fw, stride, pad = draw(conv_geometry())
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], fh, fw, stride, pad)
    ph = draw(st.integers(1, min(3, conv_h + 2)))
    pw = draw(st.integers(1, min(3, conv_w + 2)))
    pool_pad = draw(st.integers(0, min(ph, pw) - 1))
    if conv_h + 2 * pool_pad < ph or conv_w + 2 * pool_pad < pw:
        pool_pad = min(ph, pw) - 1
    pool_stride = draw(st.integers(1, 3))
    return shape, fh, fw, stride, pad, ph, pw, pool_stride, pool_pad


@SETTINGS
@given(conv_geometry(), st.integers(1, 4), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_block_matches_twin(geometry, FN, dtype, need_dx, seed):
    shape, fh, fw, stride, pad = geometry
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    out, ctx = jit.conv_relu_forward(x, W, b, stride, pad)
    ref_out, ref_ctx = reference.conv_relu_forward(x, W, b, stride, pad)
    assert_close(out, ref_out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    got = jit.conv_relu_backward(dout, ref_out, x, W, ctx, stride, pad, need_dx)
    want = reference.conv_relu_backward(dout, ref_out, x, W, ref_ctx, stride, pad, need_dx)
    assert_all_close(got, want, dtype)


@SETTINGS
@given(block_geometry(), st.integers(1, 4), DTYPES, st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_relu_pool_block_matches_twin(geometry, FN, dtype, need_dx, seed):
    shape, fh, fw, stride, pad, ph, pw, ps, pp = geometry
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], fh, fw, stride, pad)
    if conv_h + 2 * pp < ph or conv_w + 2 * pp < pw:
        return
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, stride, pad, ph, pw, ps, pp)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, stride, pad,
                                                                    ph, pw, ps, pp)
    assert_close(out, ref_out, dtype)
    # a float32 near-tie may pick another cell; where the values agree exactly, so must argmax
    np.testing.assert_array_equal(argmax[out == ref_out], ref_argmax[out == ref_out])
    dout = rng.standard_normal(out.shape).astype(dtype)
    args = (stride, pad, ph, pw, ps, pp, need_dx)
    got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, *args)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, *args)
    assert_all_close(got, want, dtype)


@st.composite
def block_chain(draw):
    """(x shape, [(filters, filter size, stride, pad, pool or None)]): 1-3 conv blocks, each
    fitting the output of the one before; 3x3 stride-1 convs of 8 channels run by Winograd."""
    N, C = draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 8]))
    H, W = draw(st.integers(3, 12)), draw(st.integers(3, 12))
    specs, h, w = [], H, W
    for _ in range(draw(st.integers(1, 3))):
        FN, size = draw(st.sampled_from([1, 3, 8])), draw(st.sampled_from([1, 2, 3]))
        stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        if min(h, w) + 2 * pad < size:
            break
        h, w = conv_output_hw(h, w, size, size, stride, pad)
        pool = None
        if draw(st.booleans()) and min(h, w) >= 2:
            pool = (2, 2, 2, 0)
            h, w = conv_output_hw(h, w, *pool)
        specs.append((FN, size, stride, pad, pool))
    assume(specs)
    return (N, C, H, W), specs


def assert_close_to_scale(actual, expected, dtype):
    """Close against the array's own scale: after several layers, values near 0 carry the
    rounding of the large ones."""
    assert actual.dtype == expected.dtype == dtype and actual.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@SETTINGS
@given(block_chain(), DTYPES, st.booleans(), st.booleans(), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_conv_blocks_match_the_blocks_one_by_one_and_the_twin(chain_shape, dtype, with_affine,
                                                              with_argmax, need_dx, seed):
    shape, specs = chain_shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    blocks, C = [], shape[1]
    for FN, size, stride, pad, pool in specs:
        W = rng.standard_normal((FN, C, size, size)) / np.sqrt(C * size * size)
        b = 0.1 * rng.standard_normal(FN)
        blocks.append((W.astype(dtype), b.astype(dtype), stride, pad, pool))
        C = FN
    results, product = jit.conv_blocks_forward(x, blocks, None, with_argmax)
    assert product is None
    # bit for bit what the single-block kernels give, one after another
    given_x = x
    for (W, b, stride, pad, pool), (out, argmax, _) in zip(blocks, results):
        if pool is None:
            want, _ = jit.conv_relu_forward(given_x, W, b, stride, pad)
            assert argmax is None
        else:
            want, want_argmax, _ = jit.conv_relu_pool_forward(given_x, W, b, stride, pad, *pool,
                                                              with_argmax=with_argmax)
            if with_argmax:
                np.testing.assert_array_equal(argmax, want_argmax)
            else:
                assert argmax is None
        np.testing.assert_array_equal(out, want)
        given_x = out
    W2 = None
    if with_affine:
        W2 = rng.standard_normal((given_x[0].size, 3)).astype(dtype)
        _, product = jit.conv_blocks_forward(x, blocks, W2, with_argmax)
        assert_close_to_scale(product, given_x.reshape(len(x), -1) @ W2, dtype)
    ref_results, ref_product = reference.conv_blocks_forward(x, blocks, W2)
    for (out, _, _), (ref_out, _, _) in zip(results, ref_results):
        assert_close_to_scale(out, ref_out, dtype)
    if with_affine:
        assert_close_to_scale(product, ref_product, dtype)
    # backward from the twin's forward pass: both then see the same ReLU masks and argmax
    saved, given_x = [], x
    for (W, _, stride, pad, pool), (out, argmax, ctx) in zip(blocks, ref_results):
        saved.append((out, argmax, given_x, W, ctx, stride, pad, pool))
        given_x = out
    affine = None
    if with_affine:
        affine = (given_x.reshape(len(x), -1), W2)
        dout = rng.standard_normal((len(x), W2.shape[1])).astype(dtype)
    else:
        dout = rng.standard_normal(given_x.shape).astype(dtype)
    got = jit.conv_blocks_backward(dout, saved, need_dx, affine)
    want = reference.conv_blocks_backward(dout, saved, need_dx, affine)
    if need_dx:
        assert_close_to_scale(got[0], want[0], dtype)
    else:
        assert got[0] is None and want[0] is None
    assert len(got[1]) == len(blocks)
    for got_grads, want_grads in zip(got[1], want[1]):
        for g, w in zip(got_grads, want_grads):
            assert_close_to_scale(g, w, dtype)
    if with_affine:
        for g, w in zip(got[2], want[2]):
            assert_close_to_scale(g, w, dtype)
    else:
        assert got[2] is None and want[2] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_blocks_with_a_large_affine_layer_match_the_twin(monkeypatch, dtype):
    # large affine weights take the layer's own backward kernel before the blocks' parts
    # (AFFINE_IN_PARTS_MAX_BYTES): both ways agree with the twin
    from fastconv.kernels.jit import fused
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 2, 9, 9)).astype(dtype)
    blocks = [((rng.standard_normal((8, 2, 3, 3)) / 4).astype(dtype),
               rng.standard_normal(8).astype(dtype) / 10, 1, 1, None),
              ((rng.standard_normal((8, 8, 3, 3)) / 8).astype(dtype),
               rng.standard_normal(8).astype(dtype) / 10, 1, 1, (2, 2, 2, 0))]
    W2 = (rng.standard_normal((8 * 4 * 4, 7)) / 11).astype(dtype)
    results, _ = reference.conv_blocks_forward(x, blocks, W2)
    saved = [(out, argmax, given_x, spec[0], ctx, 1, 1, spec[4]) for (out, argmax, ctx),
             given_x, spec in zip(results, (x, results[0][0]), blocks)]
    affine = (results[1][0].reshape(6, -1), W2)
    dout = rng.standard_normal((6, 7)).astype(dtype)
    want = reference.conv_blocks_backward(dout, saved, True, affine)
    for limit in (fused.AFFINE_IN_PARTS_MAX_BYTES, {np.dtype(dtype): 0}):
        monkeypatch.setattr(fused, "AFFINE_IN_PARTS_MAX_BYTES", limit)
        dx, grads, affine_grads = jit.conv_blocks_backward(dout, saved, True, affine)
        assert_close_to_scale(dx, want[0], dtype)
        for got_pair, want_pair in zip(grads + [affine_grads], want[1] + [want[2]]):
            for got, expected in zip(got_pair, want_pair):
                assert_close_to_scale(got, expected, dtype)


@SETTINGS
@given(block_geometry(), st.integers(1, 4), DTYPES, st.integers(0, 2**32 - 1),
       st.sampled_from(["plain", "ties", "nan", "inf bias"]))
def test_conv_relu_pool_block_without_argmax_pools_the_same_values(geometry, FN, dtype, seed,
                                                                   data):
    # inference skips the window indices, and the 2x2 fast path then pools relu(max + bias)
    # instead of the max of relu(cell + bias): the values must be identical, bit for bit,
    # on ties (integer-valued inputs), NaN planes and non-finite biases too
    shape, fh, fw, stride, pad, ph, pw, ps, pp = geometry
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], fh, fw, stride, pad)
    if conv_h + 2 * pp < ph or conv_w + 2 * pp < pw:
        return
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    if data == "ties":
        x, W = np.round(x * 2).astype(dtype), np.round(W).astype(dtype)
    elif data == "nan":  # anywhere: Numba's max(1.0, nan) is 1.0, max(nan, 1.0) nan
        x[tuple(rng.integers(size) for size in shape)] = np.nan
    elif data == "inf bias":
        b[0] = np.inf
    for kernels in (jit, reference):
        out, argmax, _ = kernels.conv_relu_pool_forward(x, W, b, stride, pad, ph, pw, ps, pp)
        values, none, _ = kernels.conv_relu_pool_forward(x, W, b, stride, pad, ph, pw, ps, pp,
                                                         with_argmax=False)
        assert none is None
        np.testing.assert_array_equal(values, out)  # NaN equals NaN here
        assert values.dtype == out.dtype == dtype


@pytest.mark.parametrize("cell", range(4))
@pytest.mark.parametrize("stride", [1, 2])
def test_the_2x2_pool_without_argmax_keeps_a_nan_in_any_cell_of_a_window(cell, stride):
    # Numba's max(1.0, nan) is 1.0 but max(nan, 1.0) is nan, so the values-only fast path
    # must hand a plane with a NaN to the general one, wherever in a window the NaN is
    x = np.ones((1, 1, 4, 4))
    x[0, 0, cell // 2, cell % 2] = np.nan
    W, b = np.ones((1, 1, 1, 1)), np.zeros(1)
    values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0, with_argmax=False)
    want, _, _ = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0)
    np.testing.assert_array_equal(values, want)  # NaN equals NaN here
    assert np.isnan(values[0, 0, 0, 0])


@pytest.mark.parametrize("size", [4, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_the_2x2_pool_without_argmax_keeps_a_nan_in_any_row_of_the_plane(size, stride):
    # the last row is only ever a window's bottom row, and with stride 2 every odd row is:
    # a NaN there must reach the output as the twin's does (5x5 planes are not split)
    W, b = np.ones((1, 1, 1, 1)), np.zeros(1)
    for cell in range(size * size):
        x = np.ones((1, 1, size, size))
        x[0, 0, cell // size, cell % size] = np.nan
        values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0,
                                                  with_argmax=False)
        want, _, _ = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0)
        np.testing.assert_array_equal(values, want, err_msg=f"NaN at cell {cell}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_2x2_pool_without_argmax_on_planes_of_odd_and_even_sides(dtype):
    # the values-only path reads a plane's rows in pairs and, on even widths, all its
    # windows in one pass: odd heights and widths leave a row or a column out
    rng = np.random.default_rng(17)
    W, b = np.ones((2, 1, 1, 1), dtype), np.array([0.1, -0.2], dtype)
    for height in range(4, 8):
        for width in range(4, 8):
            x = rng.standard_normal((2, 1, height, width)).astype(dtype)
            for stride in (1, 2):
                values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0,
                                                          with_argmax=False)
                want, _, _ = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0)
                np.testing.assert_array_equal(values, want,
                                              err_msg=f"{height}x{width}, stride {stride}")


def test_the_2x2_pool_without_argmax_of_minus_inf_plus_an_infinite_bias_is_nan():
    # relu(-inf + inf) is NaN in the book's order (bias, ReLU, then the max), while the
    # values-only path's relu(max + bias) would give inf: a bias that is not finite must
    # take the general path (5x5 planes are not split)
    x = np.ones((1, 1, 5, 5))
    x[0, 0, 1, 1] = -np.inf
    W, b = np.ones((1, 1, 1, 1)), np.array([np.inf])
    for stride in (1, 2):
        values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0,
                                                  with_argmax=False)
        with np.errstate(invalid="ignore"):  # -inf + inf, on purpose
            want, _, _ = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, stride, 0)
        assert np.isnan(want[0, 0, 0, 0])
        np.testing.assert_array_equal(values, want)


def test_conv_relu_pool_without_argmax_at_simple_convnet_shapes():
    # the fixed shapes of SimpleConvNet's block (2x2 pool, stride 2, finite bias, no NaN);
    # ties at 0 from the ReLU are everywhere
    rng = np.random.default_rng(7)
    x = rng.random((3, 1, 28, 28), dtype=np.float32)
    W = rng.standard_normal((5, 1, 5, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    out, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
    values, _, _ = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0, with_argmax=False)
    np.testing.assert_array_equal(values, out)
    assert (out == 0).any() and (out > 0).any()


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.one_of(st.integers(1, 4), st.integers(6, 9)), DTYPES,
       st.booleans(), st.integers(0, 2**32 - 1), st.sampled_from(["plain", "ties", "nan"]))
def test_the_2x2_stride_2_block_matches_twin_exactly_on_ties(N, C, FN, half_h, half_w, dtype,
                                                               need_dx, seed, data):
    # the book's pool (2x2, stride 2, pad 0) on conv outputs of even height and width has
    # its own forward kernel and dense backward prologue, on im2col chunks whose rows are
    # split (even rows first), narrow planes and wide ones; with integer-valued operands every
    # product is exact, ties between the four cells of a window are everywhere, and the
    # window index must be the first maximum, as np.argmax's, in every window
    shape = (N, C, 2 * half_h + 2, 2 * half_w + 2)  # 3x3 filters, pad 0
    rng, x, W, b = conv_operands(shape, FN, 3, 3, dtype, seed)
    if data == "ties":
        x, W, b = (np.round(a * 2).astype(dtype) for a in (x, W, b))
    elif data == "nan":
        x[tuple(rng.integers(size) for size in shape)] = np.nan
    out, argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
    ref_out, ref_argmax, ref_ctx = reference.conv_relu_pool_forward(x, W, b, 1, 0, 2, 2, 2, 0)
    if data == "ties":
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(argmax, ref_argmax)
    else:
        np.testing.assert_allclose(out, ref_out, **tolerance(dtype))  # NaN matches NaN
        same = (out == ref_out) | (np.isnan(out) & np.isnan(ref_out))
        np.testing.assert_array_equal(argmax[same], ref_argmax[same])
    dout = rng.standard_normal(out.shape).astype(dtype)
    args = (1, 0, 2, 2, 2, 0, need_dx)
    got = jit.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ctx, *args)
    want = reference.conv_relu_pool_backward(dout, ref_out, ref_argmax, x, W, ref_ctx, *args)
    assert_all_close(got, want, dtype)  # NaN matches NaN


@pytest.mark.parametrize("pool", [(2, 2, 2, 0), (3, 3, 1, 1)])
def test_maxpool_nan_wins_like_np_argmax(pool):
    ph, pw, stride, pad = pool
    x = np.arange(2 * 6 * 6, dtype=np.float64).reshape(1, 2, 6, 6)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 4, 5] = np.nan
    out, argmax = jit.maxpool_forward(x, ph, pw, stride, pad)
    ref_out, ref_argmax = reference.maxpool_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)  # NaNs compare equal here
    np.testing.assert_array_equal(argmax, ref_argmax)
    assert np.isnan(out).any()


@pytest.mark.parametrize("bias", [0.5, np.inf, -np.inf, np.nan])
def test_conv_relu_pool_block_nan_and_infinite_bias_like_twin(bias):
    # a NaN input pixel makes NaNs in the planes it reaches; an infinite or NaN bias makes a
    # whole channel inf, 0 or NaN. Both must pool like the twin (the 2x2 fast path must not
    # take such planes).
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 8, 8))
    x[0, 1, 3, 4] = np.nan
    W = rng.standard_normal((3, 2, 3, 3))
    b = np.array([0.0, bias, -0.25])
    out, argmax, _ = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    ref_out, ref_argmax, _ = reference.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)  # NaN matches NaN
    same = (out == ref_out) | (np.isnan(out) & np.isnan(ref_out))
    np.testing.assert_array_equal(argmax[same], ref_argmax[same])
    assert np.isnan(out).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_argmax", [True, False])
def test_conv_relu_pool_block_an_infinite_bias_on_an_opposite_infinity_pools_nan(dtype,
                                                                                 with_argmax):
    # -inf + inf is NaN: the cells of channel 0 that see the -inf pixel are NaN after the
    # bias although the conv output there holds no NaN, so the 2x2 fast paths (which look
    # for NaN before the bias) must not take that channel
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 1, 8, 8)).astype(dtype)
    x[0, 0, 2, 3] = -np.inf
    W = (np.abs(rng.standard_normal((2, 1, 3, 3))) + 0.1).astype(dtype)  # -inf stays -inf
    b = np.array([np.inf, 0.5], dtype=dtype)
    got = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0, with_argmax=with_argmax)
    with np.errstate(invalid="ignore"):  # the twin's -inf + inf, meant here
        want = reference.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    assert np.isnan(want[0][0, 0]).any()
    # NaN and inf where the twin has them, the rest to rounding: the jit pipeline multiplies
    # in chunks where the twin makes one product, and some BLAS builds round those apart in
    # float32 (NumPy 1.24's OpenBLAS on an Intel Xeon with AVX-512, 2026-12-07: 9 of 64 cells
    # one unit apart)
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(want[0]))
    assert_close(got[0], want[0], dtype)
    if with_argmax:
        np.testing.assert_array_equal(got[1], want[1])


@SETTINGS
@given(st.integers(1, 13), st.integers(1, 11), st.integers(1, 700), DTYPES,
       st.integers(0, 2**32 - 1))
def test_weight_gradient_tiles_match_matmul(FN, K, m, dtype, seed):
    # 4x4 tiles of dot products cover the largest block of whole tiles and nothing else;
    # the sums are added to what dW holds, as the pipeline sums a part's chunks
    from fastconv.kernels.jit.weight_gradient import add_weight_gradient_tiles
    rng = np.random.default_rng(seed)
    rows, cols = (rng.standard_normal(shape).astype(dtype) for shape in ((FN, m), (K, m)))
    start = rng.standard_normal((FN, K)).astype(dtype)
    dW = start.copy()
    F, C = add_weight_gradient_tiles(rows, cols, dW)
    assert (F, C) == (FN - FN % 4, K - K % 4)
    want = start.astype(np.float64)
    want[:F, :C] += rows[:F].astype(np.float64) @ cols[:C].astype(np.float64).T
    # rounding grows with the length of each sum and the size of its terms
    scale = np.sqrt(m) * np.abs(rows).max() * np.abs(cols).max() + np.abs(start).max()
    np.testing.assert_allclose(dW, want, rtol=0, atol=8 * np.finfo(dtype).eps * scale)
    assert dW.dtype == dtype


def test_weight_gradient_tiles_refuse_shapes_that_disagree():
    from fastconv.kernels.jit.weight_gradient import add_weight_gradient_tiles
    rows, cols = np.ones((4, 5)), np.ones((4, 6))
    dW = np.zeros((4, 4))
    with pytest.raises(ValueError, match="must agree"):
        add_weight_gradient_tiles(rows, cols, dW)
    assert not dW.any()


# (16, 1): DeepConvNet's first layer, 9 columns, tiled in float32 only (DOT_MIN_COLUMNS_FLOAT32)
@pytest.mark.parametrize("FN, C", [(30, 25), (16, 16), (7, 2), (3, 17), (16, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_weight_gradient_through_the_tiles_and_the_strips(FN, C, dtype, monkeypatch):
    # chunks of 24x24 positions take the tiled path (DOT_MIN_POSITIONS): the filters and
    # the im2col columns (C*9) that whole tiles leave over go through BLAS, and dW must be
    # whole. By im2col: with 8+ channels these 3x3 convolutions would run by Winograd.
    from fastconv.kernels.jit import pipeline
    monkeypatch.setattr(pipeline, "WINOGRAD_MIN_CHANNELS", sys.maxsize)
    rng = np.random.default_rng(FN * C)
    x = rng.standard_normal((3, C, 26, 26)).astype(dtype)
    W = rng.standard_normal((FN, C, 3, 3)).astype(dtype)
    out, ctx = jit.conv2d_forward(x, W, np.zeros(FN, dtype), 1, 0)
    assert out.shape[2] * out.shape[3] >= pipeline.DOT_MIN_POSITIONS
    dout = rng.standard_normal(out.shape).astype(dtype)
    _, dW, db = jit.conv2d_backward(dout, x, W, ctx, 1, 0, False)
    want = np.einsum("nfyx,ncyx->fc", dout.astype(np.float64),
                     np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
                     .astype(np.float64).reshape(3, C, 24, 24, 9).transpose(0, 1, 4, 2, 3)
                     .reshape(3, C * 9, 24, 24)).reshape(W.shape)
    # each entry sums 3 * 576 terms of unit scale: its rounding is of that scale
    atol = 8 * np.finfo(dtype).eps * 3 * 576
    np.testing.assert_allclose(dW, want, rtol=0, atol=atol)
    np.testing.assert_allclose(db, dout.astype(np.float64).sum(axis=(0, 2, 3)), rtol=0,
                               atol=atol)


# D = 5 fits one column block, 70 and 129 span two and three (normalization.COLUMNS = 64)
# with a partial last one. D >= 2: a single column (N, 1) is one contiguous run, which NumPy
# may sum pairwise rather than row by row.
@pytest.mark.parametrize("N, D", [(7, 5), (33, 70), (100, 129)])
def test_batchnorm_float64_matches_twin_bit_for_bit(N, D):
    """kernels/jit/normalization.py sums each column over the rows in order, as NumPy's
    axis-0 reductions do, and writes each expression of the twin with its operations in the
    twin's order (the module's docstring: "float64 results equal the twin's"). Each operation
    is a correctly rounded IEEE one, none fused or reassociated, so this holds whatever the
    SIMD width or the thread count. A regrouped
    expression on either side (a * b / (s * s) against a * b / s / s, (2 / n) * xc * dvar
    against 2 * xc * dvar / n) rounds differently and changes bits of dx."""
    rng = np.random.default_rng(N * 1000 + D)
    x = 3 * rng.standard_normal((N, D)) + rng.standard_normal(D)
    gamma, beta = rng.standard_normal((2, D))
    eps = 10e-7
    got = jit.batchnorm_forward(x, gamma, beta, eps)
    want = reference.batchnorm_forward(x, gamma, beta, eps)
    for name, g, w in zip(("out", "mu", "var", "xc", "xn", "std"), got, want):
        assert g.dtype == w.dtype == np.float64, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    dout = rng.standard_normal((N, D))
    xc, xn, std = want[3:6]
    got = jit.batchnorm_backward(dout, xc, xn, std, gamma)
    want = reference.batchnorm_backward(dout, xc, xn, std, gamma)
    for name, g, w in zip(("dx", "dgamma", "dbeta"), got, want):
        assert g.dtype == w.dtype == np.float64, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_conv_bias_gradient_of_float32_is_summed_in_float64():
    """The conv pipeline sums db in float64 (``epilogues._add_row_sums``), as the affine
    layer does (test_affine_bias_gradient_of_float32_is_summed_in_float64). 204,800 positions
    of the float32 1 + 2**-20: a float32 sum drops the 2**-20 of every term once it passes 32,
    however the sum is split across vector lanes (each lane still adds thousands), and ends
    about 2**-20 (~7 float32 eps) low relative; in float64 every partial sum is exact, and db
    is the exact sum rounded once."""
    N, H = 8, 160
    x = np.zeros((N, 1, H, H), np.float32)
    W = np.ones((2, 1, 1, 1), np.float32)
    _, ctx = jit.conv2d_forward(x, W, np.zeros(2, np.float32), 1, 0)
    term = np.float32(1 + 2.0 ** -20)
    dout = np.full((N, 2, H, H), term, np.float32)
    _, _, db = jit.conv2d_backward(dout, x, W, ctx, 1, 0, False)
    assert db.dtype == np.float32
    exact = np.float32(N * H * H * np.float64(term))
    np.testing.assert_allclose(db, exact, rtol=2 * np.finfo(np.float32).eps)


@pytest.mark.skipif(not simd.FULL_WIDTH, reason="the tiles are taken with 512-bit registers")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_blocks_with_a_wide_affine_layer_multiply_by_tiles(monkeypatch, dtype):
    # a product wide and deep enough runs by register tiles (kernels/jit/tiled_product.py)
    # in each part of the batch: it agrees with the twin, and every part takes the tiles
    from fastconv.kernels.jit import fused
    calls, original = [], fused.tiled_product

    def counted(a, b, out):
        calls.append(len(a))
        return original(a, b, out)
    monkeypatch.setattr(fused, "tiled_product", counted)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((7, 1, 12, 12)).astype(dtype)
    blocks = [((rng.standard_normal((9, 1, 3, 3)) / 3).astype(dtype),
               rng.standard_normal(9).astype(dtype) / 10, 1, 1, (2, 2, 2, 0))]
    W2 = (rng.standard_normal((9 * 6 * 6, 100)) / 18).astype(dtype)
    _, product = jit.conv_blocks_forward(x, blocks, W2)
    assert sum(calls) == 7
    assert_close_to_scale(product, reference.conv_blocks_forward(x, blocks, W2)[1], dtype)
