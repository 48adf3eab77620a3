"""Winograd F(4x4, 3x3) for float32 3x3 stride-1 convolutions under a 2x2 stride-2 pool.

F(2x2, 3x3) (``winograd``) transforms 4x4 input tiles stepping by 2: 16 values of V and of
M per 4 outputs. F(4x4, 3x3) transforms 6x6 tiles stepping by 4: 36 per 16 outputs, so
V, M and the 36 products are 0.56x as large, and each tile holds four whole pool windows.
Its transforms multiply by up to 8 and divide by 24, so its float32 outputs round about 10x
more (a relative error of 5e-6 against 2e-7 of the largest output at 64 channels): it is
taken only in float32 (fast mode), where the tests' tolerance is 2e-5, never in float64,
which keeps the book's numbers.

Layout, per chunk of `count` images whose conv output is 4*th x 4*tw:
- tile (ty, tx) of image n is column q = ty*L + n*tw + tx of V (36, C, >= T + 16) and M (36,
  FN, ...), L = count*tw, T = th*L: the tiles of one tile row of every image lie side by
  side, so every pass runs along rows of L or T tiles, 16 at a time in explicit vectors
  (``simd``). Left to LLVM, loops of 6 loads and 6 stores kept their overlap checks and ran
  4.4x slower (0.18 against 0.041 ns a value in L1).
- the padded images go to ``padded`` row by row, rows (y, n) end to end with 4*tw values
  each, the two columns past those in ``edge``; tile (y, n, tx)'s six columns are then
  ``padded[4s:4s + 6]``, s its index among the rows' tiles, except for the last tile of a
  row, whose last two are in ``edge`` (put right afterwards, by the difference: B^T is
  linear).
- ``rows`` (6, 16 + Hp*Lp + 16): B^T along the tiles' columns for each padded row y, at 16 +
  y*Lp, Lp > L a multiple of 16, so that vectors past L fall into a row's own margin.

The kernels here are unchecked: the pipeline gives them arrays of the sizes
``scratch_sizes`` says. Their twin is the convolution itself (``reference.conv_relu_pool_*``), and
``fastconv.kernels.reference.winograd4`` has the transforms alone.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .blas import gemm
from .compile_options import HELPER_INLINE
from .epilogues import _relu_vector
from .simd import (any_nonzero, evens, fma, interleave_high, interleave_low,
                   ints_as_float32, ints_as_float32_8, load, load8, odds, splat, store,
                   store8, store_as_int, where_ge, where_le, where_ne)
from .winograd import _add_passing_gradients

__all__ = ["CELLS", "fits", "filter_transform", "filter_gradient", "scratch_sizes"]

CELLS = 36
LANES = 16  # float32 lanes of a 512-bit vector

# The transforms' matrices B^T (6x6), G (6x3) and A^T (4x6), at the points 0, 1, -1, 2, -2
# and infinity, are in the twin (``reference.winograd4``); here each is spelt out in fmas.


# The narrowest output taken. Forward + backward of DeepConvNet's pooled blocks against
# F(2x2, 3x3), 100 images, 2 threads, alternating in one process: 16->16 at 28x28 0.77x the
# time, 32->32 at 16x16 0.77x, 64->64 at 8x8 0.95x (two tiles a row: the copies between the
# pooled planes and the tiles' rows, four values each, cost about what the products save)
MIN_OUTPUT_WIDTH = 8


def fits(dtype, pooled_by_tiles, conv_h, conv_w):
    """Whether a layer runs by F(4x4, 3x3): float32, a 2x2 stride-2 pool whose windows tile
    the output, and an output of whole 4x4 tiles, MIN_OUTPUT_WIDTH wide or more."""
    return (np.dtype(dtype) == np.float32 and pooled_by_tiles and conv_h % 4 == 0
            and conv_w % 4 == 0 and conv_h > 0 and conv_w >= MIN_OUTPUT_WIDTH)


@njit(nogil=True, cache=True, inline="always")
def _g_of(a, b, c, k):
    """G (a, b, c): a/4, -(a + b + c)/6, -(a - b + c)/6, a/24 + b/12 + c/6, a/24 - b/12 +
    c/6, c."""
    zero, one, minus_one, quarter, minus_sixth, sixth, twelfth, minus_twelfth, tf = k
    ac = fma(a, one, c)
    outer = fma(a, tf, fma(c, sixth, zero))
    return (fma(a, quarter, zero), fma(fma(b, one, ac), minus_sixth, zero),
            fma(b, sixth, fma(ac, minus_sixth, zero)), fma(b, twelfth, outer),
            fma(b, minus_twelfth, outer), c)


@njit(nogil=True, cache=True, inline="always")
def _g_transpose_of(v0, v1, v2, v3, v4, v5, k):
    """G^T (v0..v5), the adjoint of ``_g_of``: v0/4 - (v1 + v2)/6 + (v3 + v4)/24,
    (v2 - v1)/6 + (v3 - v4)/12, -(v1 + v2)/6 + (v3 + v4)/6 + v5."""
    zero, one, minus_one, quarter, minus_sixth, sixth, twelfth, minus_twelfth, tf = k
    s12 = fma(v1, one, v2)
    s34 = fma(v3, one, v4)
    return (fma(s34, tf, fma(s12, minus_sixth, fma(v0, quarter, zero))),
            fma(fma(v4, minus_one, v3), twelfth, fma(fma(v1, minus_one, v2), sixth, zero)),
            fma(s34, sixth, fma(s12, minus_sixth, v5)))


@njit(nogil=True, cache=True, inline="always")
def _g_constants():
    f = np.float32
    return (splat(f(0)), splat(f(1)), splat(f(-1)), splat(f(0.25)), splat(f(-1 / 6)),
            splat(f(1 / 6)), splat(f(1 / 12)), splat(f(-1 / 12)), splat(f(1 / 24)))


@njit(nogil=True, cache=True)
def _filter_transform_into(W9, U, block):
    """U[c, i] (36 cells) = G g G^T for each filter g = W9[i] (9 taps), 16 filters at a
    time: block (9, 16) takes their taps, tap by tap."""
    k = _g_constants()
    n = W9.shape[0]
    for i0 in range(0, n, LANES):
        start = min(i0, n - LANES)  # the last 16 end at the last filter
        for j in range(LANES):
            for t in range(9):
                block[t, j] = W9[start + j, t]
        # G along each filter row, then along the columns of that
        r0 = _g_of(load(block[0], 0), load(block[1], 0), load(block[2], 0), k)
        r1 = _g_of(load(block[3], 0), load(block[4], 0), load(block[5], 0), k)
        r2 = _g_of(load(block[6], 0), load(block[7], 0), load(block[8], 0), k)
        for b in range(6):
            column = _g_of(r0[b], r1[b], r2[b], k)
            for a in range(6):
                store(U[6 * a + b], start, column[a])


@njit(nogil=True, cache=True, inline="always")
def _cell_row_adjoint(dU, a, start, k):
    """G^T along row a of the 6x6 cells of 16 filters' dU, from filter start on."""
    return _g_transpose_of(load(dU[6 * a], start), load(dU[6 * a + 1], start),
                           load(dU[6 * a + 2], start), load(dU[6 * a + 3], start),
                           load(dU[6 * a + 4], start), load(dU[6 * a + 5], start), k)


@njit(nogil=True, cache=True)
def _filter_gradient_into(dU, dW9, block):
    """dW9[i] (9 taps) = G^T dU[:, i] G, the adjoint of ``_filter_transform_into``, 16
    filters at a time through block (9, 16)."""
    k = _g_constants()
    n = dU.shape[1]
    for i0 in range(0, n, LANES):
        start = min(i0, n - LANES)
        r0, r1, r2 = _cell_row_adjoint(dU, 0, start, k)
        s0, s1, s2 = _cell_row_adjoint(dU, 1, start, k)
        t0, t1, t2 = _cell_row_adjoint(dU, 2, start, k)
        u0, u1, u2 = _cell_row_adjoint(dU, 3, start, k)
        v0, v1, v2 = _cell_row_adjoint(dU, 4, start, k)
        w0, w1, w2 = _cell_row_adjoint(dU, 5, start, k)
        # then G^T down each of the three columns: taps (0, m), (1, m), (2, m)
        for m, column in enumerate((_g_transpose_of(r0, s0, t0, u0, v0, w0, k),
                                    _g_transpose_of(r1, s1, t1, u1, v1, w1, k),
                                    _g_transpose_of(r2, s2, t2, u2, v2, w2, k))):
            store(block[m], 0, column[0])
            store(block[3 + m], 0, column[1])
            store(block[6 + m], 0, column[2])
        for j in range(LANES):
            for t in range(9):
                dW9[start + j, t] = block[t, j]


def filter_transform(W):
    """U (36, FN, C) = G g G^T for every filter g of W (FN, C, 3, 3), in float32."""
    FN, C = W.shape[:2]
    W9 = np.ascontiguousarray(W, dtype=np.float32).reshape(FN * C, 9)
    if FN * C < LANES:  # fewer filters than a vector: pad with zeros
        W9 = np.concatenate([W9, np.zeros((LANES - FN * C, 9), np.float32)])
    U = np.empty((CELLS, W9.shape[0]), np.float32)
    _filter_transform_into(W9, U, np.empty((9, LANES), np.float32))
    return np.ascontiguousarray(U[:, :FN * C]).reshape(CELLS, FN, C)


def filter_gradient(dU):
    """dW (FN*C, 9) = G^T dU G for each column of dU (36, FN, C), in float32."""
    FN, C = dU.shape[1:]
    cells = np.ascontiguousarray(dU, dtype=np.float32).reshape(CELLS, FN * C)
    if FN * C < LANES:
        cells = np.concatenate([cells, np.zeros((CELLS, LANES - FN * C), np.float32)], axis=1)
    dW = np.empty((cells.shape[1], 9), np.float32)
    _filter_gradient_into(cells, dW, np.empty((9, LANES), np.float32))
    return dW[:FN * C]


def scratch_sizes(count, C, FN, conv_h, conv_w):
    """Sizes of (V, M, padded, edge, rows, cells, windows) for a chunk of count images: V
    and M as (36, rows, columns) with their column count, the rest as 1-D lengths or
    shapes."""
    th, tw = conv_h // 4, conv_w // 4
    T = count * th * tw
    Hp = 4 * th + 2
    Lp = _row_pitch(count * tw)
    return ((CELLS, C, _columns(T, C)), (CELLS, FN, _columns(T, FN)),
            Hp * count * 4 * tw + 12 * LANES, (2, Hp * count), (6, Hp * Lp + 2 * LANES),
            (40, T + LANES), (6, 2 * T + 2 * LANES))


@njit(cache=True, inline=HELPER_INLINE)
def _row_pitch(L):
    """Lp: L rounded up past a multiple of 16, so that a row keeps at least one lane of
    margin."""
    return (L // LANES + 1) * LANES


def _columns(T, rows):
    """Row length of V and M: T and a vector's margin, then, as ``pipeline._winograd_columns``
    does, moved off multiples of 4 KB between cells."""
    columns = T + LANES
    for _ in range(64):
        offset = (rows * columns * 4) % 4096
        if 512 <= offset <= 3584:
            break
        columns += 1
    return columns


@njit(nogil=True, cache=True, inline="always")
def _constants():
    """The coefficients of B and A as vectors (1, -1, 2, -2, 4, -4, -5, 8): vectors have no
    arithmetic operators, so every sum and product here is an fma."""
    f = np.float32
    return (splat(f(1)), splat(f(-1)), splat(f(2)), splat(f(-2)), splat(f(4)), splat(f(-4)),
            splat(f(-5)), splat(f(8)))


@njit(nogil=True, cache=True, inline="always")
def _b_transpose(d0, d1, d2, d3, d4, d5, k):
    """B^T (d0..d5): 4d0 - 5d2 + d4, (d3 + d4) - 4(d1 + d2), (d4 - d3) + 4(d1 - d2),
    (d4 - d2) + 2(d3 - d1), (d4 - d2) - 2(d3 - d1), 4d1 - 5d3 + d5."""
    one, minus_one, two, minus_two, four, minus_four, minus_five = k[:7]
    a = fma(d2, minus_one, d4)
    b = fma(d1, minus_one, d3)
    return (fma(d2, minus_five, fma(d0, four, d4)),
            fma(fma(d1, one, d2), minus_four, fma(d3, one, d4)),
            fma(fma(d2, minus_one, d1), four, fma(d3, minus_one, d4)),
            fma(b, two, a), fma(b, minus_two, a), fma(d3, minus_five, fma(d1, four, d5)))


@njit(nogil=True, cache=True, inline="always")
def _b(v0, v1, v2, v3, v4, v5, k):
    """B (v0..v5), the adjoint of ``_b_transpose``: 4v0; 4(v2 - v1) + 2(v4 - v3) + 4v5;
    -5v0 - 4(v1 + v2) - (v3 + v4); (v1 - v2) + 2(v3 - v4) - 5v5; v0 + v1 + v2 + v3 + v4;
    v5."""
    one, minus_one, two, minus_two, four, minus_four, minus_five = k[:7]
    s12 = fma(v1, one, v2)
    d12 = fma(v2, minus_one, v1)
    s34 = fma(v3, one, v4)
    d34 = fma(v4, minus_one, v3)
    return (fma(v0, four, splat(np.float32(0))),
            fma(v5, four, fma(d34, minus_two, fma(d12, minus_four, splat(np.float32(0))))),
            fma(v0, minus_five, fma(s12, minus_four, fma(s34, minus_one,
                                                          splat(np.float32(0))))),
            fma(v5, minus_five, fma(d34, two, d12)),
            fma(s34, one, fma(s12, one, v0)), v5)


@njit(nogil=True, cache=True, inline="always")
def _a_transpose(m0, m1, m2, m3, m4, m5, k):
    """A^T (m0..m5): m0 + (m1 + m2) + (m3 + m4), (m1 - m2) + 2(m3 - m4),
    (m1 + m2) + 4(m3 + m4), (m1 - m2) + 8(m3 - m4) + m5."""
    one, minus_one, two, four, eight = k[0], k[1], k[2], k[4], k[7]
    s = fma(m1, one, m2)
    t = fma(m3, one, m4)
    u = fma(m2, minus_one, m1)
    v = fma(m4, minus_one, m3)
    return fma(t, one, fma(s, one, m0)), fma(v, two, u), fma(t, four, s), fma(v, eight,
                                                                            fma(u, one, m5))


@njit(nogil=True, cache=True, inline="always")
def _a(y0, y1, y2, y3, k):
    """A (y0..y3), the adjoint of ``_a_transpose``: y0, y0 + y1 + y2 + y3,
    y0 - y1 + y2 - y3, y0 + 2y1 + 4y2 + 8y3, y0 - 2y1 + 4y2 - 8y3, y3."""
    one, minus_one, two, minus_two, four = k[0], k[1], k[2], k[3], k[4]
    even = fma(y2, one, y0)
    odd = fma(y3, one, y1)
    even4 = fma(y2, four, y0)
    odd2 = fma(y3, four, y1)  # y1 + 4y3, times 2 below
    return (y0, fma(odd, one, even), fma(odd, minus_one, even), fma(odd2, two, even4),
            fma(odd2, minus_two, even4), y3)


def _read16(src, at):
    """src[at:at + 16] as a float32 vector, an int64 src converted."""
    return src[at:at + LANES].astype(np.float32)


def _read8(src, at):
    """src[at:at + 8] as a float32 vector of ``load8``'s type, an int64 src converted."""
    return src[at:at + 8].astype(np.float32)


def _write(dst, to, vector):
    """dst[to:to + lanes] = vector, truncated where dst is int64."""
    dst[to:to + len(vector)] = vector


@overload(_read16)
def _read16_typed(src, at):
    if src.dtype == types.int64:
        return lambda src, at: ints_as_float32(src, at)
    return lambda src, at: load(src, at)


@overload(_read8)
def _read8_typed(src, at):
    if src.dtype == types.int64:
        return lambda src, at: ints_as_float32_8(src, at)
    return lambda src, at: load8(src, at)


@overload(_write)
def _write_typed(dst, to, vector):
    if dst.dtype == types.int64:
        return lambda dst, to, vector: store_as_int(dst, to, vector)
    if vector.lanes == LANES:
        return lambda dst, to, vector: store(dst, to, vector)
    return lambda dst, to, vector: store8(dst, to, vector)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _copy_run(src, at, dst, to, length):
    """dst[to:to + length] = src[at:at + length] (float32 or, either side, int64 of small
    whole numbers), by vectors, the last one ending at the run's end over part of the one
    before: nothing is read or written outside the run."""
    if length >= LANES:
        for i in range(0, length - LANES, LANES):
            _write(dst, to + i, _read16(src, at + i))
        i = length - LANES
        _write(dst, to + i, _read16(src, at + i))
    elif length >= 8:
        _write(dst, to, _read8(src, at))
        i = length - 8
        _write(dst, to + i, _read8(src, at + i))
    else:
        for i in range(length):
            dst[to + i] = src[at + i]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pad_rows(x, n0, count, c, pad, th, tw, padded, edge):
    """Channel c of images n0.. of x, zero-padded, into padded (rows (y, n) of 4*tw) and
    edge (the two columns after each row); True if an edge value is not finite (the rows'
    values are checked by the transform)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    flat = x.reshape(-1)
    pitch = 4 * tw
    inner = min(W, pitch - pad)
    zero = np.float32(0)
    bad = False
    for y in range(4 * th + 2):
        iy = y - pad
        for n in range(count):
            r = y * count + n
            start = r * pitch
            if 0 <= iy < H:
                at = ((n0 + n) * C + c) * H * W + iy * W
                for ix in range(pad):
                    padded[start + ix] = zero
                _copy_run(flat, at, padded, start + pad, inner)
                for ix in range(pad + inner, pitch):
                    padded[start + ix] = zero
                for m in range(2):
                    ix = pitch + m - pad
                    v = flat[at + ix] if 0 <= ix < W else zero
                    bad |= (v - v) != 0
                    edge[m, r] = v
            else:
                for ix in range(pitch):
                    padded[start + ix] = zero
                edge[0, r] = zero
                edge[1, r] = zero
    return bad


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def input_transform(x, n0, count, pad, th, tw, V, padded, edge, rows):
    """V[6i + j, c, q] = (B^T d B)[i, j] of every tile d of images n0..n0+count-1 of x (N,
    C, 4*th + 2 - 2*pad, 4*tw + 2 - 2*pad), padded by pad. True when the images hold a value
    that is not finite (V is then not to be used)."""
    C = x.shape[1]
    pitch = 4 * tw
    L = count * tw
    Lp = _row_pitch(L)
    Hp = 4 * th + 2
    k = _constants()
    one = k[0]
    seen = splat(np.float32(0))
    bad = False
    padded[Hp * count * pitch:] = 0  # read past the last tile: kept finite
    h0, h1, h2 = rows[0], rows[1], rows[2]
    h3, h4, h5 = rows[3], rows[4], rows[5]
    for c in range(C):
        bad |= _pad_rows(x, n0, count, c, pad, th, tw, padded, edge)
        # B^T along each tile's six columns, 16 tiles at a time: four vectors of 64 values
        # hold the tiles' columns 0-3 (two deinterleaves), four more from 4 on their 4-5
        for y in range(Hp):
            for p in range(0, L, LANES):
                at = 4 * (y * L + p)
                a0, a1 = load(padded, at), load(padded, at + 16)
                a2, a3 = load(padded, at + 32), load(padded, at + 48)
                b0, b1 = load(padded, at + 4), load(padded, at + 20)
                b2, b3 = load(padded, at + 36), load(padded, at + 52)
                e01, o01, e23, o23 = evens(a0, a1), odds(a0, a1), evens(a2, a3), odds(a2, a3)
                d0, d2 = evens(e01, e23), odds(e01, e23)
                d1, d3 = evens(o01, o23), odds(o01, o23)
                d4 = evens(evens(b0, b1), evens(b2, b3))
                d5 = evens(odds(b0, b1), odds(b2, b3))
                # inf - inf and NaN - NaN are NaN: one compare for the four
                total = fma(d0, one, fma(d1, one, fma(d2, one, d3)))
                seen = where_ne(fma(total, k[1], total), splat(np.float32(0)), one, seen)
                o0, o1, o2, o3, o4, o5 = _b_transpose(d0, d1, d2, d3, d4, d5, k)
                at = LANES + y * Lp + p
                store(h0, at, o0)
                store(h1, at, o1)
                store(h2, at, o2)
                store(h3, at, o3)
                store(h4, at, o4)
                store(h5, at, o5)
        # each row's last tile took the next row's first two values for its last two
        # columns: B^T's columns for d4 are (1, 1, 1, 1, 1, 0), for d5 (0, 0, 0, 0, 0, 1)
        for y in range(Hp):
            for n in range(count):
                r = y * count + n
                last = LANES + y * Lp + n * tw + tw - 1
                d4 = edge[0, r] - padded[(r + 1) * pitch]
                d5 = edge[1, r] - padded[(r + 1) * pitch + 1]
                h0[last] += d4
                h1[last] += d4
                h2[last] += d4
                h3[last] += d4
                h4[last] += d4
                h5[last] += d5
        # B^T down each tile's six rows: tile row ty reads padded rows 4ty..4ty+5
        for ty in range(th):
            for j in range(6):
                hj = rows[j]
                v0, v1, v2 = V[j, c], V[6 + j, c], V[12 + j, c]
                v3, v4, v5 = V[18 + j, c], V[24 + j, c], V[30 + j, c]
                for p in range(0, L, LANES):
                    at = LANES + 4 * ty * Lp + p
                    o0, o1, o2, o3, o4, o5 = _b_transpose(
                        load(hj, at), load(hj, at + Lp), load(hj, at + 2 * Lp),
                        load(hj, at + 3 * Lp), load(hj, at + 4 * Lp), load(hj, at + 5 * Lp),
                        k)
                    q = ty * L + p
                    store(v0, q, o0)
                    store(v1, q, o1)
                    store(v2, q, o2)
                    store(v3, q, o3)
                    store(v4, q, o4)
                    store(v5, q, o5)
    return bad or any_nonzero(seen)


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def pooled_output_tiles(M, n0, count, th, tw, b, out, argmax, with_argmax, cells, windows):
    """out[n0 + n, f, 2ty + wy, 2tx + wx] = the 2x2 stride-2 max pool of relu(conv + b)
    over window (wy, wx) of tile (ty, tx), from the tiles' products M (36, FN, ...); argmax
    too when with_argmax: the values and indices of ``pool._relu_pool_window``. False, with
    the chunk unfinished, when an output is NaN or +inf (the caller then runs im2col).
    cells (24,
    >= T + 16) and windows (4, >= 2T + 32) are scratch; out and argmax C-contiguous."""
    FN = out.shape[1]
    L = count * tw
    T = th * L
    plane = 4 * th * tw
    flat_out, flat_argmax = out.reshape(-1), argmax.reshape(-1)
    k = _constants()
    zero = splat(np.float32(0))
    seen = zero
    for f in range(FN):
        bias = splat(b[f])
        for c in range(CELLS):  # read by the last vector: kept finite
            store(M[c, f], T, zero)
        # A^T down each column j of the 6x6 products: cells[6a + j], a = 0..3 (in one pass
        # with the one along the rows, 36 loads a vector, it took 1.2-2x as long)
        for j in range(6):
            m0, m1, m2 = M[j, f], M[6 + j, f], M[12 + j, f]
            m3, m4, m5 = M[18 + j, f], M[24 + j, f], M[30 + j, f]
            r0, r1, r2, r3 = cells[j], cells[6 + j], cells[12 + j], cells[18 + j]
            for q in range(0, T, LANES):
                y0, y1, y2, y3 = _a_transpose(load(m0, q), load(m1, q), load(m2, q),
                                              load(m3, q), load(m4, q), load(m5, q), k)
                store(r0, q, y0)
                store(r1, q, y1)
                store(r2, q, y2)
                store(r3, q, y3)
        # then along rows 2wy and 2wy + 1 of the 4x4 outputs, and their two windows: the
        # pooled values of window row wy go to windows[wy] and their indices to
        # windows[2 + wy], tile after tile, a tile's two windows side by side as they lie
        # in the pooled rows
        for wy in range(2):
            top, low = 12 * wy, 12 * wy + 6
            values, indices = windows[wy], windows[2 + wy]
            for q in range(0, T, LANES):
                t0, t1, t2, t3 = _a_transpose(
                    load(cells[top], q), load(cells[top + 1], q), load(cells[top + 2], q),
                    load(cells[top + 3], q), load(cells[top + 4], q), load(cells[top + 5], q),
                    k)
                u0, u1, u2, u3 = _a_transpose(
                    load(cells[low], q), load(cells[low + 1], q), load(cells[low + 2], q),
                    load(cells[low + 3], q), load(cells[low + 4], q), load(cells[low + 5], q),
                    k)
                best0, index0, seen = _pool_window(t0, t1, u0, u1, bias, seen, k)
                best1, index1, seen = _pool_window(t2, t3, u2, u3, bias, seen, k)
                store(values, 2 * q, interleave_low(best0, best1))
                store(values, 2 * q + LANES, interleave_high(best0, best1))
                store(indices, 2 * q, interleave_low(index0, index1))
                store(indices, 2 * q + LANES, interleave_high(index0, index1))
        # into the planes: the windows of tile row ty of image n are pooled rows 2ty, 2ty+1
        for ty in range(th):
            for n in range(count):
                q0 = ty * L + n * tw
                for wy in range(2):
                    to = ((n0 + n) * FN + f) * plane + (2 * ty + wy) * 2 * tw
                    _copy_run(windows[wy], 2 * q0, flat_out, to, 2 * tw)
                    if with_argmax:
                        _copy_run(windows[2 + wy], 2 * q0, flat_argmax, to, 2 * tw)
    return not any_nonzero(seen)


@njit(nogil=True, cache=True, inline="always")
def _pool_window(top_left, top_right, bottom_left, bottom_right, bias, seen, k):
    """(maximum, index of its first cell in row order, seen marked where a cell is NaN or
    +inf) of relu(cell + bias) over 2x2 windows given by their cells:
    ``pool._relu_pool_window`` lane by lane. An infinity here can come from finite inputs:
    the transforms multiply by up to 25 and 64 where im2col sums the products themselves
    (a -inf becomes the 0 that the true, hugely negative value gives too)."""
    zero, one, two, minus_one = splat(np.float32(0)), k[0], k[2], k[1]
    top_left = _relu_vector(top_left, bias, one, zero)
    top_right = _relu_vector(top_right, bias, one, zero)
    bottom_left = _relu_vector(bottom_left, bias, one, zero)
    bottom_right = _relu_vector(bottom_right, bias, one, zero)
    # v - v is NaN where v is NaN or infinite, else 0 (an unordered compare sees the NaN)
    seen = where_ne(fma(top_left, minus_one, top_left), zero, one, seen)
    seen = where_ne(fma(top_right, minus_one, top_right), zero, one, seen)
    seen = where_ne(fma(bottom_left, minus_one, bottom_left), zero, one, seen)
    seen = where_ne(fma(bottom_right, minus_one, bottom_right), zero, one, seen)
    left = where_ge(top_left, bottom_left, top_left, bottom_left)
    right = where_ge(top_right, bottom_right, top_right, bottom_right)
    best = where_ge(left, right, left, right)
    inner = where_ne(left, best, two, one)
    outer = fma(where_ne(top_right, best, inner, zero), one, one)
    return best, where_ne(top_left, best, outer, zero), seen


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def pooled_gradient_tiles(dout, out, argmax, n0, count, th, tw, dM, db, cells, windows):
    """dM (36, FN, ...) = A dY A^T for every tile of images n0..n0+count-1 of a conv ->
    ReLU -> 2x2 stride-2 pool: each window's gradient (dout where the pooled output is not
    0 and the window index names a cell, else 0) at its index, 0 elsewhere. Adds the
    windows' gradients to db (FN, float64). True when a gradient that passes is not finite.
    cells (40, >= T + 16) and windows (6, >= 2T + 32) are scratch; the arrays C-contiguous."""
    FN = dout.shape[1]
    L = count * tw
    T = th * L
    plane = 4 * th * tw
    flat_dout, flat_out, flat_argmax = dout.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    k = _constants()
    zero, one = splat(np.float32(0)), k[0]
    three = fma(k[2], one, one)
    dtype_zero = np.float32(0)
    bad = False
    for f in range(FN):
        for n in range(count):
            at = ((n0 + n) * FN + f) * plane
            bad |= _add_passing_gradients(flat_dout[at:at + plane], flat_out[at:at + plane],
                                          flat_argmax[at:at + plane], dtype_zero, db, f)
        # each pooled row's gradients, outputs and indices into windows, tile after tile
        # (the inverse of the forward pass's copy into the planes)
        for ty in range(th):
            for n in range(count):
                q0 = ty * L + n * tw
                for wy in range(2):
                    at = ((n0 + n) * FN + f) * plane + (2 * ty + wy) * 2 * tw
                    _copy_run(flat_dout, at, windows[wy], 2 * q0, 2 * tw)
                    _copy_run(flat_out, at, windows[2 + wy], 2 * q0, 2 * tw)
                    _copy_run(flat_argmax, at, windows[4 + wy], 2 * q0, 2 * tw)
        # each window's gradient at its index in the tile's 4x4 gradient dY: cells[4a + b]
        for wy in range(2):
            grads, kept, indices = windows[wy], windows[2 + wy], windows[4 + wy]
            for q in range(0, T, LANES):
                g, g_next = load(grads, 2 * q), load(grads, 2 * q + LANES)
                o, o_next = load(kept, 2 * q), load(kept, 2 * q + LANES)
                i, i_next = load(indices, 2 * q), load(indices, 2 * q + LANES)
                for wx in range(2):
                    if wx == 0:
                        gw, ow, iw = evens(g, g_next), evens(o, o_next), evens(i, i_next)
                    else:
                        gw, ow, iw = odds(g, g_next), odds(o, o_next), odds(i, i_next)
                    # passes where the output is not 0 (NaN passes) and the index is 0..3
                    gw = where_ne(ow, zero, gw, zero)
                    gw = where_ge(iw, zero, gw, zero)
                    gw = where_le(iw, three, gw, zero)
                    at = 8 * wy + 2 * wx
                    store(cells[at], q, where_ne(iw, zero, zero, gw))
                    store(cells[at + 1], q, where_ne(iw, one, zero, gw))
                    store(cells[at + 4], q, where_ne(iw, fma(one, one, one), zero, gw))
                    store(cells[at + 5], q, where_ne(iw, three, zero, gw))
        # A down each column b of dY into cells[16 + 4i + b], then A along each row i of
        # that: dM[6i + j] = (A dY A^T)[i, j] (with the first pass into dM itself, the
        # two took 1.3x as long)
        for b in range(4):
            y0, y1, y2, y3 = cells[b], cells[4 + b], cells[8 + b], cells[12 + b]
            for q in range(0, T, LANES):
                z0, z1, z2, z3, z4, z5 = _a(load(y0, q), load(y1, q), load(y2, q),
                                            load(y3, q), k)
                store(cells[16 + b], q, z0)
                store(cells[20 + b], q, z1)
                store(cells[24 + b], q, z2)
                store(cells[28 + b], q, z3)
                store(cells[32 + b], q, z4)
                store(cells[36 + b], q, z5)
        for i in range(6):
            r0, r1, r2, r3 = cells[16 + 4 * i], cells[17 + 4 * i], cells[18 + 4 * i], cells[
                19 + 4 * i]
            d0, d1, d2 = dM[6 * i, f], dM[6 * i + 1, f], dM[6 * i + 2, f]
            d3, d4, d5 = dM[6 * i + 3, f], dM[6 * i + 4, f], dM[6 * i + 5, f]
            for q in range(0, T, LANES):
                z0, z1, z2, z3, z4, z5 = _a(load(r0, q), load(r1, q), load(r2, q),
                                            load(r3, q), k)
                store(d0, q, z0)
                store(d1, q, z1)
                store(d2, q, z2)
                store(d3, q, z3)
                store(d4, q, z4)
                store(d5, q, z5)
    return bad


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def input_transform_adjoint(dV, n0, count, pad, th, tw, dx, padded, edge, rows):
    """dx[n0 + n] (C, H, W) for n < count = the adjoint of ``input_transform`` applied to
    dV (36, C, ...): each pixel sums what the tiles it fed give back, in an order fixed by
    the shape; the gradient of the padding is dropped. True when a value of it is not
    finite: the transforms multiply by up to 100, so finite gradients can overflow where
    im2col's sums do not (the caller then runs im2col)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    flat_dx = dx.reshape(-1)
    pitch = 4 * tw
    L = count * tw
    Lp = _row_pitch(L)
    Hp = 4 * th + 2
    k = _constants()
    zero = splat(np.float32(0))
    seen = zero
    bad = False
    h0, h1, h2 = rows[0], rows[1], rows[2]
    h3, h4, h5 = rows[3], rows[4], rows[5]
    for c in range(C):
        # B down each tile's six rows, summed where tile rows overlap (rows 4ty, 4ty + 1
        # of tile row ty are rows 4, 5 of tile row ty - 1)
        for ty in range(th):
            for j in range(6):
                hj = rows[j]
                v0, v1, v2 = dV[j, c], dV[6 + j, c], dV[12 + j, c]
                v3, v4, v5 = dV[18 + j, c], dV[24 + j, c], dV[30 + j, c]
                for p in range(0, L, LANES):
                    q = ty * L + p
                    g0, g1, g2, g3, g4, g5 = _b(load(v0, q), load(v1, q), load(v2, q),
                                                load(v3, q), load(v4, q), load(v5, q), k)
                    at = LANES + 4 * ty * Lp + p
                    if ty > 0:
                        g0 = fma(load(hj, at), k[0], g0)
                        g1 = fma(load(hj, at + Lp), k[0], g1)
                    store(hj, at, g0)
                    store(hj, at + Lp, g1)
                    store(hj, at + 2 * Lp, g2)
                    store(hj, at + 3 * Lp, g3)
                    store(hj, at + 4 * Lp, g4)
                    store(hj, at + 5 * Lp, g5)
        # the margins read as the tile before each row's first: nothing
        for y in range(-1, Hp):
            for j in range(6):
                rows[j, LANES + y * Lp + L:LANES + (y + 1) * Lp] = 0
        # B along each tile's six columns, back into the padded rows: columns 0-3 of tile
        # s and, added, columns 4-5 of tile s - 1 (the same rule across rows (y, n), put
        # right below for each row's last tile)
        for y in range(Hp):
            for p in range(0, L, LANES):
                at = LANES + y * Lp + p
                c0, c1, c2, c3, _, _ = _b(load(h0, at), load(h1, at), load(h2, at),
                                          load(h3, at), load(h4, at), load(h5, at), k)
                before = at - 1
                c4 = fma(load(h4, before), k[0], fma(load(h3, before), k[0], fma(
                    load(h2, before), k[0], fma(load(h1, before), k[0], load(h0, before)))))
                c0 = fma(c4, k[0], c0)
                c1 = fma(load(h5, before), k[0], c1)
                # NaN where one of the four is NaN or infinite (lanes past L are 0 or
                # finite: the margins were zeroed, dV's columns past T are finite)
                total = fma(c0, k[0], fma(c1, k[0], fma(c2, k[0], c3)))
                seen = where_ne(fma(total, k[1], total), zero, k[0], seen)
                e02, o02 = interleave_low(c0, c2), interleave_high(c0, c2)
                e13, o13 = interleave_low(c1, c3), interleave_high(c1, c3)
                s = 4 * (y * L + p)
                store(padded, s, interleave_low(e02, e13))
                store(padded, s + 16, interleave_high(e02, e13))
                store(padded, s + 32, interleave_low(o02, o13))
                store(padded, s + 48, interleave_high(o02, o13))
        # each row's last tile gave its last two columns to the next row's first two;
        # they belong to the edge columns instead
        for y in range(Hp):
            for n in range(count):
                r = y * count + n
                last = LANES + y * Lp + n * tw + tw - 1
                d4 = h0[last] + h1[last] + h2[last] + h3[last] + h4[last]
                d5 = h5[last]
                edge[0, r] = d4
                edge[1, r] = d5
                bad |= ((d4 - d4) + (d5 - d5)) != 0
                if n < count - 1:
                    first = padded[(r + 1) * pitch] - d4
                    second = padded[(r + 1) * pitch + 1] - d5
                    bad |= ((first - first) + (second - second)) != 0
                    padded[(r + 1) * pitch] = first
                    padded[(r + 1) * pitch + 1] = second
        # the image's rows and columns, cropped from the padded ones
        inner = min(W, pitch - pad)
        for y in range(pad, min(Hp, pad + H)):
            iy = y - pad
            for n in range(count):
                r = y * count + n
                at = ((n0 + n) * C + c) * H * W + iy * W
                _copy_run(padded, r * pitch + pad, flat_dx, at, inner)
                for m in range(2):
                    ix = pitch + m - pad
                    if 0 <= ix < W:
                        flat_dx[at + ix] = edge[m, r]
    return bad or any_nonzero(seen)


@njit(nogil=True, cache=True)
def forward_chunks(x, U, lo, hi, chunk, pad, th, tw, scratch, b, out, argmax, with_argmax):
    """Images lo..hi-1 of a conv -> ReLU -> 2x2 stride-2 pool by F(4x4, 3x3), chunk images
    at a time, into out (and argmax when with_argmax). False as soon as an input value or an
    output is not finite: the part must then run by im2col, which rewrites all of it."""
    V, M, padded, edge, rows, cells, windows = scratch
    for n0 in range(lo, hi, chunk):
        count = min(chunk, hi - n0)
        T = count * th * tw
        if input_transform(x, n0, count, pad, th, tw, V, padded, edge, rows):
            return False
        for k in range(CELLS):
            gemm(U[k], False, V[k, :, :T], False, M[k, :, :T], 0)
        if not pooled_output_tiles(M, n0, count, th, tw, b, out, argmax, with_argmax, cells,
                                   windows):
            return False
    return True


@njit(nogil=True, cache=True)
def backward_chunks(x, U, lo, hi, chunk, pad, th, tw, scratch, dout, out, argmax, dU, db,
                    dx):
    """The gradients of images lo..hi-1 by F(4x4, 3x3): adds dM V^T to dU (36, FN, C) and
    the windows' gradients to db, and writes dx unless it is empty. False as soon as an
    input, gradient or input-gradient value is not finite, with dU, db and dx then to be
    recomputed (the caller checks dU, which it sums, itself)."""
    V, dM, padded, edge, rows, cells, windows = scratch
    for n0 in range(lo, hi, chunk):
        count = min(chunk, hi - n0)
        T = count * th * tw
        if input_transform(x, n0, count, pad, th, tw, V, padded, edge, rows):
            return False
        if pooled_gradient_tiles(dout, out, argmax, n0, count, th, tw, dM, db, cells,
                                 windows):
            return False
        for k in range(CELLS):
            gemm(dM[k, :, :T], False, V[k, :, :T], True, dU[k], 1)
        if dx.size:
            for k in range(CELLS):  # the chunk's dV reuses V
                gemm(U[k], True, dM[k, :, :T], False, V[k, :, :T], 0)
            if input_transform_adjoint(V, n0, count, pad, th, tw, dx, padded, edge, rows):
                return False
    return True
