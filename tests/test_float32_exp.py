"""The vectorizing float32 exp of the compiled softmax, against the exact value."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from fastconv.kernels.jit.float32_exp import exp

MAX_ULPS = 2.0


@njit  # not cached: Numba would not see a change in the exp it inlines
def _exp_each(values, out):
    for i in range(values.size):
        out[i] = exp(values[i])


@njit
def _numba_np_exp_each(values, out):
    for i in range(values.size):
        out[i] = np.exp(values[i])


def _exp(values):
    out = np.empty_like(values)
    _exp_each(values, out)
    return out


def _ulps_off(values):
    """How far exp(values) is from the exact value, in float32 units in the last place of
    the correctly rounded result, where that result is finite and not 0."""
    exact = np.exp(values.astype(np.float64))
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (rounded != 0)
    ulp = np.spacing(rounded[normal]).astype(np.float64)
    return np.abs(_exp(values)[normal] - exact[normal]) / ulp


def test_every_float32_step_of_the_range_is_within_two_ulps():
    # 4 million values from below underflow to above overflow, subnormal results included
    values = np.linspace(-105, 90, 4_000_001, dtype=np.float32)
    assert _ulps_off(values).max() <= MAX_ULPS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-104, 89, width=32), min_size=1, max_size=64))
def test_random_values_are_within_two_ulps(values):
    assert _ulps_off(np.array(values, dtype=np.float32)).max(initial=0.0) <= MAX_ULPS


def test_special_values_are_numpys():
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.7229, 1000.0,
                       -103.98, -150.0, -1000.0, 1e-30, -1e-30], dtype=np.float32)
    with np.errstate(over="ignore"):
        expected = np.exp(values.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(_exp(values), expected)


def test_results_below_the_normal_range_are_subnormal_not_zero():
    values = np.array([-88.0, -95.0, -100.0, -103.0], dtype=np.float32)
    got = _exp(values)
    assert np.all((got > 0) & (got < np.finfo(np.float32).tiny))
    assert _ulps_off(values).max() <= MAX_ULPS


def test_float64_keeps_the_exp_numba_compiles_bit_for_bit():
    # the C library's exp, as the kernels had it before (NumPy's own may differ in the last
    # bit): parity mode is not changed
    values = np.random.default_rng(0).uniform(-700, 700, 10_000)
    expected = np.empty_like(values)
    _numba_np_exp_each(values, expected)
    np.testing.assert_array_equal(_exp(values), expected)
