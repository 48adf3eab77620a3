"""``exp`` for compiled loops: float32 by a polynomial that vectorizes, float64 as before.

Numba's ``np.exp`` calls the C library's ``expf`` one element at a time: a softmax over a
TwoLayerNet batch (100 rows of 10) spent most of its 5 us there. ``exp32`` is branch-free
arithmetic that LLVM turns into 16-wide AVX-512 (8-wide AVX2) code:

    exp(x) = 2**n * exp(r),  n = round(x / ln 2),  r = x - n ln 2 in [-ln2/2, ln2/2]

with ``n ln 2`` taken off in two parts (the first exact in float32), ``exp(r)`` by its Taylor
series to the 7th power (the truncation error, r**8/8! < 6e-9, is a tenth of float32's unit
in the last place) and ``2**n`` built from its exponent bits in two halves, so results that
fall below the normal range come out as the same subnormals a correctly rounded exp would
round to, within the polynomial's error. The error against the exact value is under 2 units
in the last place (``tests/test_float32_exp.py``); +-inf, NaN, overflow and underflow give
what ``np.exp`` gives.

float64 keeps the exp it had, Numba's ``np.exp`` (the C library's), so parity mode's numbers
do not change. (That exp and NumPy's own differ in the last bit for about 5% of values, so
parity holds to rounding; float64 batches of up to 8 samples, the gradient checks, run on
the NumPy twins for the book's bits: ``BOOK_BATCH`` in ``fastconv/nets/base.py``.)
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp", "exp32"]

_LOG2E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693359375)  # 355/512: n * _LN2_HIGH is exact for |n| < 2**15
_LN2_LOW = np.float32(-2.1219444005469057e-4)  # ln 2 - 355/512
# beyond these exp(x) is inf or rounds to 0 in float32; clamping first keeps n in int32
# range and the scale factors finite
_OVERFLOW = np.float32(88.72284)
_UNDERFLOW = np.float32(-103.97208)
_TAYLOR = tuple(np.float32(1.0 / f) for f in (5040, 720, 120, 24, 6, 2, 1, 1))


@intrinsic
def _float32_with_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a bit cast, not a conversion)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(cache=True, inline="always")
def _power_of_two(n):
    """2.0**n as float32 for an int32 n in [-126, 127]."""
    return _float32_with_bits(np.int32((n + np.int32(127)) << np.int32(23)))


@njit(cache=True, inline="always")
def exp32(x):
    """exp(x) for a float32 x, to within 2 units in the last place."""
    clamped = min(max(x, _UNDERFLOW), _OVERFLOW)
    n_float = np.floor(clamped * _LOG2E + np.float32(0.5))
    r = (clamped - n_float * _LN2_HIGH) - n_float * _LN2_LOW
    p = _TAYLOR[0]
    for c in _TAYLOR[1:]:
        p = p * r + c
    n = np.int32(n_float)
    half = n >> np.int32(1)  # 2**n in two factors keeps each in the normal range
    result = (p * _power_of_two(half)) * _power_of_two(n - half)
    if x > _OVERFLOW:
        result = np.float32(np.inf)
    if x < _UNDERFLOW:
        result = np.float32(0)
    if x != x:  # (its n above was a NaN converted to an integer: undefined, so replaced)
        result = x
    return result


def exp(x):
    """Numba's np.exp(x) for a float64 scalar, ``exp32`` for a float32 one (in compiled code)."""
    return np.exp(x)


@overload(exp, inline="always")
def _exp_by_type(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: np.exp(x)
