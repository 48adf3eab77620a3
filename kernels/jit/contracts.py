"""What a public jit kernel checks before its compiled loops touch memory.

The loops index without bounds checks: arrays that do not fit together, a negative pad or a
label past the last class would make them read or write outside their arrays, and crash the
process or return garbage. The layers check their operands before they call a kernel
(``tests/test_kernel_boundaries.py``), but the kernels are public (``fastconv.kernels``), so
each checks again here what its loops rely on: the number of axes, how the shapes fit, the
window numbers, the labels' range. It takes a few microseconds a call, against 4 ms for a
SimpleConvNet step. An error names the kernel, the argument and what it must be.

What is not checked is what cannot go outside an array: values (NaN, inf), and shapes that
NumPy or ``gemm`` check themselves.
"""
import numbers
import operator

import numpy as np
from numba import njit

from ..shapes import conv_output_hw

__all__ = ["float_array", "windows", "image_shape", "nonempty", "conv_geometry", "shaped", "bias",
           "labels", "real_number", "same_dtype", "FILTER_NAMES", "POOL_NAMES",
           "FUSED_POOL_NAMES"]


def float_array(kernel, name, a, ndim=None):
    """a as an ndarray of float32 or float64 with ndim axes (any, if None), else raises."""
    if not isinstance(a, np.ndarray) or a.dtype.char not in "fd" or not a.dtype.isnative:
        found = a.dtype.str if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{kernel}: {name} must be a float32 or float64 array in the "
                        f"machine's byte order; got {found}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{kernel}: {name} must have {ndim} axes; got shape {a.shape}")
    return a


def real_number(kernel, name, value):
    """value, which must be a real number (a Python or NumPy int or float): None would become
    NaN in the dtype's cast, and text a parse."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kernel}: {name} must be a real number; got {value!r}")
    return value


def same_dtype(kernel, first, a, **others):
    """Raises unless every array of others has the dtype of a (named first): the loops compute
    in one dtype, and a float64 operand cast to float32 would lose what the twin keeps."""
    for name, other in others.items():
        if other.dtype != a.dtype:
            raise TypeError(f"{kernel}: {name} must have {first}'s dtype {a.dtype}; got "
                            f"{other.dtype}")


# No side, window, stride or pad of an image in memory comes near it; the compiled loops take
# them as int64, and products of two of them must not wrap
MAX_COUNT = (1 << 31) - 1


def _count(kernel, name, value, least):
    if type(value) is int and least <= value <= MAX_COUNT:  # the usual call, at a tenth of
        return value                                       # the cost
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{kernel}: {name} must be an integer; got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{kernel}: {name} must be an integer; got {value!r}") from None
    if value < least:
        raise ValueError(f"{kernel}: {name} must be at least {least}; got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"{kernel}: {name} must be at most {MAX_COUNT}; got {value}")
    return int(value)


FILTER_NAMES = ("filter_h", "filter_w", "stride", "pad")
POOL_NAMES = ("pool_h", "pool_w", "stride", "pad")  # the max-pool kernels'
FUSED_POOL_NAMES = ("pool_h", "pool_w", "pool_stride", "pool_pad")  # a fused block's pool


def windows(kernel, H, W, window_h, window_w, stride, pad, names=FILTER_NAMES):
    """(out_h, out_w) of window_h x window_w windows stepping by stride over an H x W input
    padded by pad; raises unless there is at least one. names: what the errors call the
    four numbers."""
    window_h = _count(kernel, names[0], window_h, 1)
    window_w = _count(kernel, names[1], window_w, 1)
    stride = _count(kernel, names[2], stride, 1)
    pad = _count(kernel, names[3], pad, 0)
    out_h, out_w = conv_output_hw(H, W, window_h, window_w, stride, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{kernel}: a {window_h}x{window_w} window does not fit the {H}x{W} "
                         f"input padded by {pad}")
    return out_h, out_w


def image_shape(kernel, name, shape, least_images=1):
    """shape as the ints (N, C, H, W) of a batch of images: C, H and W at least 1, N at least
    least_images (0 where the twin returns an empty result for an empty batch)."""
    try:
        counts = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"{kernel}: {name} must be a tuple of four integers (N, C, H, W); "
                        f"got {shape!r}") from None
    if (len(counts) != 4 or counts[0] < least_images or any(n < 1 for n in counts[1:])
            or any(n > MAX_COUNT for n in counts)):
        raise ValueError(f"{kernel}: {name} must be (N, C, H, W) with N at least "
                         f"{least_images} and C, H and W at least 1; got {counts}")
    return counts


def nonempty(kernel, name, a, what):
    """a, which must hold at least one image or row: the book's code fails on an empty batch
    in NumPy's words (a reshape, a division by zero), and a mean over no rows is undefined."""
    if a.shape[0] == 0:
        raise ValueError(f"{kernel}: {name} must hold at least one {what}; got shape "
                         f"{a.shape}")
    return a


def conv_geometry(kernel, x, W, stride, pad):
    """(conv_h, conv_w), the output size of x (N, C, H, W) under filters W (FN, C, FH, FW)."""
    nonempty(kernel, "x", float_array(kernel, "x", x, 4), "image")
    float_array(kernel, "W", W, 4)
    same_dtype(kernel, "x", x, W=W)
    if x.shape[1] < 1:
        raise ValueError(f"{kernel}: x must have at least one channel; got shape {x.shape}")
    if W.shape[1] != x.shape[1]:
        raise ValueError(f"{kernel}: W must have x's {x.shape[1]} channels on its axis 1 "
                         f"(FN, C, FH, FW); got W of shape {W.shape}")
    if W.shape[0] < 1:
        raise ValueError(f"{kernel}: W must hold at least one filter; got shape {W.shape}")
    return windows(kernel, x.shape[2], x.shape[3], W.shape[2], W.shape[3], stride, pad,
                   ("W.shape[2]", "W.shape[3]", "stride", "pad"))


def shaped(kernel, name, a, shape, why=""):
    """a, which must be an ndarray of exactly this shape."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{kernel}: {name} must be an array of shape {shape}; got "
                        f"{type(a).__name__}")
    if a.shape != tuple(shape):
        raise ValueError(f"{kernel}: {name} must have shape {tuple(shape)}{why}; got "
                         f"{a.shape}")
    return a


def bias(kernel, b, count, what="filter of W"):
    """b, which must be a float array of one value for each of count outputs."""
    float_array(kernel, "b", b)
    return shaped(kernel, "b", b, (count,), f" (one value for each {what})")


@njit(nogil=True, cache=True)
def _first_label_outside(t, K):
    for i in range(t.size):
        if t[i] < 0 or t[i] >= K:
            return i
    return -1


def labels(kernel, t, N, K):
    """t as C-contiguous intp labels: one integer in [0, K) for each of N rows."""
    t = np.asarray(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{kernel}: t must hold integer labels; got dtype {t.dtype}")
    if t.shape != (N,):
        raise ValueError(f"{kernel}: t must hold one label for each of the {N} rows, shape "
                         f"({N},); got shape {t.shape}")
    if t.dtype.kind == "u" and N and t.max() > np.iinfo(np.intp).max:  # (would wrap)
        raise ValueError(f"{kernel}: t labels must lie in [0, {K}); got {t.max()}")
    as_intp = np.ascontiguousarray(t, dtype=np.intp)
    outside = _first_label_outside(as_intp, K)  # compiled: NumPy's min and max took 3 us
    if outside >= 0:
        raise ValueError(f"{kernel}: t labels must lie in [0, {K}); got {t[outside]} at "
                         f"row {outside}")
    return as_intp
