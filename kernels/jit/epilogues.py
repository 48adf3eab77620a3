"""What the conv pipeline does to each chunk's GEMM output, and before its backward GEMMs.

Forward, an epilogue reads a chunk's output ``rows (FN, images*out_h*out_w)`` while it is in
cache and writes the layer's NCHW output: bias, then optionally ReLU, then optionally max
pooling (``OUTPUT_*``). Backward, a prologue fills a chunk's ``rows`` with the output gradient
(``GRADIENT_*``). The fused backward passes need no saved mask: ReLU passed a gradient
exactly where its output is not 0, and after pooling that output at a maximum is the pooled
value itself, so only the pooled maxima are visited.

``forward_epilogue`` and ``backward_prologue`` pick one by a kind number, so that one
compiled pipeline serves every layer. Their array arguments are always 4-D NCHW and
C-contiguous. Where a 2x2 stride-2 pool tiles the conv output, an im2col chunk's rows hold
each image's even output rows first, then its odd ones (``im2col._row_slot``): the pool and
its gradient then run along all of a plane's windows at once.
"""
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .im2col import _row_slot
from .simd import (VECTOR_BYTES, any_nonzero, evens, fma, load, odds, splat, store,
                   store_as_int, where_ge, where_le, where_ne)
from .pool import _bias_relu, _pool_2x2_relu_values, _pool_plane, _relu_pool_window
from .winograd import _any_not_finite

OUTPUT_BIAS, OUTPUT_RELU, OUTPUT_RELU_POOL, OUTPUT_RELU_POOL_VALUES = range(4)
GRADIENT, GRADIENT_RELU, GRADIENT_RELU_POOL = range(3)
NO_POOL = (1, 1, 1, 0)  # (pool_h, pool_w, pool_stride, pool_pad) where nothing is pooled
NO_ARGMAX = np.empty((0, 1, 1, 1), dtype=np.intp)  # argmax where none is kept or read


# The GEMM-layout <-> NCHW passes below index through per-plane slices: with the flat
# index arithmetic written out, Numba's negative-index handling kept LLVM from vectorizing
# them, and they ran 3-4x slower.
@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _bias_to_nchw(rows, b, n0, out, with_relu):
    """out[n0 + i, f] = rows of image i + b[f], through the book's ReLU when with_relu."""
    _, FN, P = out.shape
    zero = out.dtype.type(0)
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            src = rows[f, i * P:(i + 1) * P]
            dst = out[n0 + i, f]
            bias = b[f]
            for p in range(P):
                dst[p] = _bias_relu(src[p], bias, zero) if with_relu else src[p] + bias


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _nchw_to_rows(dout, n0, rows):
    _, FN, P = dout.shape
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            src = dout[n0 + i, f]
            dst = rows[f, i * P:(i + 1) * P]
            for p in range(P):
                dst[p] = src[p]


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _add_row_sums(rows, acc):
    """acc[f] += sum(rows[f]) in float64. Reassociation lets the sum vectorize; a sum carried
    in one register cost ~4 ns per element, more than the GEMMs around it. The order still
    depends only on the shape, so results do not change with the thread count."""
    for f in range(rows.shape[0]):
        row = rows[f]
        total = 0.0
        for j in range(row.shape[0]):
            total += row[j]
        acc[f] += total


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pool_split_plane(flat, out, argmax, bias, with_argmax):
    """out (and argmax when with_argmax) = the book's 2x2 stride-2 pool of relu(plane + bias)
    for a plane whose rows are split (``im2col._row_slot``), out and argmax holding its
    windows in row order. One pass along all windows: window q reads cells 2q and 2q+1 of
    each half. Returns False, with out and argmax unfinished, when the plane holds a NaN.

    Without the window index the value is relu(max + bias), since relu(v + bias) never
    decreases as v grows: 4 maxima and one bias a window instead of a select chain."""
    zero = out.dtype.type(0)
    half = flat.shape[0] // 2
    top, bottom = flat[:half], flat[half:]
    found_nan = False
    if with_argmax:
        for q in range(out.shape[0]):
            best, index, has_nan = _relu_pool_window(top[2 * q], top[2 * q + 1], bottom[2 * q],
                                                     bottom[2 * q + 1], bias, zero)
            found_nan |= has_nan
            out[q], argmax[q] = best, index
    else:
        for q in range(out.shape[0]):
            a, c = top[2 * q], top[2 * q + 1]
            d, e = bottom[2 * q], bottom[2 * q + 1]
            found_nan |= (a != a) | (c != c) | (d != d) | (e != e)
            out[q] = _bias_relu(max(max(a, c), max(d, e)), bias, zero)
    return not found_nan


@njit(nogil=True, cache=True, inline="always")
def _relu_vector(v, bias, one, zero):
    """``pool._bias_relu`` of each lane: v + bias (one rounding), 0 where that is <= 0,
    NaN passing."""
    v = fma(v, one, bias)
    return where_le(v, zero, zero, v)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pool_split_vectors(rows, b, n0, P, out, argmax, with_argmax):
    """``_pool_split_planes`` by vectors of windows, for planes of at least one vector of
    them: each vector reads two of each half and takes their even and odd places (the left
    and right cells); a plane's last vector ends at its last window, over some of the one
    before. The lanes compute what ``pool._relu_pool_window`` computes, select by select,
    so out and argmax get the same values. The planes are read and written through flat
    views and offsets: with a slice of each array a plane, as the loop one window at a time
    has them, the loops with their bodies cut out still took 55 ns a plane, as long as
    pooling it by vectors. 50 images of SimpleConvNet's layer, one thread, Xeon, against one
    window at a time: with argmax 100 against 190 us (float32), 164 against 244 (float64);
    without, 60 against 73 and 104 against 127."""
    lanes = VECTOR_BYTES // out.itemsize
    FN, windows = out.shape[1], out.shape[2] * out.shape[3]
    images = rows.shape[1] // max(P, 1)
    # the loads and stores below are unchecked: every index lies in the planes' arrays
    if not (P == 4 * windows and windows >= lanes and rows.shape[1] == images * P
            and rows.shape[0] == FN and 0 <= n0 and n0 + images <= out.shape[0]
            and b.shape[0] == FN and (not with_argmax or argmax.shape == out.shape)):
        raise ValueError("_pool_split_vectors: the arrays do not fit the planes")
    flat_rows, flat_out = rows.reshape(-1), out.reshape(-1)
    flat_argmax = argmax.reshape(-1)
    dtype = out.dtype.type
    zero, one, two = splat(dtype(0)), splat(dtype(1)), splat(dtype(2))
    nan_seen = zero  # 1 in a lane that met a NaN
    for i in range(images):
        for f in range(FN):
            bias = splat(b[f])
            top = f * rows.shape[1] + i * P
            bottom = top + P // 2
            at = ((n0 + i) * FN + f) * windows
            for w0 in range(0, windows, lanes):
                q = min(w0, windows - lanes)
                upper = load(flat_rows, top + 2 * q)
                upper_next = load(flat_rows, top + 2 * q + lanes)
                lower = load(flat_rows, bottom + 2 * q)
                lower_next = load(flat_rows, bottom + 2 * q + lanes)
                top_left, top_right = evens(upper, upper_next), odds(upper, upper_next)
                bottom_left, bottom_right = evens(lower, lower_next), odds(lower, lower_next)
                if with_argmax:
                    top_left = _relu_vector(top_left, bias, one, zero)
                    top_right = _relu_vector(top_right, bias, one, zero)
                    bottom_left = _relu_vector(bottom_left, bias, one, zero)
                    bottom_right = _relu_vector(bottom_right, bias, one, zero)
                nan_seen = where_ne(top_left, top_left, one, nan_seen)
                nan_seen = where_ne(top_right, top_right, one, nan_seen)
                nan_seen = where_ne(bottom_left, bottom_left, one, nan_seen)
                nan_seen = where_ne(bottom_right, bottom_right, one, nan_seen)
                left = where_ge(top_left, bottom_left, top_left, bottom_left)
                right = where_ge(top_right, bottom_right, top_right, bottom_right)
                best = where_ge(left, right, left, right)
                if with_argmax:
                    # (top_left != best) * (1 + (top_right != best) * (1 + (left != best)))
                    inner = where_ne(left, best, two, one)
                    outer = fma(where_ne(top_right, best, inner, zero), one, one)
                    store(flat_out, at + q, best)
                    store_as_int(flat_argmax, at + q, where_ne(top_left, best, outer, zero))
                else:
                    store(flat_out, at + q, _relu_vector(best, bias, one, zero))
    return not any_nonzero(nan_seen)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _relu_in_row_order(flat, bias, conv_h, conv_w, split_rows, plane):
    """plane (conv_h, conv_w) = relu(flat + bias) in row order, flat holding a plane's rows
    split when split_rows (``im2col._row_slot``)."""
    zero = plane.dtype.type(0)
    for oy in range(conv_h):
        j = _row_slot(oy, conv_h, split_rows) * conv_w
        src = flat[j:j + conv_w]
        dst = plane[oy]
        for x in range(conv_w):
            dst[x] = _bias_relu(src[x], bias, zero)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pool_split_planes(rows, b, n0, P, out, argmax, with_argmax):
    """``_pool_split_plane`` for every plane of the chunk rows into images n0.. of out (and
    argmax when with_argmax), or ``_pool_split_vectors`` where a plane has a vector of
    windows or more. Returns False, with planes unfinished, when a bias is not finite or a
    plane holds a NaN (with a finite bias, relu(plane + bias) holds one only where the plane
    does).

    The biases are checked before the loop: checked in it, plane by plane, they made the
    loop 1.7-2.4x slower (float32, Zen 5)."""
    if _any_not_finite(b):
        return False
    FN = out.shape[1]
    windows = out.shape[2] * out.shape[3]
    if windows >= VECTOR_BYTES // out.itemsize:
        return _pool_split_vectors(rows, b, n0, P, out, argmax, with_argmax)
    unread_indices = np.empty(windows, dtype=argmax.dtype)  # where no argmax is kept
    flat_out = out.reshape((out.shape[0], FN, windows))
    flat_argmax = argmax.reshape((argmax.shape[0], FN, windows))
    done = True
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            # without argmax there is no row of it to index (its first axis is empty)
            indices = flat_argmax[n0 + i, f] if with_argmax else unread_indices
            done &= _pool_split_plane(rows[f, i * P:(i + 1) * P], flat_out[n0 + i, f],
                                      indices, b[f], with_argmax)
    return done


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _bias_relu_pool(rows, b, n0, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad,
                    out, argmax, with_argmax, split_rows):
    """The pooled relu(rows + b) into images n0.. of out (and argmax when with_argmax);
    split_rows says that each plane's rows are split (``im2col._row_slot``), which needs a
    pool whose windows tile the plane.

    The split planes go through a loop of their own (``_pool_split_planes``) that only
    reads rows, and only a chunk in which it meets a NaN (or a bias that is not finite)
    takes the general path, which never writes rows either. With a bias check per plane and
    the general path in the same loop, that pass took 211 against 81 us (window indices:
    356 against 198 us) for 100 images of SimpleConvNet's layer (float32, one thread, Zen
    5); why LLVM compiled it so much slower was not found."""
    P = conv_h * conv_w
    if split_rows and _pool_split_planes(rows, b, n0, P, out, argmax, with_argmax):
        return
    FN = out.shape[1]
    fast = pool_h == 2 and pool_w == 2 and pool_pad == 0
    pair_max = np.empty(P // 2, dtype=out.dtype)
    in_row_order = np.empty((conv_h, conv_w), dtype=out.dtype)  # a plane for the plain pool
    unread_argmax = np.empty(out.shape[2:], dtype=argmax.dtype)  # where no argmax is kept
    # the windows of each plane in row order, for the 2x2 pools (reshaped once here)
    flat_out = out.reshape((out.shape[0], FN, out.shape[2] * out.shape[3]))
    biases_finite = not _any_not_finite(b)  # (see _pool_split_planes)
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            flat = rows[f, i * P:(i + 1) * P]
            bias = b[f]
            if (fast and not split_rows and not with_argmax and biases_finite
                    and _pool_2x2_relu_values(flat, conv_w, pool_stride, flat_out[n0 + i, f],
                                              bias, pair_max)):
                continue
            # the rest (other pools, NaN): the ReLU'd plane in row order, then the plain
            # pool, whose own 2x2 path is the one-pass select chain; one compiled copy of
            # it, not a second with the ReLU folded in, keeps an empty cache's first step
            # shorter
            _relu_in_row_order(flat, bias, conv_h, conv_w, split_rows, in_row_order)
            _pool_plane(in_row_order, pool_h, pool_w, pool_stride, pool_pad, out[n0 + i, f],
                        argmax[n0 + i, f] if with_argmax else unread_argmax)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _relu_grad_to_rows(dout, out, n0, rows):
    _, FN, P = dout.shape
    zero = rows.dtype.type(0)
    for i in range(rows.shape[1] // P):
        for f in range(FN):
            grad = dout[n0 + i, f]
            kept = out[n0 + i, f]
            dst = rows[f, i * P:(i + 1) * P]
            for p in range(P):
                dst[p] = grad[p] if kept[p] != 0 else zero


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pool_2x2_relu_grad_to_split_rows(dout, out, argmax, n0, n1, rows):
    """_pool_relu_grad_to_rows for a 2x2 stride-2 pool that tiles the plane, into rows whose
    planes have their rows split (``im2col._row_slot``): every cell written once,
    branch-free, along all of a plane's windows at once. Window q writes its gradient, or
    zeros, to cells 2q and 2q+1 of both halves of the plane, into scratch that two copies of
    half a plane then move into the rows: written into the rows directly, the loop took 1.97
    ms for 3000 planes against 0.18 (float32) and 0.65-0.74 ms (float64) in a driver. Like
    the scatter, an argmax outside 0..3 routes nothing."""
    _, FN, out_h, out_w = dout.shape
    windows = out_h * out_w
    P = 4 * windows
    zero = rows.dtype.type(0)
    top = np.empty(2 * windows, dtype=rows.dtype)
    bottom = np.empty(2 * windows, dtype=rows.dtype)
    flat_dout = dout.reshape((dout.shape[0], FN, windows))
    flat_out = out.reshape(flat_dout.shape)
    flat_argmax = argmax.reshape(flat_dout.shape)
    for n in range(n0, n1):
        base = (n - n0) * P
        for f in range(FN):
            grad = flat_dout[n, f]
            kept = flat_out[n, f]
            cell = flat_argmax[n, f]
            for q in range(windows):
                k = cell[q]
                g = grad[q] if kept[q] != 0 else zero
                top[2 * q] = g if k == 0 else zero
                top[2 * q + 1] = g if k == 1 else zero
                bottom[2 * q] = g if k == 2 else zero
                bottom[2 * q + 1] = g if k == 3 else zero
            upper = rows[f, base:base + 2 * windows]
            lower = rows[f, base + 2 * windows:base + P]
            for j in range(2 * windows):
                upper[j] = top[j]
            for j in range(2 * windows):
                lower[j] = bottom[j]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pool_relu_grad_to_rows(dout, out, argmax, n0, n1, conv_h, conv_w, pool, rows):
    # For pools whose windows overlap, skip cells or leave a border: zeroing the rows and
    # adding at the maxima, where on MNIST most windows pool a ReLU zero and the branch that
    # skips them is well predicted. argmax is a public attribute of the Pooling layer: an
    # index that names no cell of its window, or a cell in the padding, routes nothing (as
    # in the NumPy twin) and is never written through.
    pool_h, pool_w, pool_stride, pool_pad = pool
    _, FN, out_h, out_w = dout.shape
    P = conv_h * conv_w
    cells = pool_h * pool_w
    rows[:] = 0
    for n in range(n0, n1):
        base = (n - n0) * P
        for f in range(FN):
            for py in range(out_h):
                for px in range(out_w):
                    k = argmax[n, f, py, px]
                    if out[n, f, py, px] == 0 or k < 0 or k >= cells:
                        continue
                    if pool_w == 2:  # a shift, not a 64-bit division (~25 cycles) per window
                        ky, kx = k >> 1, k & 1
                    else:
                        ky, kx = k // pool_w, k % pool_w
                    oy = py * pool_stride - pool_pad + ky
                    ox = px * pool_stride - pool_pad + kx
                    if 0 <= oy < conv_h and 0 <= ox < conv_w:
                        rows[f, base + oy * conv_w + ox] += dout[n, f, py, px]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def windows_are_tiles(pool, conv_h, conv_w):
    """Whether a (pool_h, pool_w, stride, pad) pool's windows tile the conv output: 2x2
    stride 2 on an even output (then they are also the Winograd tiles)."""
    return (pool[0] == 2 and pool[1] == 2 and pool[2] == 2 and pool[3] == 0
            and conv_h % 2 == 0 and conv_w % 2 == 0)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def output_rows_split(kind, pool, conv_h, conv_w):
    """Whether an im2col chunk feeding this epilogue splits its rows (``im2col._row_slot``):
    where a 2x2 stride-2 pool tiles the plane."""
    return ((kind == OUTPUT_RELU_POOL or kind == OUTPUT_RELU_POOL_VALUES)
            and windows_are_tiles(pool, conv_h, conv_w))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def gradient_rows_split(kind, pool, conv_h, conv_w):
    """``output_rows_split`` for a backward prologue."""
    return kind == GRADIENT_RELU_POOL and windows_are_tiles(pool, conv_h, conv_w)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def forward_epilogue(kind, rows, n0, conv_h, conv_w, b, pool, out, argmax, split_rows):
    """Writes images n0.. of out (N, FN, *) from rows; argmax only for OUTPUT_RELU_POOL.
    split_rows: rows holds each plane's rows split, as ``output_rows_split`` says for the
    im2col chunks (the Winograd output transform writes them in row order)."""
    if kind == OUTPUT_RELU_POOL or kind == OUTPUT_RELU_POOL_VALUES:
        pool_h, pool_w, pool_stride, pool_pad = pool
        _bias_relu_pool(rows, b, n0, conv_h, conv_w, pool_h, pool_w, pool_stride, pool_pad,
                        out, argmax, kind == OUTPUT_RELU_POOL, split_rows)
    else:
        flat = out.reshape((out.shape[0], out.shape[1], conv_h * conv_w))
        _bias_to_nchw(rows, b, n0, flat, kind == OUTPUT_RELU)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def backward_prologue(kind, n0, n1, conv_h, conv_w, pool, dout, out, argmax, rows,
                      split_rows):
    """rows = the gradient of images n0..n1-1 at the conv output, from the layer's dout,
    each plane's rows split when split_rows (``gradient_rows_split``).

    out (the layer's forward output) is read by the ReLU kinds, argmax by GRADIENT_RELU_POOL.
    """
    P = conv_h * conv_w
    if kind == GRADIENT_RELU_POOL:
        if split_rows:
            _pool_2x2_relu_grad_to_split_rows(dout, out, argmax, n0, n1, rows)
        else:
            _pool_relu_grad_to_rows(dout, out, argmax, n0, n1, conv_h, conv_w, pool, rows)
        return
    flat_dout = dout.reshape((dout.shape[0], dout.shape[1], P))
    if kind == GRADIENT_RELU:
        _relu_grad_to_rows(flat_dout, out.reshape(flat_dout.shape), n0, rows)
    else:
        _nchw_to_rows(flat_dout, n0, rows)
