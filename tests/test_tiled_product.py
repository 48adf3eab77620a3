"""kernels/jit/tiled_product.py: the register-tiled product of a part's rows by an affine
layer's weights, against NumPy's product (its twin) in float64."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.kernels.jit.simd import FULL_WIDTH, LANES
from fastconv.kernels.jit.tiled_product import (MIN_INNER, TILE_VECTORS, tiled_product,
                                                tiles_pay)

DTYPES = [np.float32, np.float64]


def _operands(rng, m, k, n, dtype):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    return a, b


def _assert_product(a, b, out):
    """out is a @ b to within the rounding of k FMAs on the terms' scale: each entry's
    error against float64 is at most a few k units of the last place of sum |a_i b_i|."""
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    eps = np.finfo(out.dtype).eps
    bound = 2 * max(a.shape[1], 1) * eps * scale
    assert np.all(np.abs(out - exact) <= bound), np.max(np.abs(out - exact) - bound)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(DTYPES), m=st.integers(1, 20), k=st.integers(0, 200),
       extra_columns=st.integers(0, 130), layout=st.sampled_from(["C", "F", "strided"]),
       seed=st.integers(0, 2**31 - 1))
def test_matches_numpy_over_shapes_and_layouts(dtype, m, k, extra_columns, layout, seed):
    """Rows not a multiple of the tile's 3, columns from one vector to past two panels of 7
    vectors (every overlap of a panel's last vectors and of the last panel), k across and
    between blocks, a in any layout; every entry of out is written."""
    n = LANES[np.dtype(dtype)] + extra_columns
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, m, k, n, dtype)
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        wide = np.zeros((m, 2 * k + 1), dtype)
        wide[:, ::2][:, :k] = a
        a = wide[:, ::2][:, :k]
    out = np.full((m, n), np.nan, dtype)
    tiled_product(a, b, out)
    _assert_product(a, b, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_bits_depend_on_the_shapes_only(dtype):
    """A part's rows get the bits they get in the whole product, whatever a's layout: what
    makes a batch cut into parts give the same result on any number of threads."""
    rng = np.random.default_rng(3)
    a, b = _operands(rng, 50, 700, 100, dtype)
    whole = np.empty((50, 100), dtype)
    tiled_product(a, b, whole)
    for lo, hi in ((0, 25), (25, 50), (7, 8), (48, 50)):
        part = np.empty((hi - lo, 100), dtype)
        tiled_product(np.asfortranarray(a[lo:hi]), b, part)
        assert part.tobytes() == whole[lo:hi].tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_non_finite_value_reaches_the_entries_it_feeds(dtype):
    rng = np.random.default_rng(4)
    a, b = _operands(rng, 7, 300, 40, dtype)
    a[5, 123] = np.nan
    b[200, 3] = np.inf
    out = np.empty((7, 40), dtype)
    tiled_product(a, b, out)
    expected = a @ b
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    assert np.isnan(out[5]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_empty_inner_dimension_gives_zeros(dtype):
    n = LANES[np.dtype(dtype)] + 3
    out = np.full((4, n), np.nan, dtype)
    tiled_product(np.empty((4, 0), dtype), np.empty((0, n), dtype), out)
    assert not out.any()
    tiled_product(np.empty((0, 5), dtype), np.ones((5, n), dtype), np.empty((0, n), dtype))


def _refused(error, match, a, b, out):
    before = out.copy()
    with pytest.raises(error, match=match):
        tiled_product(a, b, out)
    np.testing.assert_array_equal(out, before)


def test_operands_that_do_not_fit_are_refused_before_anything_is_written():
    f32, f64 = np.float32, np.float64
    a, b = np.ones((4, 30), f32), np.ones((30, 20), f32)
    out = np.full((4, 20), 7, f32)
    _refused(ValueError, r"a \(m, k\), b \(k, n\) and out \(m, n\)", a[:, :29], b, out)
    _refused(ValueError, r"a \(m, k\), b \(k, n\) and out \(m, n\)", a, b, out[:3])
    _refused(ValueError, r"got a \(4, 30\), b \(30, 18\), out \(4, 19\)", a,
             b[:, :18].copy(), np.full((4, 19), 7, f32))
    _refused(ValueError, r"at least one vector of columns \(16 in float32\); got 15", a, b[:, :15].copy(),
             np.full((4, 15), 7, f32))
    _refused(TypeError, "one dtype; got float32, float64, float32", a, b.astype(f64), out)
    _refused(TypeError, "out must be a 2-D float32 or float64 array; got int64",
             a, b, np.zeros((4, 20), np.int64))
    _refused(TypeError, "a must be a 2-D float32 or float64 array", a.ravel(), b, out)
    _refused(ValueError, "b and out must be C-contiguous", a, np.asfortranarray(b), out)
    wide = np.full((4, 40), 7, f32)
    _refused(ValueError, "b and out must be C-contiguous", a, b, wide[:, ::2])
    square = np.full((32, 32), 7, f32)
    _refused(ValueError, "out must not overlap a or b", square, np.ones((32, 32), f32), square)
    _refused(ValueError, "out must not overlap a or b", np.ones((32, 32), f32), square, square)


@pytest.mark.skipif(not FULL_WIDTH, reason="the tiles are taken with 512-bit registers only")
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiles_are_taken_where_they_beat_blas(dtype):
    lanes = LANES[np.dtype(dtype)]
    width = TILE_VECTORS * lanes
    assert tiles_pay(100, 4320, dtype)  # SimpleConvNet's affine layer
    assert not tiles_pay(100, MIN_INNER - 1, dtype)
    assert not tiles_pay(lanes - 1, 4320, dtype)
    assert not tiles_pay(width // 2, 4320, dtype)  # half a panel of useful columns
    assert tiles_pay(width, 4320, dtype)
    assert not tiles_pay(100, 4320, np.int32)


def test_no_tiles_without_512_bit_registers(monkeypatch):
    from fastconv.kernels.jit import tiled_product as module
    monkeypatch.setattr(module, "FULL_WIDTH", False)
    assert not module.tiles_pay(100, 4320, np.float32)
