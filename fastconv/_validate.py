"""Argument checks shared by the layers and util: they raise before any state changes."""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(name, a, ndim=None):
    """``a`` as an ndarray of float32 or float64, else TypeError/ValueError naming ``name``."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a float32 or float64 array; "
                            f"got {type(a).__name__}") from exc
    if a.dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; got {a.dtype}")
    if ndim is not None and a.ndim not in (ndims := ndim if isinstance(ndim, tuple) else (ndim,)):
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {expected}; got shape {a.shape}")
    return a


def check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_shape(name, a, expected):
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}; got {a.shape}")


def common_dtype(*arrays):
    """The dtype NumPy would compute in; all-float32 inputs stay float32."""
    return np.result_type(*arrays)


def check_window(what, H, W, win_h, win_w, stride, pad):
    """The window must fit the padded input at least once."""
    if H + 2 * pad < win_h or W + 2 * pad < win_w:
        raise ValueError(
            f"{what} of {win_h}x{win_w} does not fit the input of {H}x{W} with pad={pad}: "
            f"need H + 2*pad >= {win_h} and W + 2*pad >= {win_w}")
