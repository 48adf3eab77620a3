"""Drop-in for the book's ``common/util.py``; im2col and col2im run on the current backend."""
import numpy as np

from fastconv.backend import kernels
from fastconv._validate import (FLOAT_DTYPES, as_image_batch, as_real_array, check_batch,
                                check_int, check_window, names_bad_arguments)
from fastconv.kernels.shapes import conv_output_hw

# np too: the book's module has no __all__, so its star import brings np
__all__ = ["np", "smooth_curve", "shuffle_dataset", "conv_output_size", "im2col", "col2im"]


@names_bad_arguments
def smooth_curve(x):
    """Kaiser-window moving average, for plotting noisy loss curves."""
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


@names_bad_arguments
def shuffle_dataset(x, t):
    """x and t reordered by one random permutation (np.random, like the book)."""
    if np.ndim(t) and np.ndim(x) and len(t) != len(x):
        # checked before the draw: the book draws, then fails (t shorter) or drops labels
        raise ValueError(f"t must hold one label (or row) for each of x's {len(x)} samples; "
                         f"got {len(t)}")
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


@names_bad_arguments
def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """The book's formula, true division included (a non-integer means the filter does not tile)."""
    return (input_size + 2 * pad - filter_size) / stride + 1


def _check_geometry(shape, filter_h, filter_w, stride, pad, input_name):
    filter_h = check_int("filter_h", filter_h, 1)
    filter_w = check_int("filter_w", filter_w, 1)
    stride = check_int("stride", stride, 1)
    pad = check_int("pad", pad, 0)
    check_window("filter", shape[2], shape[3], filter_h, filter_w, stride, pad, input_name)
    return filter_h, filter_w, stride, pad


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """(N, C, H, W) -> (N*out_h*out_w, C*filter_h*filter_w), rows (n, oy, ox), columns (c, ky, kx).

    Unlike the book, the result keeps a float input's dtype (float32 stays float32); integer
    and float16 images give float64, as the book's matrix of zeros makes them.
    """
    x = as_image_batch("input_data", input_data)
    check_batch("input_data", x)  # as col2im's input_shape; the book's reshape fails on it
    geometry = _check_geometry(x.shape, filter_h, filter_w, stride, pad, "input_data")
    return kernels().im2col(x, *geometry)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Adjoint of im2col: sums each column entry back into the pixel it was read from.

    col may have any shape of the right size, as the book reshapes it; integer and float16
    values give float64, as the book's image of zeros makes them."""
    col = as_real_array("col", col)
    if col.dtype.type not in FLOAT_DTYPES:
        col = col.astype(np.float64)
    if not isinstance(input_shape, (tuple, list, np.ndarray)) or len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W); got {input_shape!r}")
    N, C, H, W = (check_int(f"input_shape[{i}]", d, 1) for i, d in enumerate(input_shape))
    filter_h, filter_w, stride, pad = _check_geometry((N, C, H, W), filter_h, filter_w, stride, pad,
                                                     "input_shape")
    out_h, out_w = conv_output_hw(H, W, filter_h, filter_w, stride, pad)
    expected = (N * out_h * out_w, C * filter_h * filter_w)
    if col.size != expected[0] * expected[1]:
        raise ValueError(f"col must have shape {expected} (or {expected[0] * expected[1]} "
                         f"values in another shape) for input_shape {tuple(input_shape)}; got "
                         f"{col.shape}")
    col = col.reshape(expected)
    return kernels().col2im(col, (N, C, H, W), filter_h, filter_w, stride, pad)
