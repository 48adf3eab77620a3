"""The split-rows 2x2 pool by vectors of windows (``epilogues._pool_split_vectors``) and the
vector shuffles and selects it is made of (``simd``): against a NumPy oracle of the book's
ReLU and pool, bit for bit, over random planes full of ties, zeros and signed zeros, in both
dtypes, with and without the window indices; NaN and bad operands."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels.jit import epilogues as ep, simd

SETTINGS = settings(max_examples=60, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


def split_rows(planes):
    """(..., H, W) planes as the pipeline's rows hold them: even rows first, then odd."""
    return np.concatenate((planes[..., 0::2, :], planes[..., 1::2, :]), axis=-2)


def book_pool(planes, b):
    """(pooled, argmax) of the book's Relu then 2x2 stride-2 Pooling of planes + b, planes
    (N, FN, H, W): the first maximum of each window in row order."""
    x = planes + b[None, :, None, None]
    x[x <= 0] = 0
    N, FN, H, W = x.shape
    windows = x.reshape(N, FN, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(N, FN, H // 2, W // 2, 4)
    return windows.max(axis=-1), windows.argmax(axis=-1)


@st.composite
def pooled_planes(draw):
    """(planes (N, FN, H, W), b) of one dtype: values from a few levels, so that windows tie
    and the ReLU cuts many, some of them -0.0; at least a vector of windows a plane."""
    dtype = draw(DTYPES)
    lanes = simd.LANES[np.dtype(dtype)]
    wh = draw(st.integers(1, 9))
    fewest = -(-lanes // wh)  # columns of windows for a vector of them
    ww = draw(st.integers(fewest, max(fewest, 12)))
    N, FN = draw(st.integers(1, 3)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    levels = np.array([-1.5, -0.0, 0.0, 0.25, 0.5, 1.0, 3.0])
    planes = rng.choice(levels, (N, FN, 2 * wh, 2 * ww))
    noise = rng.random(planes.shape) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    planes = np.where(noise, rng.standard_normal(planes.shape), planes).astype(dtype)
    b = rng.choice([-0.5, -0.0, 0.0, 0.25], FN).astype(dtype)
    return planes, b


def run_pool(planes, b, with_argmax, n0=1):
    """(done, out, argmax) of ``_pool_split_planes`` over the planes as images n0.. of
    arrays that start as NaN / -7."""
    N, FN, H, W = planes.shape
    rows = np.ascontiguousarray(split_rows(planes).reshape(N, FN, H * W).transpose(1, 0, 2)
                                .reshape(FN, N * H * W))
    out = np.full((n0 + N + 1, FN, H // 2, W // 2), np.nan, planes.dtype)
    argmax = np.full(out.shape, -7, np.intp) if with_argmax else ep.NO_ARGMAX
    done = ep._pool_split_planes(rows, b, n0, H * W, out, argmax, with_argmax)
    return done, out, argmax


@SETTINGS
@given(pooled_planes(), st.booleans())
def test_vector_pool_gives_the_books_values_and_indices_bit_for_bit(case, with_argmax):
    planes, b = case
    N = planes.shape[0]
    done, out, argmax = run_pool(planes, b, with_argmax)
    want, want_argmax = book_pool(planes, b)
    assert done
    np.testing.assert_array_equal(out[1:1 + N].view(np.uint8), want.view(np.uint8))
    assert np.isnan(out[0]).all() and np.isnan(out[1 + N]).all()
    if with_argmax:
        np.testing.assert_array_equal(argmax[1:1 + N], want_argmax)
        assert (argmax[0] == -7).all() and (argmax[1 + N] == -7).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_argmax", [True, False])
@pytest.mark.parametrize("where", ["first window", "last window", "overlapped window"])
def test_a_nan_anywhere_leaves_the_chunk_to_the_general_pool(dtype, with_argmax, where):
    rng = np.random.default_rng(0)
    planes = rng.standard_normal((2, 3, 8, 10)).astype(dtype)  # 20 windows: vectors overlap
    image, f, y, x = {"first window": (0, 0, 0, 1), "last window": (1, 2, 7, 9),
                      "overlapped window": (1, 1, 3, 6)}[where]
    planes[image, f, y, x] = np.nan
    assert not run_pool(planes, rng.standard_normal(3).astype(dtype), with_argmax)[0]
    planes[image, f, y, x] = 0
    assert run_pool(planes, rng.standard_normal(3).astype(dtype), with_argmax)[0]


@pytest.mark.parametrize("what", ["argmax", "rows", "images", "negative first image"])
def test_operands_that_do_not_fit_are_refused_before_anything_is_written(what):
    planes = np.ones((2, 3, 8, 8), np.float32)
    rows = np.ascontiguousarray(split_rows(planes).reshape(2, 3, 64).transpose(1, 0, 2)
                                .reshape(3, 128))
    out = np.full((2, 3, 4, 4), np.nan, np.float32)
    argmax = np.full(out.shape, -7, np.intp)
    n0 = 0
    if what == "argmax":
        argmax = argmax[:1]
    elif what == "rows":
        rows = rows[:2]
    elif what == "images":
        n0 = 1
    else:
        n0 = -1
    with pytest.raises(ValueError, match="_pool_split_vectors"):
        ep._pool_split_vectors(rows, np.zeros(3, np.float32), n0, 64, out, argmax, True)
    assert np.isnan(out).all() and (argmax == -7).all()


def test_shuffles_and_selects_compiled_mean_what_they_do_as_python():
    """simd.evens/odds/where_*/store_as_int/any_nonzero, compiled and as NumPy, on NaN,
    signed zeros and ties; the Python versions are what NUMBA_DISABLE_JIT runs."""
    @numba.njit
    def compiled(a, b, out, ints):
        lanes = out.size // 7
        x, y = simd.load(a, 0), simd.load(a, lanes)
        z = simd.load(b, 0)
        simd.store(out, 0, simd.evens(x, y))
        simd.store(out, lanes, simd.odds(x, y))
        simd.store(out, 2 * lanes, simd.where_le(x, z, x, z))
        simd.store(out, 3 * lanes, simd.where_ge(x, z, x, z))
        simd.store(out, 4 * lanes, simd.where_ne(x, z, x, z))
        simd.store(out, 5 * lanes, simd.where_ne(x, x, y, z))
        simd.store_as_int(ints, 1, simd.evens(y, y))
        x_minus_x = simd.fma(x, simd.splat(a.dtype.type(-1)), x)  # NaN where x is
        return simd.any_nonzero(z), simd.any_nonzero(simd.where_ne(z, z, z, x_minus_x))

    for dtype in (np.float32, np.float64):
        lanes = simd.LANES[np.dtype(dtype)]
        a = (np.arange(2 * lanes) - 4).astype(dtype)
        a[2], a[5], a[6] = np.nan, -0.0, 0.0
        b = a[::-1][:lanes].copy()
        b[3] = a[3]  # a tie
        want_evens, want_odds = a[0::2], a[1::2]
        x, y = a[:lanes], a[lanes:]
        want = np.concatenate((want_evens, want_odds, np.where(x <= b, x, b),
                               np.where(x >= b, x, b), np.where(x != b, x, b),
                               np.where(x != x, y, b), np.zeros(lanes)))
        for run in (compiled, compiled.py_func):
            out, ints = np.zeros(7 * lanes, dtype), np.zeros(lanes + 2, np.int64)
            flags = run(a, b, out, ints)
            np.testing.assert_array_equal(out.view(np.uint8 if dtype == np.float32 else
                                                   np.uint64), want.astype(dtype).view(
                np.uint8 if dtype == np.float32 else np.uint64))
            np.testing.assert_array_equal(ints[1:lanes + 1], y[[i % lanes for i in
                                                               range(0, 2 * lanes, 2)]]
                                          .astype(np.int64))
            assert ints[0] == 0 and ints[-1] == 0
            assert flags == (True, True)
        zeros = np.zeros(2 * lanes, dtype)
        assert compiled(zeros, zeros[:lanes].copy(), np.zeros(7 * lanes, dtype),
                        np.zeros(lanes + 2, np.int64)) == (False, False)


def test_interleaves_and_int_loads_compiled_mean_what_they_do_as_python():
    """simd.interleave_low/high undo evens/odds, and ints_as_float32(_8) convert an int64
    run, compiled and as NumPy (``winograd4``'s copies between tiles and pooled planes)."""
    @numba.njit
    def interleaved(a, out):
        lanes = a.size // 2
        x, y = simd.load(a, 0), simd.load(a, lanes)
        evens, odds = simd.evens(x, y), simd.odds(x, y)
        simd.store(out, 0, simd.interleave_low(evens, odds))
        simd.store(out, lanes, simd.interleave_high(evens, odds))

    @numba.njit
    def converted(ints, out):
        simd.store(out, 0, simd.ints_as_float32(ints, 1))
        simd.store8(out, 16, simd.ints_as_float32_8(ints, 2))

    ints = np.arange(-3, 20, dtype=np.int64)
    for dtype in (np.float32, np.float64):
        lanes = simd.LANES[np.dtype(dtype)]
        a = (np.arange(2 * lanes) * 1.5 - 7).astype(dtype)
        for run in (interleaved, interleaved.py_func):
            out = np.zeros(2 * lanes, dtype)
            run(a, out)
            np.testing.assert_array_equal(out, a)
    for run in (converted, converted.py_func):
        out = np.zeros(32, np.float32)
        run(ints, out)
        np.testing.assert_array_equal(out[:16], ints[1:17])
        np.testing.assert_array_equal(out[16:24], ints[2:10])
        assert (out[24:] == 0).all()
