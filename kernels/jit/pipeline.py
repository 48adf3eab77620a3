"""Convolution as im2col + GEMM, run as a per-thread pipeline over chunks of images.

The batch is cut into a fixed number of parts (``gemm.pieces``) that threads run at once,
and each part walks its images in chunks whose im2col matrix fits in cache: im2col -> GEMM
-> epilogue for the forward pass, and im2col -> prologue -> GEMMs -> col2im for the backward
pass (``epilogues``). The im2col matrix of a chunk is K-major, ``cols (C*FH*FW,
images*out_h*out_w)``, so the products need no transposed copies, and it is rebuilt in the
backward pass instead of being kept: for the 16-channel layers of DeepConvNet the whole-batch
matrix is 45 MB, and streaming it through memory four times a step cost more than building
it twice in cache.

A part is one compiled ``nogil`` call, BLAS included (``blas.gemm``), so the two threads
never wait for each other's GIL in the middle of a layer. Where NumPy's bundled OpenBLAS
is missing, the same loop runs as Python (``COMPILED`` is False) and multiplies through NumPy.

The 3x3 stride-1 convolutions of 8+ channels run the same way by Winograd F(2x2, 3x3)
(``winograd``, ``_winograd_*_chunks``): input transform -> 16 GEMMs -> output transform ->
epilogue, and the adjoints backward. A part that meets a value that is not finite reruns by
im2col (see ``winograd``). Its forward pass takes a 2x2 pool that tiles the output, or no
pool, as the direct one does (``pool_tiles_or_none``).

In float32, on a CPU with AVX-512, such a conv under a 2x2 stride-2 pool whose output is of
whole 4x4 tiles, 8 or more wide, runs by Winograd F(4x4, 3x3) instead (``winograd4``): 0.56x
the transformed data and products per output, at a larger rounding.

The forward pass of a stride-1 conv of up to 4 channels that does not run by Winograd is
computed directly where the CPU has AVX-512 (``direct``, ``_direct_forward_chunks``): no
im2col matrix, the same rows for the same pool; a part whose pool meets a NaN reruns by
im2col. Where such a layer needs no input gradient (a network's first layer) and fits 5x5
tiles of filters and taps, its weight gradient is summed from the same shifted rows
(``direct_gradient``, ``_direct_backward_chunks``).

Parts own disjoint images; the weight and bias gradients are summed per part and the parts
added in a fixed order. No result depends on the thread count.
"""
import math
import os
import threading

import numpy as np
from numba import njit

from ..shapes import conv_output_hw
from . import background_compile, blas, recycle, simd, winograd4
from .blas import gemm
from .compile_options import HELPER_INLINE
from .direct import direct_rows, direct_weights, holds_blocks, shifted_size
from .direct_gradient import add_direct_weight_gradient, add_lane_sums, gradient_fits
from .pooled_gradient import (ROW_LANES, add_pooled_weight_gradient, add_row_sums, gathers,
                              patch_size)
from .epilogues import (GRADIENT_RELU_POOL, OUTPUT_RELU, OUTPUT_RELU_POOL,
                        OUTPUT_RELU_POOL_VALUES, _add_row_sums, _bias_to_nchw,
                        _pool_split_planes, backward_prologue, forward_epilogue,
                        gradient_rows_split, output_rows_split, windows_are_tiles)
from .gemm import pieces, run_parts, single_threaded_blas
from .im2col import _col2im_padded, _crop_images, _im2col_padded, _pad_images
from .weight_gradient import add_weight_gradient_tiles
from .winograd import (TILE_CELLS, _any_not_finite, _input_transform,
                       _input_transform_adjoint, _output_transform, _output_transform_adjoint,
                       _pooled_gradient_tiles, _pooled_output_tiles, filter_gradient,
                       filter_transform, tiles_hw, transform_scratch_size)

__all__ = ["forward_part", "forward_pipeline", "backward_part", "backward_pipeline",
           "images_parallel"]

# An im2col chunk leaves room in a core's L2 for the chunk's GEMM output. Since the parts
# became single compiled calls, a chunk costs no GIL hand-off; 256 KB beat 1 MB in
# interleaved runs on an earlier machine with 512 KB of L2 a core (SimpleConvNet step
# 0.96-0.97x the time on 2 threads, DeepConvNet 0.96-1.00x), and on the Zen 5 of issue #16
# (1 MB of L2 a core) 128 KB beat 256 KB: two float32 MNIST images a chunk instead of four,
# SimpleConvNet float32 step 2.29-2.39 against 2.51-2.59 ms and 10k-image inference 0.87x,
# float64 (one image a chunk instead of two) and DeepConvNet within their noise (three
# alternating rounds, 2 threads).
CHUNK_BYTES = 1 << 17
# The Winograd loops' chunk of transformed tiles (V) stays at 256 KB: with both chunks set
# alike, DeepConvNet's float32 step took 19.2-20.1 ms at 256 KB against 20.1-22.1 ms at
# 128 KB and 21.1-21.2 ms at 1 MB (Zen 5, two rounds).
WINOGRAD_CHUNK_BYTES = 1 << 18
# A chunk holds at least this many output positions: one 8x8 image gives a GEMM of 64
# columns, where OpenBLAS ran 17% slower than on 192 (64 filters x 576 taps, float32, one
# thread: 3 x 44.9 us against 112.4 us). DeepConvNet's 64->64 block took 2-8% less time
# (float32, three alternating pairs); float64 moved within its noise.
MIN_CHUNK_POSITIONS = 192
# The weight gradient of a chunk is summed by dot products of its rows (weight_gradient.py)
# where they are long enough to beat OpenBLAS: 2x at DeepConvNet's 16-channel layers in
# float32, 1.4x in float64, on one thread. The BLAS wins on short rows (the 64-channel layers
# at 8x8 walk 192 positions a chunk), and with 9 columns in float64 (DeepConvNet's 1-channel
# layer: 21.8 against 25.4 us a chunk of 3136 positions). In float32 the same 16x9 product,
# 7056 positions a chunk, took 83 us in OpenBLAS and 25.6 us by tiles (ninth session).
DOT_MIN_POSITIONS = 384
DOT_MIN_COLUMNS = 16
DOT_MIN_COLUMNS_FLOAT32 = 8
# Which 3x3 stride-1 convs run by Winograd F(2x2, 3x3) (winograd.py): at least this many
# input channels. Forward + backward against im2col, DeepConvNet's blocks, 100 images, 2
# threads (float32 / float64, 2026-12-04, scalar transforms then): 16->16 at 28x28 +pool
# 1.13x / 1.40x faster, 16->32 at 14x14 1.14x / 1.21x, 32->32 at 16x16 +pool 1.45x / 1.51x,
# 32->64 at 8x8 0.89x / 1.16x, 64->64 at 8x8 +pool 0.99x / 1.37x; 1->16 0.64x / 0.34x.
# float32's 8x8 layers stayed on im2col until the transforms vectorized (2026-12-05); since,
# Winograd there too took the float32 DeepConvNet step from 39.0-40.8 to 35.2-37.2 ms
# (three alternating pairs).
WINOGRAD_MIN_CHANNELS = 8
# F(4x4, 3x3) (winograd4.py) where it fits: float32 pooled layers of whole 4x4 tiles, where
# the CPU has AVX-512 (its transforms keep 16-lane vectors). FASTCONV_WINOGRAD4=0 turns it off.
# Its chunk of transformed tiles is 512 KB: each phase of DeepConvNet's pooled layers took
# 0.8-1.0x the time at 512 KB against 256 KB (the products 0.8x), 1 MB lost again (one thread).
WINOGRAD4 = os.environ.get("FASTCONV_WINOGRAD4", "1") != "0" and simd.FULL_WIDTH
WINOGRAD4_CHUNK_BYTES = 1 << 19
# The forward pass of a stride-1 conv of few channels that does not run by Winograd is
# computed directly (direct.py) where compiled code has 512-bit registers (the direct blocks
# keep 18 vectors in them; AVX2's 16 would spill), and where its output is pooled by tiles
# or not pooled. Forward im2col + GEMM against direct, one thread, 50 images (float32 /
# float64, Zen 4): 1->30 5x5 (SimpleConvNet) 0.82-0.90x / 0.86-0.89x the time, 1->16 3x3
# pad 1 (DeepConvNet's first) 0.94-1.00x / 0.96-1.01x, 2->16 and 4->16 3x3 0.86x /
# 0.95-0.98x, 3->32 5x5 at 32x32 0.75x / 0.86x; 8->16 3x3 at 14x14 lost in float32 (1.48x),
# 16->32 in both (1.48x / 1.11x). Its loop compiles in 6.3 s against 7.8 for im2col's, since
# it leaves the general pool to im2col (docs/performance-history.md).
# FASTCONV_DIRECT_CONV=0 turns it off, and the direct weight gradient with it.
DIRECT_CONV = os.environ.get("FASTCONV_DIRECT_CONV", "1") != "0"
DIRECT_MAX_CHANNELS = 4


COMPILED = blas.AVAILABLE  # run each part as one compiled call (else its Python source)

_scratch = threading.local()  # each thread's scratch arrays, see _scratch_array


def _scratch_array(name, shape, dtype):
    """A scratch array of the calling thread, reused across calls and grown when too small.

    A fresh array of a megabyte comes from mmap, and its first touch faults every 4 KB
    page: allocating each chunk's 1.2 MB GEMM output cost 0.8 ms, four times the GEMM. Each
    thread runs one part at a time, so a thread's own arrays are never shared.
    """
    # math.prod, not np.prod: this runs several times per layer call, and np.prod's ~4 us
    # was a third of a small layer's Python overhead
    size = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    key = (name, np.dtype(dtype).char)
    flat = _scratch.__dict__.get(key)
    if flat is None or flat.size < size:
        flat = _scratch.__dict__[key] = np.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)


def _scratch_arrays(x, Wm, geometry, chunk):
    """(cols, rows, padded images): this thread's buffers for one chunk."""
    _, C, H, W = x.shape
    FN, K = Wm.shape
    pad, P = geometry[3], geometry[4] * geometry[5]
    return (_scratch_array("cols", K * chunk * P, x.dtype),
            _scratch_array("rows", FN * chunk * P, x.dtype),
            _scratch_array("padded", (chunk, C, H + 2 * pad, W + 2 * pad), x.dtype))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _chunk_im2col(x, n0, n1, geometry, scratch, FN, split_rows):
    """(cols, rows) for images n0..n1-1: cols holds their K-major im2col, each image's rows
    of pixels split when split_rows (``im2col._row_slot``), rows is the (FN, images*P) view
    of the scratch for their GEMM output, not yet written."""
    FH, FW, stride, pad, conv_h, conv_w = geometry
    flat_cols, flat_rows, xp = scratch
    K = x.shape[1] * FH * FW
    m = (n1 - n0) * conv_h * conv_w
    cols = flat_cols[:K * m].reshape((K, m))
    _pad_images(x, n0, n1, pad, xp)
    _im2col_padded(xp, n1 - n0, FH, FW, stride, conv_h, conv_w, cols, split_rows)
    return cols, flat_rows[:FN * m].reshape((FN, m))


@njit(nogil=True, cache=True)
def _forward_chunks(x, Wm, lo, hi, chunk, geometry, scratch, epilogue):
    """Images lo..hi-1 of x through the conv and the epilogue, chunk images at a time.

    geometry = (FH, FW, stride, pad, conv_h, conv_w); scratch = (cols, rows, padded
    images); epilogue = (kind, b, pool, out, argmax), see ``forward_epilogue``.
    """
    conv_h, conv_w = geometry[4], geometry[5]
    kind, b, pool, out, argmax = epilogue
    split_rows = output_rows_split(kind, pool, conv_h, conv_w)
    for n0 in range(lo, hi, chunk):
        cols, rows = _chunk_im2col(x, n0, min(n0 + chunk, hi), geometry, scratch, Wm.shape[0],
                                   split_rows)
        gemm(Wm, False, cols, False, rows, 0)
        forward_epilogue(kind, rows, n0, conv_h, conv_w, b, pool, out, argmax, split_rows)


@njit(nogil=True, cache=True)
def _direct_forward_chunks(x, Wd, lo, hi, chunk, geometry, scratch, epilogue):
    """_forward_chunks for a stride-1 conv computed directly (``direct``), into an epilogue
    that pools by tiles or does not pool (``pool_tiles_or_none``): Wd holds the weight matrix's
    rows padded to a multiple of 6; scratch = (padded image, shifted rows, tap offsets,
    rows). Returns False, with images unfinished, where a pool meets a NaN or a bias that is
    not finite: the part then runs by im2col, whose general pool this loop does not compile
    (an empty cache's first step compiles this loop alone)."""
    FH, FW, _, pad, conv_h, conv_w = geometry
    kind, b, pool, out, argmax = epilogue
    split_rows = output_rows_split(kind, pool, conv_h, conv_w)
    padded, shifted, offsets, flat_rows = scratch
    FN = out.shape[1]
    P = conv_h * conv_w
    for n0 in range(lo, hi, chunk):
        n1 = min(n0 + chunk, hi)
        m = (n1 - n0) * P
        direct_rows(x, n0, n1, Wd, FH, FW, pad, conv_h, conv_w, split_rows, padded, shifted,
                    offsets, flat_rows[:Wd.shape[0] * m].reshape((Wd.shape[0], m)))
        rows = flat_rows[:FN * m].reshape((FN, m))
        if split_rows:
            if not _pool_split_planes(rows, b, n0, P, out, argmax, kind == OUTPUT_RELU_POOL):
                return False
        else:
            _bias_to_nchw(rows, b, n0, out.reshape((out.shape[0], FN, P)), kind == OUTPUT_RELU)
    return True


def pool_tiles_or_none(epilogue, conv_h, conv_w):
    """Whether the direct and Winograd forward loops take this epilogue: a 2x2 stride-2 pool
    that tiles the output, or none. Other pools go by im2col, whose loop alone compiles the
    general pool: in the Winograd loop it took half of the 13-14 s that loop took to compile
    on an empty cache (Zen 4), and DeepConvNet's first step compiles that loop."""
    kind, _, pool, _, _ = epilogue
    if kind == OUTPUT_RELU_POOL or kind == OUTPUT_RELU_POOL_VALUES:
        return _windows_are_tiles(pool, conv_h, conv_w)
    return True


# windows_are_tiles's Python body, for the choices made in Python: a compiled call from there
# costs more (NUMBA_DISABLE_JIT leaves it a plain function, with no py_func)
_windows_are_tiles = getattr(windows_are_tiles, "py_func", windows_are_tiles)


@njit(nogil=True, cache=True)
def _backward_chunks(x, Wm, lo, hi, chunk, geometry, scratch, prologue, dW, db, dx):
    """Adds the weight and bias gradients of images lo..hi-1 to dW (FN, K) and db (FN,
    float64), and writes their input gradient to dx unless dx is empty.

    prologue = (kind, pool, dout, out, argmax), see ``backward_prologue``.
    """
    FH, FW, stride, pad, conv_h, conv_w = geometry
    xp = scratch[2]
    kind, pool, dout, out, argmax = prologue
    split_rows = gradient_rows_split(kind, pool, conv_h, conv_w)
    for n0 in range(lo, hi, chunk):
        n1 = min(n0 + chunk, hi)
        cols, rows = _chunk_im2col(x, n0, n1, geometry, scratch, Wm.shape[0], split_rows)
        backward_prologue(kind, n0, n1, conv_h, conv_w, pool, dout, out, argmax, rows,
                          split_rows)
        _add_row_sums(rows, db)
        min_columns = DOT_MIN_COLUMNS_FLOAT32 if cols.itemsize == 4 else DOT_MIN_COLUMNS
        if cols.shape[1] < DOT_MIN_POSITIONS or cols.shape[0] < min_columns:
            gemm(rows, False, cols, True, dW, 1)
        else:  # 4x4 tiles of dot products, and the strips they leave over by BLAS
            tiled_f, tiled_k = add_weight_gradient_tiles(rows, cols, dW)
            if tiled_f < rows.shape[0]:
                gemm(rows[tiled_f:], False, cols, True, dW[tiled_f:], 1)
            if tiled_k < cols.shape[0]:
                gemm(rows[:tiled_f], False, cols[tiled_k:], True, dW[:tiled_f, tiled_k:], 1)
        if dx.size:
            gemm(Wm, True, rows, False, cols, 0)  # the chunk's dcol reuses the cols buffer
            _col2im_padded(cols, n1 - n0, FH, FW, stride, conv_h, conv_w, xp, split_rows)
            _crop_images(xp, n0, n1, pad, dx)


@njit(nogil=True, cache=True)
def _direct_backward_chunks(x, lo, hi, chunk, geometry, scratch, prologue, dW, db):
    """_backward_chunks for a layer whose weight gradient is summed directly
    (``direct_gradient``) and that needs no input gradient: adds the weight and bias
    gradients of images lo..hi-1 to dW (FN, K) and db (FN, float64). A loop of its own,
    since typed into ``_backward_chunks`` it doubled that loop's compile time (4.2 to 8.5 s,
    float32, empty cache).

    scratch = (rows, padded image, shifted, taps, run starts, lane sums).
    """
    FH, FW, _, pad, conv_h, conv_w = geometry
    flat_rows, padded, shifted, taps, run_starts, sums = scratch
    kind, pool, dout, out, argmax = prologue
    split_rows = gradient_rows_split(kind, pool, conv_h, conv_w)
    FN = dW.shape[0]
    sums[:] = 0
    for n0 in range(lo, hi, chunk):
        n1 = min(n0 + chunk, hi)
        m = (n1 - n0) * conv_h * conv_w
        rows = flat_rows[:FN * m].reshape((FN, m))
        backward_prologue(kind, n0, n1, conv_h, conv_w, pool, dout, out, argmax, rows,
                          split_rows)
        _add_row_sums(rows, db)
        add_direct_weight_gradient(x, n0, n1, FH, FW, pad, conv_h, conv_w, split_rows,
                                   padded, shifted, taps, run_starts, rows, sums)
    add_lane_sums(sums, dW)


@njit(nogil=True, cache=True)
def _gathered_backward_chunks(x, lo, hi, chunk, geometry, scratch, prologue, dW, db):
    """_direct_backward_chunks for a layer behind a max pool whose gradient is gathered at
    the pool's maxima (``pooled_gradient``): False, with db partly added and dW not, where
    an image holds a value that is not finite (the dense sum then runs the part again). A loop
    of its own: typed into _direct_backward_chunks it took SimpleConvNet's first float64
    step on an empty cache from 5.5 to 9.5 s.

    scratch = (padded image, row sums).
    """
    FH, FW, pad = geometry[0], geometry[1], geometry[3]
    patch, row_sums = scratch
    _, pool, dout, out, argmax = prologue
    row_sums[:] = 0
    for n0 in range(lo, hi, chunk):
        if not add_pooled_weight_gradient(x, n0, min(n0 + chunk, hi), FH, FW, pad, pool, dout,
                                          out, argmax, patch, row_sums, db):
            return False
    add_row_sums(row_sums, FW, dW)
    return True


@njit(cache=True, inline=HELPER_INLINE)
def _winograd_columns(T, rows, itemsize):
    """Row length for the tile matrices V (16, rows, T) and M: T plus a margin, so that the
    16 cells of one tile are not a multiple of 4 KB apart. At that distance they share a
    cache set, and the transforms, which touch all 16 at once, ran 4-5x slower (32 filters
    x 128 tiles of float32 = 16 KB)."""
    columns = T + 1
    for _ in range(64):  # a bound, for row sizes that are themselves multiples of 4 KB
        offset = (rows * columns * itemsize) % 4096
        if 512 <= offset <= 3584:
            break
        columns += 1
    return columns


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _chunk_views(x, n0, n1, geometry, scratch, FN):
    """(V, M, rows, T) for images n0..n1-1 and their T tiles, views of the scratch: V (16,
    C, >= T) for their transformed input and M (16, FN, >= T) for the products, in columns
    :T, and rows (FN, positions) for the conv output. V and M are whole C-contiguous arrays,
    not [:, :, :T] views: with a row stride known to be 1 the transforms vectorize (3.6
    against 7.9 ns a pooled tile, float32, one thread)."""
    conv_h, conv_w = geometry[4], geometry[5]
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    flat_V, flat_M, flat_rows = scratch[0], scratch[1], scratch[2]
    C, T, m = x.shape[1], (n1 - n0) * tiles_h * tiles_w, (n1 - n0) * conv_h * conv_w
    TV, TM = _winograd_columns(T, C, x.itemsize), _winograd_columns(T, FN, x.itemsize)
    V = flat_V[:TILE_CELLS * C * TV].reshape((TILE_CELLS, C, TV))
    M = flat_M[:TILE_CELLS * FN * TM].reshape((TILE_CELLS, FN, TM))
    return V, M, flat_rows[:FN * m].reshape((FN, m)), T


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _transformed_chunk(x, n0, n1, geometry, scratch, FN):
    """(finite, V, M, rows, T): the views of ``_chunk_views``, with V holding the images'
    transformed input unless they hold a value that is not finite (finite False)."""
    pad, conv_h, conv_w = geometry[3], geometry[4], geometry[5]
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    V, M, rows, T = _chunk_views(x, n0, n1, geometry, scratch, FN)
    xp, down = scratch[3], scratch[4]
    _pad_images(x, n0, n1, pad, xp)
    finite = not _input_transform(xp, n1 - n0, tiles_h, tiles_w, V, down)
    return finite, V, M, rows, T


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _by_window(pooled):
    """The (N, FN, windows) view of a pooled (N, FN, out_h, out_w) array."""
    return pooled.reshape((pooled.shape[0], pooled.shape[1], pooled.shape[2] * pooled.shape[3]))


@njit(nogil=True, cache=True)
def _winograd_forward_chunks(x, U, lo, hi, chunk, geometry, scratch, epilogue):
    """_forward_chunks for a 3x3 stride-1 conv, by Winograd F(2x2, 3x3) (``winograd``), U its
    transformed filters, into an epilogue that pools by tiles or does not pool
    (``pool_tiles_or_none``). Returns False as soon as an input value is not finite, or
    where the pool is another or its bias is not finite: the part must then run by im2col,
    which rewrites every output of it."""
    conv_h, conv_w = geometry[4], geometry[5]
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    kind, b, pool, out, argmax = epilogue
    pooled_tiles = kind == OUTPUT_RELU_POOL or kind == OUTPUT_RELU_POOL_VALUES
    if pooled_tiles and not (windows_are_tiles(pool, conv_h, conv_w) and not _any_not_finite(b)):
        return False
    windows_out, windows_argmax = _by_window(out), _by_window(argmax)
    for n0 in range(lo, hi, chunk):
        n1 = min(n0 + chunk, hi)
        ok, V, M, rows, T = _transformed_chunk(x, n0, n1, geometry, scratch, U.shape[1])
        if not ok:
            return False
        for k in range(TILE_CELLS):
            gemm(U[k], False, V[k, :, :T], False, M[k, :, :T], 0)
        if pooled_tiles:  # the pool's windows are the tiles: no conv output rows
            if not _pooled_output_tiles(M, n0, n1, b, windows_out, windows_argmax,
                                        kind == OUTPUT_RELU_POOL):
                return False
        else:
            _output_transform(M, n1 - n0, tiles_h, tiles_w, conv_h, conv_w, rows)
            planes = out.reshape((out.shape[0], out.shape[1], conv_h * conv_w))
            _bias_to_nchw(rows, b, n0, planes, kind == OUTPUT_RELU)
    return True


@njit(nogil=True, cache=True)
def _winograd_backward_chunks(x, U, lo, hi, chunk, geometry, scratch, prologue, dU, db, dx):
    """_backward_chunks by Winograd: adds the gradient of the transformed filters to dU (16,
    FN, C) instead of dW. Returns False as soon as an input or gradient value is not finite,
    with dU, db and dx then to be recomputed by im2col."""
    pad, conv_h, conv_w = geometry[3], geometry[4], geometry[5]
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    down = scratch[4]
    kind, pool, dout, out, argmax = prologue
    pooled_tiles = kind == GRADIENT_RELU_POOL and windows_are_tiles(pool, conv_h, conv_w)
    windows_dout, windows_out = _by_window(dout), _by_window(out)
    windows_argmax = _by_window(argmax)
    for n0 in range(lo, hi, chunk):
        n1 = min(n0 + chunk, hi)
        ok, V, dM, rows, T = _transformed_chunk(x, n0, n1, geometry, scratch, U.shape[1])
        if not ok:
            return False
        if pooled_tiles:  # the pool's windows are the tiles: no scatter into rows
            if _pooled_gradient_tiles(windows_dout, windows_out, windows_argmax, n0, n1, dM,
                                      db):
                return False
        else:
            backward_prologue(kind, n0, n1, conv_h, conv_w, pool, dout, out, argmax, rows,
                              False)
            if _output_transform_adjoint(rows, n1 - n0, tiles_h, tiles_w, conv_h, conv_w, dM):
                return False
            _add_row_sums(rows, db)
        for k in range(TILE_CELLS):
            gemm(dM[k, :, :T], False, V[k, :, :T], True, dU[k], 1)
        if dx.size:
            for k in range(TILE_CELLS):  # the chunk's dV reuses the V buffer
                gemm(U[k], True, dM[k, :, :T], False, V[k, :, :T], 0)
            _input_transform_adjoint(V, n1 - n0, tiles_h, tiles_w, pad, dx, n0, down)
    return True


def _chunk_loop(kernel):
    return kernel if COMPILED else kernel.py_func


def chunk_images(bytes_per_image, positions_per_image, chunk_bytes):
    """Images per chunk: as many as chunk_bytes of im2col matrix (or Winograd tiles) hold,
    and enough for MIN_CHUNK_POSITIONS output positions."""
    by_bytes = chunk_bytes // bytes_per_image
    return max(1, by_bytes, -(-MIN_CHUNK_POSITIONS // positions_per_image))


def _layer_operands(x, W, stride, pad):
    """(x, Wm, geometry, chunk): x C-contiguous, Wm the (FN, C*FH*FW) weight matrix in x's
    dtype (gemm takes one dtype), geometry as the chunk loops take it, and the images per
    chunk."""
    FN, C, FH, FW = W.shape
    _, _, H, Wd = x.shape
    conv_h, conv_w = conv_output_hw(H, Wd, FH, FW, stride, pad)
    x = np.ascontiguousarray(x)
    Wm = np.ascontiguousarray(W.reshape(FN, C * FH * FW), dtype=x.dtype)
    chunk = chunk_images(C * FH * FW * conv_h * conv_w * x.itemsize, conv_h * conv_w,
                         CHUNK_BYTES)
    return x, Wm, (FH, FW, stride, pad, conv_h, conv_w), chunk


def _winograd_operands(x, W, geometry):
    """(U, images per chunk) where the layer runs by Winograd F(2x2, 3x3), else None."""
    FH, FW, stride, _, conv_h, conv_w = geometry
    C = x.shape[1]
    if (FH, FW, stride) != (3, 3, 1) or C < WINOGRAD_MIN_CHANNELS:
        return None
    U = filter_transform(W, x.dtype)
    if not np.isfinite(U).all():  # the transforms would spread it past its 3x3 windows
        return None
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    return U, chunk_images(TILE_CELLS * C * tiles_h * tiles_w * x.itemsize, conv_h * conv_w,
                           WINOGRAD_CHUNK_BYTES)


def _winograd4_operands(x, W, geometry, pooled_by_tiles):
    """(U, images per chunk) where the layer runs by Winograd F(4x4, 3x3), else None."""
    FH, FW, stride, _, conv_h, conv_w = geometry
    C = x.shape[1]
    if (not WINOGRAD4 or (FH, FW, stride) != (3, 3, 1) or C < WINOGRAD_MIN_CHANNELS
            or not winograd4.fits(x.dtype, pooled_by_tiles, conv_h, conv_w)):
        return None
    U = winograd4.filter_transform(W)
    if not np.isfinite(U).all():
        return None
    return U, chunk_images(winograd4.CELLS * C * (conv_h // 4) * (conv_w // 4) * x.itemsize,
                           conv_h * conv_w, WINOGRAD4_CHUNK_BYTES)


def _winograd4_scratch(x, FN, geometry, chunk):
    """This thread's buffers for a F(4x4, 3x3) chunk (``winograd4.scratch_sizes``)."""
    V, M, padded, edge, rows, cells, windows = winograd4.scratch_sizes(
        chunk, x.shape[1], FN, geometry[4], geometry[5])
    return (_scratch_array("winograd4 V", V, x.dtype), _scratch_array("winograd4 M", M, x.dtype),
            _scratch_array("winograd4 padded", padded, x.dtype),
            _scratch_array("winograd4 edge", edge, x.dtype),
            _scratch_array("winograd4 rows", rows, x.dtype),
            _scratch_array("winograd4 cells", cells, x.dtype),
            _scratch_array("winograd4 windows", windows, x.dtype))


def _direct_operands(x, Wm, geometry, epilogue):
    """The weight matrix padded for ``direct_rows`` where the layer's forward pass runs
    directly, else None."""
    if (not DIRECT_CONV or not simd.FULL_WIDTH or geometry[2] != 1
            or x.shape[1] > DIRECT_MAX_CHANNELS or x.dtype not in simd.LANES
            or not holds_blocks(geometry[4], geometry[5], x.dtype)
            or not pool_tiles_or_none(epilogue, geometry[4], geometry[5])):
        return None
    return direct_weights(Wm)


def _direct_scratch(x, Wd, geometry, chunk):
    """(padded image, shifted rows, tap offsets, rows): this thread's buffers for
    ``_direct_forward_chunks``."""
    _, C, H, W = x.shape
    FH, FW, _, pad, conv_h, conv_w = geometry
    return (_scratch_array("direct padded", (1, C, H + 2 * pad, W + 2 * pad), x.dtype),
            _scratch_array("direct shifted", shifted_size(C, FW, H + 2 * pad, conv_w),
                           x.dtype),
            _scratch_array("direct offsets", 2 * C * FH * FW, np.int64),
            _scratch_array("rows", Wd.shape[0] * chunk * conv_h * conv_w, x.dtype))


def _direct_gradient(x, Wm, geometry, split_rows):
    """Whether a layer's weight gradient can be summed directly (``direct_gradient``): a
    stride-1 conv of few channels, as for the direct forward pass, that fits its tiles;
    split_rows as ``gradient_rows_split`` says."""
    FH, FW, stride, _, conv_h, conv_w = geometry
    return (DIRECT_CONV and simd.FULL_WIDTH and stride == 1
            and x.shape[1] <= DIRECT_MAX_CHANNELS and x.dtype in simd.LANES
            and gradient_fits(*Wm.shape, conv_h, conv_w, split_rows, x.dtype))


def _direct_gradient_scratch(x, Wm, geometry, chunk):
    """(rows, padded image, shifted, taps, run starts, lane sums): this thread's buffers
    for ``_direct_backward_chunks``."""
    _, C, H, W = x.shape
    FN, K = Wm.shape
    FH, FW, _, pad, conv_h, conv_w = geometry
    return (_scratch_array("rows", FN * chunk * conv_h * conv_w, x.dtype),
            _scratch_array("direct padded", (1, C, H + 2 * pad, W + 2 * pad), x.dtype),
            _scratch_array("direct shifted", chunk * shifted_size(C, FW, H + 2 * pad, conv_w),
                           x.dtype),
            _scratch_array("direct taps", chunk * 2 * K, np.int64),
            _scratch_array("direct run starts", chunk * 2, np.int64),
            _scratch_array("direct sums", FN * K * simd.LANES[x.dtype], x.dtype))


def _gather_scratch(x, Wm, geometry):
    """(padded image, row sums): this thread's buffers for ``_gathered_backward_chunks``."""
    _, C, H, W = x.shape
    FH, pad = geometry[0], geometry[3]
    return (_scratch_array("gather patch", patch_size(C, H + 2 * pad, W + 2 * pad), x.dtype),
            _scratch_array("gather sums", Wm.shape[0] * C * FH * ROW_LANES,
                           x.dtype))


def _winograd_scratch(x, FN, geometry, chunk):
    """(V, M, rows, padded images, down): this thread's buffers for a Winograd chunk; down
    is the input transforms' scratch."""
    C = x.shape[1]
    conv_h, conv_w = geometry[4], geometry[5]
    tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
    T = chunk * tiles_h * tiles_w
    TV, TM = _winograd_columns(T, C, x.itemsize), _winograd_columns(T, FN, x.itemsize)
    return (_scratch_array("winograd V", TILE_CELLS * C * TV, x.dtype),
            _scratch_array("winograd M", TILE_CELLS * FN * TM, x.dtype),
            _scratch_array("rows", FN * chunk * conv_h * conv_w, x.dtype),
            _scratch_array("padded", (chunk, C, 2 * tiles_h + 2, 2 * tiles_w + 2), x.dtype),
            _scratch_array("down", transform_scratch_size(chunk, tiles_h, tiles_w), x.dtype))


def forward_part(x, W, stride, pad, epilogue):
    """The conv of x (N, C, H, W) with weights W (FN, C, FH, FW) into the epilogue (kind, b,
    pool, out, argmax) of ``forward_epilogue``, as a function part(lo, hi) that writes the
    out and argmax of images lo..hi-1. Call it with BLAS pinned to one thread (the filter
    transform is a BLAS product: on OpenBLAS's threads it took 2-3x longer)."""
    x, Wm, geometry, chunk = _layer_operands(x, W, stride, pad)
    winograd = winograd4_operands = None
    kind, b, pool, out, argmax = epilogue
    if pool_tiles_or_none(epilogue, geometry[4], geometry[5]):
        pooled = kind in (OUTPUT_RELU_POOL, OUTPUT_RELU_POOL_VALUES)
        if pooled and np.isfinite(b).all() and out.flags.c_contiguous:
            winograd4_operands = _winograd4_operands(x, W, geometry, True)
        if winograd4_operands is None:
            winograd = _winograd_operands(x, W, geometry)
    direct = (None if winograd is not None or winograd4_operands is not None
              else _direct_operands(x, Wm, geometry, epilogue))
    background_compile.start(x.dtype, "winograd4" if winograd4_operands is not None else
                             _backward_loop_after(x, Wm, geometry, epilogue, winograd, direct))
    run = _chunk_loop(_forward_chunks)

    def part(lo, hi):
        if winograd4_operands is not None:
            U, images = winograd4_operands
            scratch = _winograd4_scratch(x, Wm.shape[0], geometry, images)
            if _chunk_loop(winograd4.forward_chunks)(
                    x, U, lo, hi, images, geometry[3], geometry[4] // 4, geometry[5] // 4,
                    scratch, b, out, argmax, kind == OUTPUT_RELU_POOL):
                return
        if winograd is not None:
            U, images = winograd
            scratch = _winograd_scratch(x, Wm.shape[0], geometry, images)
            if _chunk_loop(_winograd_forward_chunks)(x, U, lo, hi, images, geometry, scratch,
                                                     epilogue):
                return
        if direct is not None and _chunk_loop(_direct_forward_chunks)(
                x, direct, lo, hi, chunk, geometry, _direct_scratch(x, direct, geometry, chunk),
                epilogue):
            return
        run(x, Wm, lo, hi, chunk, geometry, _scratch_arrays(x, Wm, geometry, chunk), epilogue)
    return part


def _backward_loop_after(x, Wm, geometry, epilogue, winograd, direct):
    """The backward loop that a backward pass after this forward pass will likely run, for
    ``background_compile``: the direct one where the forward pass ran directly and the
    gradient fits, or behind a pool the gathering one (unless the layer needs an input
    gradient, which the forward pass cannot tell: that backward pass then compiles its loop
    itself)."""
    if winograd is not None:
        return "winograd"
    if direct is not None:  # whose pool, if any, tiles the output: the rows are split
        pooled = epilogue[0] in (OUTPUT_RELU_POOL, OUTPUT_RELU_POOL_VALUES)
        if _direct_gradient(x, Wm, geometry, pooled):
            return "gather" if gathers(pooled, geometry[1]) else "direct"
    return "im2col"


def forward_pipeline(x, W, stride, pad, epilogue):
    """Runs ``forward_part`` over the whole batch; out and argmax are written."""
    with single_threaded_blas():
        images_parallel(forward_part(x, W, stride, pad, epilogue), x.shape[0])


def backward_part(x, W, stride, pad, need_dx, prologue):
    """(part, finish, dx) for the gradients of the conv from the output gradient that the
    prologue (kind, pool, dout, out, argmax) of ``backward_prologue`` gives: part(lo, hi)
    writes the input gradient of images lo..hi-1 into dx (unless not need_dx) and returns
    their share of the weight and bias gradients; finish(shares, in part order) gives (dx or
    None, dW, db). Call both with BLAS pinned to one thread (the filter transforms)."""
    x, Wm, geometry, chunk = _layer_operands(x, W, stride, pad)
    dx = recycle.empty_like(x) if need_dx else np.empty((0,) + x.shape[1:], dtype=x.dtype)
    kind, pool, dout, out, argmax = prologue
    winograd4_operands = None
    if (kind == GRADIENT_RELU_POOL and _windows_are_tiles(pool, *geometry[4:])
            and dout.flags.c_contiguous and out.flags.c_contiguous
            and argmax.flags.c_contiguous):
        winograd4_operands = _winograd4_operands(x, W, geometry, True)
    winograd = None if winograd4_operands is not None else _winograd_operands(x, W, geometry)
    direct = (winograd is None and winograd4_operands is None and not need_dx
              and _direct_gradient(x, Wm, geometry, kind == GRADIENT_RELU_POOL  # rows split
                                   and _windows_are_tiles(pool, *geometry[4:])))
    gather = direct and gathers(kind == GRADIENT_RELU_POOL, geometry[1])
    background_compile.finish(x.dtype, "winograd4" if winograd4_operands is not None else
                              "winograd" if winograd is not None else
                              "gather" if gather else "direct" if direct else "im2col")
    run = _chunk_loop(_backward_chunks)

    def part(lo, hi):
        """(gradient, db, which): dW (FN, K) ("dW"), or dU by Winograd F(2x2, 3x3) ("dU")
        or F(4x4, 3x3) ("dU4")."""
        db = np.zeros(Wm.shape[0])
        if direct:
            dW = np.zeros(Wm.shape, dtype=x.dtype)
            if gather and _chunk_loop(_gathered_backward_chunks)(
                    x, lo, hi, chunk, geometry, _gather_scratch(x, Wm, geometry), prologue,
                    dW, db):
                return dW, db, "dW"
            dW[:], db[:] = 0, 0  # an image that is not finite: the dense sum, from the start
            _chunk_loop(_direct_backward_chunks)(
                x, lo, hi, chunk, geometry, _direct_gradient_scratch(x, Wm, geometry, chunk),
                prologue, dW, db)
            return dW, db, "dW"
        if winograd4_operands is not None:
            U, images = winograd4_operands
            dU = np.zeros(U.shape, dtype=x.dtype)
            scratch = _winograd4_scratch(x, Wm.shape[0], geometry, images)
            # finite gradients can overflow in dU's larger transforms where im2col's do not
            if _chunk_loop(winograd4.backward_chunks)(
                    x, U, lo, hi, images, geometry[3], geometry[4] // 4, geometry[5] // 4,
                    scratch, dout, out, argmax, dU, db, dx) and np.isfinite(dU).all():
                return dU, db, "dU4"
            db[:] = 0
        elif winograd is not None:
            U, images = winograd
            dU = np.zeros(U.shape, dtype=x.dtype)
            scratch = _winograd_scratch(x, Wm.shape[0], geometry, images)
            if _chunk_loop(_winograd_backward_chunks)(x, U, lo, hi, images, geometry, scratch,
                                                      prologue, dU, db, dx):
                return dU, db, "dU"
            db[:] = 0
        dW = np.zeros(Wm.shape, dtype=x.dtype)
        run(x, Wm, lo, hi, chunk, geometry, _scratch_arrays(x, Wm, geometry, chunk),
            prologue, dW, db, dx)
        return dW, db, "dW"

    def finish(shares):
        # summed in part order, whichever way each part ran: no result depends on the threads
        sums = {"dW": None, "dU": None, "dU4": None}
        db = None
        for gradient, part_db, which in shares:
            sums[which] = gradient if sums[which] is None else sums[which] + gradient
            db = part_db if db is None else db + part_db
        dW = sums["dW"]
        for which, to_dW in (("dU", filter_gradient), ("dU4", winograd4.filter_gradient)):
            if sums[which] is not None:
                from_dU = to_dW(sums[which]).reshape(Wm.shape)
                dW = from_dU if dW is None else dW + from_dU
        return (dx if need_dx else None), dW.reshape(W.shape), db.astype(x.dtype)

    return part, finish, dx


def backward_pipeline(x, W, stride, pad, need_dx, prologue):
    """(dx or None, dW, db): ``backward_part`` run over the whole batch."""
    with single_threaded_blas():
        part, finish, _ = backward_part(x, W, stride, pad, need_dx, prologue)
        return finish(images_parallel(part, x.shape[0]))


def images_parallel(kernel, N):
    """[kernel(lo, hi) for each fixed part of the batch], the parts run at once."""
    return run_parts([lambda lo=lo, hi=hi: kernel(lo, hi) for lo, hi in pieces(N)])
