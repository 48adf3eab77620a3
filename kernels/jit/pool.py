"""Max-pool kernels compiled by Numba; same contract as ``fastconv.kernels.reference.pool``.

The forward pass finds the max and records its window index in one pass. The backward pass
scatters through that index, plane by plane, a batch cut in parts for the threads: windows
overlap only inside an (image, channel) plane, so no two threads ever add to the same pixel.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from . import recycle
from .compile_options import HELPER_INLINE
from .contracts import POOL_NAMES, float_array, image_shape, shaped, windows
from .dispatch import in_parts_above

__all__ = ["maxpool_forward", "maxpool_backward"]


def index_scratch(n, values):
    """Scratch for n window indices computed beside float values in a loop that vectorizes,
    then copied into an intp argmax: int32 beside float32 and intp beside float64, the
    width of the compares. Stored as intp beside float32, the indices took 5.4 against 3.5
    us in a chunk of DeepConvNet's pooled 16->16 Winograd tiles; int32 beside float64 was
    up to 1.3x slower (one thread, Xeon). This body is what Python runs."""
    return np.empty(n, dtype=np.int32 if values.dtype == np.float32 else np.intp)


@overload(index_scratch)
def _index_scratch_typed(n, values):
    if values.dtype == types.float32:
        return lambda n, values: np.empty(n, dtype=np.int32)
    return lambda n, values: np.empty(n, dtype=np.intp)


@njit(cache=True, inline=HELPER_INLINE)
def _window_argmax(plane, y0, x0, pool_h, pool_w):
    """(max, window index) of plane[y0:y0+pool_h, x0:x0+pool_w]; cells outside are -inf.

    The first maximum wins and a NaN counts as the maximum, as in np.argmax.
    """
    H, W = plane.shape
    best = plane.dtype.type(-np.inf)
    best_k = 0
    for ky in range(pool_h):
        iy = y0 + ky
        if iy < 0 or iy >= H:
            continue
        for kx in range(pool_w):
            ix = x0 + kx
            if ix < 0 or ix >= W:
                continue
            v = plane[iy, ix]
            if v > best or (v != v and best == best):
                best = v
                best_k = ky * pool_w + kx
    return best, best_k


@njit(cache=True, inline=HELPER_INLINE)
def _has_nan(plane):
    found = False
    for iy in range(plane.shape[0]):
        row = plane[iy]
        for ix in range(row.shape[0]):
            found |= row[ix] != row[ix]  # an or-reduction: vectorizes, no branch
    return found


@njit(cache=True, inline="always")
def _bias_relu(v, bias, zero):
    """The book's ReLU of v + bias (NaN passes). zero has the data's dtype: a literal 0 would
    make the result float64."""
    v = v + bias
    return zero if v <= 0 else v


@njit(cache=True, inline=HELPER_INLINE)
def _pool_2x2(plane, stride, out, argmax):
    """The book's 2x2 pool (pad 0, no NaN in the plane), written without branches: a
    data-dependent branch per cell mispredicts on real images and costs ~6x.

    The window index is the first cell equal to the maximum (np.argmax's tie rule), computed
    with integer arithmetic on the comparisons. A chain of selects carrying the index did the
    same, but in float64 LLVM compiled it to branches: 8.0 ms against 1.2 ms for a
    SimpleConvNet batch's 3000 planes (float32: 0.96 against 1.08 ms).
    """
    out_h, out_w = out.shape
    for py in range(out_h):
        top = plane[py * stride]
        bottom = plane[py * stride + 1]
        out_row = out[py]
        argmax_row = argmax[py]
        for px in range(out_w):
            x = px * stride
            a, b, c, d = top[x], top[x + 1], bottom[x], bottom[x + 1]
            upper = a if a >= b else b
            lower = c if c >= d else d
            best = upper if upper >= lower else lower
            out_row[px] = best
            argmax_row[px] = (a != best) * (1 + (b != best) * (1 + (c != best)))


@njit(cache=True, inline=HELPER_INLINE)
def _relu_pool_window(top_left, top_right, bottom_left, bottom_right, bias, zero):
    """(maximum, index of its first cell in row-major order, whether a cell is NaN) of
    relu(cell + bias) over a 2x2 window given in row order; maximum and index hold only for
    a window without NaN. The index is the top-left cell if it equals the maximum, else the
    top-right, else the bottom-left when the left column holds the maximum, else the
    bottom-right. Branch-free, so that a loop over windows vectorizes."""
    top_left = _bias_relu(top_left, bias, zero)
    top_right = _bias_relu(top_right, bias, zero)
    bottom_left = _bias_relu(bottom_left, bias, zero)
    bottom_right = _bias_relu(bottom_right, bias, zero)
    has_nan = ((top_left != top_left) | (top_right != top_right)
               | (bottom_left != bottom_left) | (bottom_right != bottom_right))
    left = top_left if top_left >= bottom_left else bottom_left
    right = top_right if top_right >= bottom_right else bottom_right
    best = left if left >= right else right
    index = (top_left != best) * (1 + (top_right != best) * (1 + (left != best)))
    return best, index, has_nan


@njit(cache=True, inline=HELPER_INLINE)
def _pool_2x2_relu_values(flat, W, stride, out, bias, pair_max):
    """out = what _pool_2x2 pools from relu(plane + bias), without the window indices, for a
    plane given by its cells in row order (flat, rows of W) and out holding its windows in
    row order; False, with out unfinished, when a row it reads holds a NaN (the caller then
    takes the general path). pair_max is scratch of half the plane.

    relu(v + bias) never decreases as v grows, so the pooled value is relu(max + bias): a
    max of each cell pair down the rows (contiguous, so it vectorizes), then of each pair of
    those across, then one bias + ReLU per window. 3x faster than the select chain, which
    must carry an index. Flat slices, not reshapes: a Numba reshape is a call into its C
    helpers, 18 ns each, a third of a 24x24 plane's time once.

    With stride 2 on an even width the second pass goes along all windows of the plane at
    once: a row's 12 windows were too few for vectors (SimpleConvNet's batch, float32, one
    thread: 0.57 against 0.78 ms; float64 the same). Where the windows tile the plane, an
    im2col chunk's rows come split instead (``epilogues._pool_split_plane``).
    """
    out_w = (W - 2) // stride + 1
    zero = out.dtype.type(0)
    whole = stride == 2 and W % 2 == 0
    found_nan = False
    for py in range(out.shape[0] // out_w):
        r = py * stride
        top = flat[r * W:(r + 1) * W]
        bottom = flat[(r + 1) * W:(r + 2) * W]
        larger = pair_max[py * W:(py + 1) * W] if whole else pair_max[:W]
        for x in range(W):
            a = top[x]
            c = bottom[x]
            found_nan |= (a != a) | (c != c)
            larger[x] = max(a, c)
        if not whole:
            out_row = out[py * out_w:(py + 1) * out_w]
            for px in range(out_w):
                x = px * stride
                out_row[px] = _bias_relu(max(larger[x], larger[x + 1]), bias, zero)
    if whole:
        for q in range(out.shape[0]):
            out[q] = _bias_relu(max(pair_max[2 * q], pair_max[2 * q + 1]), bias, zero)
    return not found_nan


@njit(cache=True, inline="always")
def _pool_plane(plane, pool_h, pool_w, stride, pad, out, argmax):
    """Max-pool one (H, W) plane into out and argmax (out_h, out_w)."""
    out_h, out_w = out.shape
    if pool_h == 2 and pool_w == 2 and pad == 0 and not _has_nan(plane):
        # Planes holding a NaN take the general path: checking each window for one cost 40%
        # of the pool.
        _pool_2x2(plane, stride, out, argmax)
    else:
        for py in range(out_h):
            for px in range(out_w):
                best, k = _window_argmax(plane, py * stride - pad, px * stride - pad,
                                         pool_h, pool_w)
                out[py, px] = best
                argmax[py, px] = k


# From these sizes on (of x forward, of dout backward) the standalone pool runs in parts of
# the batch on two or more threads (``dispatch.in_parts_above``). Zen 5, 2 threads, 2x2
# windows of stride 2 on (N, 30, 24, 24) float32: forward at N=100 519 us in parts against
# 881 serial and 565 as a parallel loop, N=32 (2.2 MB) 189 against 281 and 403, N=8 (0.6 MB)
# 74 against 74 and 198; backward at N=100 671 against 1282 us serial, N=4 (69 KB of dout)
# 48 against 50 us (float64 the same).
POOL_FORWARD_IN_PARTS_BYTES = 2 << 20
POOL_BACKWARD_IN_PARTS_BYTES = 64 << 10


@in_parts_above(POOL_FORWARD_IN_PARTS_BYTES)
def _maxpool_forward_into(x, pool_h, pool_w, stride, pad, out, argmax):
    N, C, H, W = x.shape
    for plane_index in range(N * C):
        n = plane_index // C
        c = plane_index % C
        _pool_plane(x[n, c], pool_h, pool_w, stride, pad, out[n, c], argmax[n, c])


@in_parts_above(POOL_BACKWARD_IN_PARTS_BYTES)
def _maxpool_backward_into(dout, argmax, pool_h, pool_w, stride, pad, dx):
    N, C, H, W = dx.shape
    _, _, out_h, out_w = dout.shape
    for plane in range(N * C):
        n = plane // C
        c = plane % C
        for iy in range(H):
            for ix in range(W):
                dx[n, c, iy, ix] = 0
        for oy in range(out_h):
            for ox in range(out_w):
                k = argmax[n, c, oy, ox]
                if k < 0 or k >= pool_h * pool_w:
                    continue  # names no cell of the window: routes nothing, as in the twin
                iy = oy * stride - pad + k // pool_w
                ix = ox * stride - pad + k % pool_w
                if 0 <= iy < H and 0 <= ix < W:
                    dx[n, c, iy, ix] += dout[n, c, oy, ox]


def maxpool_forward(x, pool_h, pool_w, stride, pad=0):
    x = np.ascontiguousarray(float_array("maxpool_forward", "x", x, 4))
    N, C, H, W = x.shape
    out_h, out_w = windows("maxpool_forward", H, W, pool_h, pool_w, stride, pad, POOL_NAMES)
    out = recycle.empty((N, C, out_h, out_w), x.dtype)
    argmax = recycle.empty((N, C, out_h, out_w), np.intp)
    _maxpool_forward_into(x, pool_h, pool_w, stride, pad, out, argmax)
    return out, argmax


def maxpool_backward(dout, argmax, x_shape, pool_h, pool_w, stride, pad=0):
    kernel = "maxpool_backward"
    N, C, H, W = image_shape(kernel, "x_shape", x_shape, least_images=0)
    shape = (N, C) + windows(kernel, H, W, pool_h, pool_w, stride, pad, POOL_NAMES)
    float_array(kernel, "dout", dout)
    shaped(kernel, "dout", dout, shape, f" (the pooled output of an input of shape {x_shape})")
    shaped(kernel, "argmax", argmax, shape, " (one window index for each pooled output)")
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{kernel}: argmax must hold the integer window indices that the "
                        f"forward pass returned; got dtype {argmax.dtype}")
    dx = recycle.empty((N, C, H, W), dout.dtype)
    _maxpool_backward_into(np.ascontiguousarray(dout), np.ascontiguousarray(argmax),
                           pool_h, pool_w, stride, pad, dx)
    return dx
