"""Argument checks shared by the layers, networks and util: they raise before any state
changes."""
import functools
import inspect
import numbers

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
    a = _native(a)
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


def check_real(name, value):
    """value, unless it is not a real number (None, text): a network scales its weights or
    its loss by it."""
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    return value


def check_shape(name, a, expected):
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}; got {a.shape}")


def common_dtype(*arrays):
    """The dtype NumPy would compute in, in the machine's byte order; all-float32 inputs stay
    float32."""
    return np.result_type(*arrays).newbyteorder("=")


def check_window(what, H, W, win_h, win_w, stride, pad, input_name="x"):
    """The window must fit the padded input (named input_name) at least once."""
    if H + 2 * pad < win_h or W + 2 * pad < win_w:
        raise ValueError(
            f"the {what} of {win_h}x{win_w} does not fit {input_name}'s images of {H}x{W} with "
            f"pad={pad}: need H + 2*pad >= {win_h} and W + 2*pad >= {win_w}")


def as_real_array(name, a, ndim=None):
    """``a`` (an array or a number) as an ndarray of integers or floats, as the book's layers
    take them (``Convolution(w, 0)``); bool, complex and object arrays raise a TypeError."""
    try:
        array = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real numeric array; got {type(a).__name__}") from exc
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array (integer or float); "
                        f"got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {array.shape}")
    return _native(array)


def _native(array):
    """array in the machine's byte order: the compiled kernels take no other (data read from
    a big-endian file, ``np.dtype('>f8')``, computes as NumPy computes it)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def as_image_batch(name, a):
    """An (N, C, H, W) input of a layer built on the book's im2col. That im2col copies any
    real input into a float64 matrix, so the book takes integer and float16 images
    (``half_float_network``'s ``x.astype(np.float16)``): those become float64 here too.
    float32 stays float32, fastconv's float32 path."""
    array = as_real_array(name, a, ndim=4)
    return array if array.dtype.type in FLOAT_DTYPES else array.astype(np.float64)


def compute_dtype(*operands):
    """The dtype NumPy computes ``operands`` in, which must be float32 or float64.

    Python numbers count as NumPy counts them (weakly): a float32 input with a Python-int
    bias stays float32, while an int64 array weight makes the result float64.
    """
    dtype = np.result_type(*(o if type(o) in (int, float) else np.asarray(o) for o in operands))
    if dtype.type not in FLOAT_DTYPES:
        raise TypeError(f"the layer would compute in {dtype}; its inputs must combine to "
                        f"float32 or float64")
    return dtype.newbyteorder("=")


def bias_vector(name, b, size, dtype):
    """A bias given as a number or of shape (1,) or (size,), as a (size,) array of ``dtype``."""
    array = as_real_array(name, b)
    if array.shape not in ((), (1,), (size,)):
        raise ValueError(f"{name} must be a number or have shape ({size},); got shape "
                         f"{array.shape}")
    if array.shape == (size,):
        return array.astype(dtype, copy=False)  # the usual case: no copy
    return np.full(size, array.reshape(()), dtype=dtype)


def network_input(x, dtype):
    """A network's input as an array of its dtype: bool, integer and float values are cast as
    the book's arithmetic casts them; complex values (NumPy would drop the imaginary part with
    only a warning) and text (NumPy would parse it) raise."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x must be a real numeric array; got dtype {x.dtype}")
    return x if x.dtype == dtype else x.astype(dtype)


def check_batch(name, a):
    """A batch must hold at least one sample: the mean over an empty batch is undefined."""
    if a.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample; got shape {a.shape}")


def check_ran_forward(layer, ready):
    if not ready:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")


def check_saved(layer, name, shape, dtype):
    """A backward pass reads arrays its forward pass left on the layer. They are public
    attributes, which a script may replace, and the kernels index them by the forward's
    shapes: anything else than the array forward left is refused."""
    value = getattr(layer, name)
    if (not isinstance(value, np.ndarray) or value.shape != tuple(shape)
            or value.dtype != dtype):
        got = (f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray)
               else type(value).__name__)
        raise ValueError(f"{type(layer).__name__}.{name} must be the {np.dtype(dtype)} array "
                         f"of shape {tuple(shape)} that forward left; got {got}; run forward "
                         f"again")
    return value


def check_unchanged(layer, recorded, current):
    """The attributes (name -> value) a backward pass relies on must be those of the forward."""
    for name, value in current.items():
        # the type too: a stride of 2.0 equals 2 but is no integer for a kernel
        if type(value) is not type(recorded[name]) or value != recorded[name]:
            raise ValueError(f"{type(layer).__name__}.{name} changed between forward and "
                             f"backward (from {recorded[name]!r} to {value!r}); run forward "
                             f"again")


def check_fraction(name, value):
    """A real number in [0, 1] (a ratio such as Dropout's)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number in [0, 1]; got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1]; got {value!r}")
    return value


def _described(value):
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _named(name, value):
    if isinstance(value, numbers.Real):
        return f"{name}={value!r}"
    return f"{name} ({_described(value)})"


_EXPLAINED = (IndexError, ZeroDivisionError, AttributeError, TypeError, ValueError)
_AxisError = getattr(np, "exceptions", np).AxisError  # (np.exceptions from NumPy 1.25)


def names_bad_arguments(function):
    """``function`` (one of the book's plain NumPy functions) unchanged where it succeeds; where
    NumPy or Python fails inside it, the same failure raised again naming the argument and what
    it must be, instead of an internal word ("not subscriptable", "ufunc 'maximum'"). A call
    that succeeds runs the book's lines as they are: the check costs nothing until then."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _EXPLAINED as exc:
            if getattr(exc, "names_arguments", False):
                raise  # from a wrapped function this one called, which named them already
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:
                raise exc from None  # a wrong call, whose own message says so
            bound.apply_defaults()
            bound = bound.arguments
            for name, value in bound.items():
                if not isinstance(value, (np.ndarray, numbers.Real)):
                    message = "must be a real number or a NumPy array of them"
                elif isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
                    message = "must hold real numbers"
                else:
                    continue
                named = TypeError(f"{function.__name__}: {name} {message}; got "
                                  f"{_described(value)}")
                named.names_arguments = True
                raise named from exc
            arguments = ", ".join(_named(name, value) for name, value in bound.items())
            # the builtin class: NumPy's subclasses take other constructor arguments, but for
            # AxisError, both an IndexError and a ValueError, which takes a message alone
            builtin = (_AxisError if isinstance(exc, _AxisError)
                       else next(c for c in _EXPLAINED if isinstance(exc, c)))
            named = builtin(f"{function.__name__}: its arguments do not fit ({arguments}): {exc}")
            named.names_arguments = True
            raise named from exc
    return wrapper
