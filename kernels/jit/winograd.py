"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 16 multiplies per 2x2 outputs, not 36.

For a 4x4 tile d of the padded input (tiles step by 2) and a 3x3 filter g, the 2x2 outputs
are ``A^T [(G g G^T) * (B^T d B)] A``. Over a chunk of images the elementwise product becomes
16 GEMMs, one per tile cell xi: ``M[xi] (FN, tiles) = U[xi] (FN, C) @ V[xi] (C, tiles)``,
with U = G g G^T the transformed filters and V = B^T d B the transformed input. The products
have 2.25x fewer multiply-adds than im2col's, and V is 4 values per input pixel against
im2col's 9. The backward pass is the adjoint of each step: ``dM = A dY A^T``, ``dU[xi] +=
dM[xi] @ V[xi]^T`` (then dW = G^T dU G) and ``dV[xi] = U[xi]^T @ dM[xi]``, which the adjoint
input transform sums back into the overlapping tiles.

The transforms mix up to 16 inputs, so a NaN or infinity reaches outputs whose 3x3 window
never saw it (NaN * 0 is NaN, inf - inf too). The transforms of the input and of the output
gradient report whether they met a value that is not finite, and the pipeline then runs that
part by im2col instead.

Where a 2x2 stride-2 pool follows an even-sized output, each pool window is a tile, and
``_pooled_output_tiles`` / ``_pooled_gradient_tiles`` go between the tiles and the pooled
arrays directly, without the conv output's rows.

The functions here work on one chunk of images; the transforms' NumPy twins are in
``fastconv.kernels.reference.winograd``.
"""
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .pool import _relu_pool_window, index_scratch

__all__ = ["TILE_CELLS", "tiles_hw", "filter_transform", "filter_gradient"]

TILE_CELLS = 16


@njit(cache=True, inline=HELPER_INLINE)
def tiles_hw(conv_h, conv_w):
    """(tiles_h, tiles_w): 2x2 output tiles covering a conv_h x conv_w output."""
    return (conv_h + 1) // 2, (conv_w + 1) // 2


# The filter transforms go through blocks of this many filters in float64 scratch, 16 rows
# (one per tile cell) of 1 KB: written straight into U, whose rows lie FN*C values apart
# (16 KB for 64 x 64 float32 filters), the 16 stores of each filter fell into the same L1
# sets, and the loop took 121 us for 64 x 64 filters against 23 us in blocks.
FILTER_BLOCK = 128


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _g_columns(a, b, c):
    """The 4 values of G @ (a, b, c)."""
    return a, 0.5 * (a + b + c), 0.5 * (a - b + c), c


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _g_adjoint(a, b, c, d):
    """The 3 values of G^T @ (a, b, c, d), the adjoint of ``_g_columns``."""
    return a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d


@njit(nogil=True, cache=True)
def _filter_transform_into(W9, U):
    """U[:, i] (16 tile cells, row-major 4x4) = G g G^T for each filter g = W9[i] (9 taps,
    row-major 3x3), in float64, stored in U's dtype."""
    block = np.empty((TILE_CELLS, FILTER_BLOCK))
    for i0 in range(0, W9.shape[0], FILTER_BLOCK):
        m = min(FILTER_BLOCK, W9.shape[0] - i0)
        for j in range(m):
            g = W9[i0 + j]
            # G g: the columns of the filter combined, then (G g) G^T: the rows of that.
            # np.float64, not float(): Numba 0.58 types float() of a float32 as float32
            r00, r10, r20, r30 = _g_columns(np.float64(g[0]), np.float64(g[3]),
                                            np.float64(g[6]))
            r01, r11, r21, r31 = _g_columns(np.float64(g[1]), np.float64(g[4]),
                                            np.float64(g[7]))
            r02, r12, r22, r32 = _g_columns(np.float64(g[2]), np.float64(g[5]),
                                            np.float64(g[8]))
            block[0, j], block[1, j], block[2, j], block[3, j] = _g_columns(r00, r01, r02)
            block[4, j], block[5, j], block[6, j], block[7, j] = _g_columns(r10, r11, r12)
            block[8, j], block[9, j], block[10, j], block[11, j] = _g_columns(r20, r21, r22)
            block[12, j], block[13, j], block[14, j], block[15, j] = _g_columns(r30, r31,
                                                                                r32)
        for k in range(TILE_CELLS):
            dst = U[k, i0:i0 + m]
            src = block[k, :m]
            for j in range(m):
                dst[j] = src[j]


@njit(nogil=True, cache=True)
def _filter_gradient_into(dU, dW9):
    """dW9[i] (9 taps) = G^T dU[:, i] G for each column of dU (16 tile cells), the adjoint
    of ``_filter_transform_into``, in float64, stored in dW9's dtype."""
    block = np.empty((TILE_CELLS, FILTER_BLOCK))
    for i0 in range(0, dU.shape[1], FILTER_BLOCK):
        m = min(FILTER_BLOCK, dU.shape[1] - i0)
        for k in range(TILE_CELLS):
            dst = block[k, :m]
            src = dU[k, i0:i0 + m]
            for j in range(m):
                dst[j] = src[j]
        for j in range(m):
            # dU G: the columns of each row combined, then G^T (dU G): the rows of that
            a0, a1, a2 = _g_adjoint(block[0, j], block[1, j], block[2, j], block[3, j])
            b0, b1, b2 = _g_adjoint(block[4, j], block[5, j], block[6, j], block[7, j])
            c0, c1, c2 = _g_adjoint(block[8, j], block[9, j], block[10, j], block[11, j])
            d0, d1, d2 = _g_adjoint(block[12, j], block[13, j], block[14, j], block[15, j])
            dW = dW9[i0 + j]
            dW[0], dW[3], dW[6] = _g_adjoint(a0, b0, c0, d0)
            dW[1], dW[4], dW[7] = _g_adjoint(a1, b1, c1, d1)
            dW[2], dW[5], dW[8] = _g_adjoint(a2, b2, c2, d2)


def filter_transform(W, dtype):
    """U (16, FN, C) = G g G^T for every filter g of W (FN, C, 3, 3), in float64 then dtype."""
    FN, C = W.shape[:2]
    U = np.empty((TILE_CELLS, FN, C), dtype=dtype)
    _filter_transform_into(np.ascontiguousarray(W).reshape(FN * C, 9),
                           U.reshape(TILE_CELLS, FN * C))
    return U


def filter_gradient(dU):
    """dW (FN, C, 3, 3) = G^T dU G, the adjoint of ``filter_transform``, in dU's dtype."""
    FN, C = dU.shape[1:]
    dW = np.empty((FN, C, 3, 3), dtype=dU.dtype)
    _filter_gradient_into(np.ascontiguousarray(dU).reshape(TILE_CELLS, FN * C),
                          dW.reshape(FN * C, 9))
    return dW


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _any_not_finite(row):
    bad = False
    for v in row:
        bad |= (v - v) != 0  # inf - inf and NaN - NaN are NaN; an OR of compares vectorizes
    return bad


def transform_scratch_size(count, tiles_h, tiles_w):
    """Length of the input transforms' 1-D scratch for count images: the four regions of
    ``_chunk_rows`` (the forward's pass along its tiles reads two values past the first),
    then the (4, count, 2*tiles_h) columns of ``_scratch_tail`` that both keep for each tile
    row's last tile."""
    return 32 * count * tiles_h * tiles_w + 2 + 8 * count * tiles_h


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _chunk_rows(down, count, tiles_h, tiles_w, which):
    """Region which (0-3) of the scratch down as (4, count, tiles_h, 2*tiles_w) and as the
    same memory (4, count*tiles_h*2*tiles_w): one channel's planes of count images after the
    pass along their rows, tile row after tile row and image after image."""
    size = 8 * count * tiles_h * tiles_w
    region = down[which * size:(which + 1) * size]
    return (region.reshape((4, count, tiles_h, 2 * tiles_w)),
            region.reshape((4, 2 * count * tiles_h * tiles_w)))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _scratch_tail(down, count, tiles_h, tiles_w):
    """The (4, count, 2*tiles_h) region of the scratch after the four regions and the two
    values the forward reads past the first."""
    start = 32 * count * tiles_h * tiles_w + 2
    return down[start:start + 8 * count * tiles_h].reshape((4, count, 2 * tiles_h))


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _b_transpose(d0, d1, d2, d3):
    """B^T applied to four values along a tile's rows or columns."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _b_transpose_adjoint(a0, a1, a2, a3):
    """The adjoint of ``_b_transpose``: what four transformed values give back to the four
    they came from."""
    return a0, a1 - a2 + a3, a1 + a2 - a0, -a3


# The input transforms go in two passes over a channel's planes: along their rows (B^T, tile
# row by tile row), then along their tiles (B). The second pass runs over all tiles of the
# channel's count images in one loop with unit strides, which vectorizes, where a loop per
# tile row of 4-14 tiles did not. Each such loop starts with a runtime check that its
# loads and stores do not overlap (some 30 compares for the 4 rows read and 4 written),
# which cost more than the loop itself on an 8x8 plane's 16 tiles: one loop over a whole
# chunk's images instead of one per image took the 100 images of DeepConvNet's 64->64
# layer from 845 to 629 us (float32, one thread, Zen 5). The arithmetic of each value is
# unchanged. Every index in these loops is a loop counter (plus a constant) or
# loop-invariant: an index Numba cannot prove non-negative gets a wraparound select per
# access, which keeps the loop scalar. A slice rebases an index to 0 but costs a few ns to
# make, so the loops take views made once per call or per channel.
@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _input_transform(xp, count, tiles_h, tiles_w, V, down):
    """V[4i + j, c, image tiles] = (B^T d B)[i, j] for the first count padded images of xp
    (chunk, C, 2*tiles_h + 2, 2*tiles_w + 2); tile (ty, tx) of image n is column
    n*tiles_h*tiles_w + ty*tiles_w + tx. down (``transform_scratch_size``) is scratch.
    Returns True when the images hold a value that is not finite (V is then not to be
    used)."""
    C = xp.shape[1]
    T = tiles_h * tiles_w
    Q = count * T
    pitch = 2 * tiles_w
    # the row pass's columns 0..pitch-1 of each tile row, rows end to end, so that tile q
    # of the chunk reads its four columns at 2q..2q+3; the last tile of a tile row reads
    # its right two from ``last`` instead, where the row pass puts columns pitch, pitch+1
    grid = _chunk_rows(down, count, tiles_h, tiles_w, 0)[0]
    last = _scratch_tail(down, count, tiles_h, tiles_w)
    bad = False
    for c in range(C):
        for n in range(count):
            for ty in range(tiles_h):
                r = 2 * ty
                for x in range(pitch):
                    d0, d1 = xp[n, c, r, x], xp[n, c, r + 1, x]
                    d2, d3 = xp[n, c, r + 2, x], xp[n, c, r + 3, x]
                    # inf - inf and NaN - NaN are NaN; an OR of compares vectorizes
                    bad |= ((d0 - d0) + (d1 - d1) + (d2 - d2) + (d3 - d3)) != 0
                    (grid[0, n, ty, x], grid[1, n, ty, x], grid[2, n, ty, x],
                     grid[3, n, ty, x]) = _b_transpose(d0, d1, d2, d3)
                for k in range(2):
                    d0, d1 = xp[n, c, r, pitch + k], xp[n, c, r + 1, pitch + k]
                    d2, d3 = xp[n, c, r + 2, pitch + k], xp[n, c, r + 3, pitch + k]
                    bad |= ((d0 - d0) + (d1 - d1) + (d2 - d2) + (d3 - d3)) != 0
                    j = 2 * ty + k
                    last[0, n, j], last[1, n, j], last[2, n, j], last[3, n, j] = (
                        _b_transpose(d0, d1, d2, d3))
        # then B along each of the four, all tiles of the chunk at once (each tile row's
        # last tile reads the next row's first columns there, and is redone below). Row
        # i of the grid is e, with the two values after it: the loop runs over all Q
        # tiles, not Q - 1, because 15 tiles (an 8x8 plane's 16 less one) ran scalar in
        # a loop vectorized by 16 (100 images of DeepConvNet's 64->64 layer, float32,
        # one thread, Zen 5: 939 against 1077 us; 32->32 841 against 1004 us)
        for i in range(4):
            e = down[2 * Q * i:2 * Q * (i + 1) + 2]
            v0, v1 = V[4 * i, c, :Q], V[4 * i + 1, c, :Q]
            v2, v3 = V[4 * i + 2, c, :Q], V[4 * i + 3, c, :Q]
            for q in range(Q):
                v0[q], v1[q], v2[q], v3[q] = _b_transpose(e[2 * q], e[2 * q + 1],
                                                          e[2 * q + 2], e[2 * q + 3])
            for n in range(count):
                for ty in range(tiles_h):
                    q = n * T + ty * tiles_w + tiles_w - 1
                    v0[q], v1[q], v2[q], v3[q] = _b_transpose(
                        e[2 * q], e[2 * q + 1], last[i, n, 2 * ty], last[i, n, 2 * ty + 1])
    return bad


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _input_transform_adjoint(V, count, tiles_h, tiles_w, pad, dx, n0, down):
    """dx[n0 + n] (C, H, W) for n < count = the adjoint of ``_input_transform`` applied to V,
    cropped: each pixel sums the tile cells it fed, in an order fixed by the shape, and the
    gradient of the padding (pad wide, and the extra row or column of an odd output) is
    dropped. down (``transform_scratch_size``) is scratch."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    T = tiles_h * tiles_w
    Q = count * T
    pitch = 2 * tiles_w
    P = tiles_h * pitch  # a plane's tile rows end to end, pitch columns each
    # the padded columns pad..inner-1 of a tile row are the image's first inner - pad
    inner = min(pitch, pad + W)
    # what each tile gives its two left columns (left) and its two right ones (right)
    left = _chunk_rows(down, count, tiles_h, tiles_w, 0)[1]
    right = _chunk_rows(down, count, tiles_h, tiles_w, 1)[1]
    # Then every tile row of a channel's count planes at once, in loops over all count*P
    # values: the left and right contributions summed (a tile row's columns 0, 1 take no
    # right one, and its columns pitch, pitch+1 only a right one, kept in edge), B^T's
    # adjoint down the four rows into the rows a0..a3 of each tile row, and those added
    # into the planes' rows. Tile row by tile row, in loops of pitch values (8 for an 8x8
    # plane), it took 14.5 ns a tile of DeepConvNet's 64->64 layer against 8.0 in loops
    # over a plane (float32, one thread, Zen 5; float64 10.4 against 12.3 ns at 64->64 but
    # 5.1 against 4.4 at 16->16, and the float64 step within its noise). The sums are the
    # same, in the same order.
    summed = _chunk_rows(down, count, tiles_h, tiles_w, 2)[1]
    down_rows = _chunk_rows(down, count, tiles_h, tiles_w, 3)[1]
    edge = _scratch_tail(down, count, tiles_h, tiles_w)
    edge_columns = np.empty((2 * tiles_h + 2, 2), dtype=dx.dtype)
    s0, s1, s2, s3 = summed[0], summed[1], summed[2], summed[3]
    a0, a1, a2, a3 = down_rows[0], down_rows[1], down_rows[2], down_rows[3]
    for c in range(C):
        # B's adjoint along the tiles, all of the chunk at once
        for i in range(4):
            lo, hi = left[i], right[i]
            v0, v1 = V[4 * i, c, :Q], V[4 * i + 1, c, :Q]
            v2, v3 = V[4 * i + 2, c, :Q], V[4 * i + 3, c, :Q]
            for q in range(Q):
                lo[2 * q], lo[2 * q + 1], hi[2 * q], hi[2 * q + 1] = _b_transpose_adjoint(
                    v0[q], v1[q], v2[q], v3[q])
            # column x of a tile row sums what tile x/2 gives its left columns and
            # tile x/2 - 1 its right ones
            row = summed[i]
            for j in range(count * P - 2):
                row[j + 2] = lo[j + 2] + hi[j]
            for n in range(count):
                for ty in range(tiles_h):
                    k = n * P + ty * pitch
                    row[k], row[k + 1] = lo[k], lo[k + 1]
                    edge[i, n, 2 * ty], edge[i, n, 2 * ty + 1] = (hi[k + pitch - 2],
                                                                  hi[k + pitch - 1])
        for j in range(count * P):
            a0[j], a1[j], a2[j], a3[j] = _b_transpose_adjoint(s0[j], s1[j], s2[j], s3[j])
        for n in range(count):
            # the last two padded columns of the plane, from each tile row's edge
            for ty in range(tiles_h):
                r = 2 * ty
                for k in range(2):
                    e0, e1, e2, e3 = _b_transpose_adjoint(
                        edge[0, n, 2 * ty + k], edge[1, n, 2 * ty + k],
                        edge[2, n, 2 * ty + k], edge[3, n, 2 * ty + k])
                    if ty == 0:
                        edge_columns[0, k], edge_columns[1, k] = e0, e1
                    else:
                        edge_columns[r, k] += e0
                        edge_columns[r + 1, k] += e1
                    edge_columns[r + 2, k], edge_columns[r + 3, k] = e2, e3
            # padded row y takes a0 or a1 of tile row y // 2 and a2 or a3 of the tile row
            # above: the first two rows only the former, the last two only the latter. Only
            # the rows and columns of the image are written, straight into dx: through the
            # padded planes and a crop after, the crop alone took 0.7 ms of a DeepConvNet
            # step's thread time.
            for iy in range(H):
                y = iy + pad
                below, above = y // 2, y // 2 - 1
                top = down_rows[y % 2]
                bottom = down_rows[2 + y % 2]
                dst = dx[n0 + n, c, iy]
                # where tile row `below`, and the one above it, start in the chunk's rows
                at_below, at_above = n * P + below * pitch, n * P + above * pitch
                if above < 0:
                    from_top = top[at_below + pad:at_below + inner]
                    for x in range(inner - pad):
                        dst[x] = from_top[x]
                elif below >= tiles_h:
                    from_bottom = bottom[at_above + pad:at_above + inner]
                    for x in range(inner - pad):
                        dst[x] = from_bottom[x]
                else:
                    from_top = top[at_below + pad:at_below + inner]
                    from_bottom = bottom[at_above + pad:at_above + inner]
                    for x in range(inner - pad):
                        dst[x] = from_bottom[x] + from_top[x]
            # the last two padded columns, from the tile rows' edges: in a loop of their own,
            # since in the one above these stores took the whole pass from 1.1 to 2.3 ms
            # (100 images of DeepConvNet's 16->16 layer, float32, one thread, Zen 5)
            for k in range(2):
                ix = pitch + k - pad
                if ix < W:
                    for iy in range(H):
                        dx[n0 + n, c, iy, ix] = edge_columns[iy + pad, k]
    return dx


@njit(nogil=True, cache=True, inline="always")
def _inverse_transform(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15):
    """The 2x2 outputs A^T m A of a tile whose 16 products m are given in row order."""
    s00 = m0 + m4 + m8
    s01 = m1 + m5 + m9
    s02 = m2 + m6 + m10
    s03 = m3 + m7 + m11
    s10 = m4 - m8 - m12
    s11 = m5 - m9 - m13
    s12 = m6 - m10 - m14
    s13 = m7 - m11 - m15
    return s00 + s01 + s02, s01 - s02 - s03, s10 + s11 + s12, s11 - s12 - s13


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _filter_cells(M, f, tiles):
    """The 16 cells of filter f's first tiles in M (16, FN, >= tiles), one view each: a view
    of a view's row has a stride not known to be 1, and the loops over them vectorize only
    with unit strides."""
    return (M[0, f, :tiles], M[1, f, :tiles], M[2, f, :tiles], M[3, f, :tiles],
            M[4, f, :tiles], M[5, f, :tiles], M[6, f, :tiles], M[7, f, :tiles],
            M[8, f, :tiles], M[9, f, :tiles], M[10, f, :tiles], M[11, f, :tiles],
            M[12, f, :tiles], M[13, f, :tiles], M[14, f, :tiles], M[15, f, :tiles])


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _tile_outputs(cells, t):
    """The 2x2 outputs A^T m A of tile t, from the views of ``_filter_cells``."""
    return _inverse_transform(cells[0][t], cells[1][t], cells[2][t], cells[3][t],
                              cells[4][t], cells[5][t], cells[6][t], cells[7][t],
                              cells[8][t], cells[9][t], cells[10][t], cells[11][t],
                              cells[12][t], cells[13][t], cells[14][t], cells[15][t])


# The output transforms go in two passes too: A^T m A for every tile of a filter's chunk in
# one loop with unit strides, which vectorizes, into four rows of scratch (one per output
# cell of the tiles); then those rows into the conv output's rows, tile by tile (their 2x2
# cells interleave there). The adjoint gathers first and transforms after. Done tile by
# tile in one pass, the loops stayed scalar: per image of DeepConvNet's 16->32 layer at
# 14x14, 8.2 against 4.4 us forward and 13.3 against 10.3 us for the adjoint; at 32->64,
# 8x8, 5.8 against 3.2 and 9.4 against 7.2 us (float32, one thread; float64 7.7 against
# 5.4 and 13.7 against 12.1 us at 16->32).
@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _output_transform(M, count, tiles_h, tiles_w, conv_h, conv_w, rows):
    """rows (FN, count*conv_h*conv_w), the GEMM layout of the conv output, from the tiles'
    products M (16, FN, >= count*tiles); a tile past an odd edge writes only its inner
    cells."""
    FN = M.shape[1]
    T = tiles_h * tiles_w
    P = conv_h * conv_w
    whole_w = conv_w // 2  # tiles with both columns inside
    tiles = count * T
    cells = np.empty((4, tiles), dtype=rows.dtype)
    y00, y01, y10, y11 = cells[0], cells[1], cells[2], cells[3]
    for f in range(FN):
        cells_of_f = _filter_cells(M, f, tiles)
        for q in range(tiles):
            y00[q], y01[q], y10[q], y11[q] = _tile_outputs(cells_of_f, q)
        out = rows[f]
        for n in range(count):
            for ty in range(tiles_h):
                top = n * P + 2 * ty * conv_w
                t0 = n * T + ty * tiles_w
                if 2 * ty + 1 < conv_h:
                    low = top + conv_w
                    for tx in range(whole_w):
                        out[top + 2 * tx], out[top + 2 * tx + 1] = y00[t0 + tx], y01[t0 + tx]
                        out[low + 2 * tx], out[low + 2 * tx + 1] = y10[t0 + tx], y11[t0 + tx]
                    if whole_w < tiles_w:
                        out[top + 2 * whole_w] = y00[t0 + whole_w]
                        out[low + 2 * whole_w] = y10[t0 + whole_w]
                else:
                    for tx in range(tiles_w):
                        out[top + 2 * tx] = y00[t0 + tx]
                        if 2 * tx + 1 < conv_w:
                            out[top + 2 * tx + 1] = y01[t0 + tx]


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _output_transform_adjoint(rows, count, tiles_h, tiles_w, conv_h, conv_w, dM):
    """dM (16, FN, >= count*tiles) = A dY A^T for each tile's 2x2 output gradient dY, read
    from rows (FN, count*conv_h*conv_w); cells past an odd edge count as 0. Returns True
    when rows hold a value that is not finite."""
    FN = dM.shape[1]
    T = tiles_h * tiles_w
    P = conv_h * conv_w
    whole_w = conv_w // 2
    zero = dM.dtype.type(0)
    tiles = count * T
    cells = np.empty((4, tiles), dtype=dM.dtype)
    g00, g01, g10, g11 = cells[0], cells[1], cells[2], cells[3]
    bad = False
    for f in range(FN):
        grad = rows[f]
        bad |= _any_not_finite(grad[:count * P])
        # each tile's 2x2 gradient, gathered from the interleaved rows
        for n in range(count):
            for ty in range(tiles_h):
                top = n * P + 2 * ty * conv_w
                low = top + conv_w
                t0 = n * T + ty * tiles_w
                if 2 * ty + 1 < conv_h:
                    for tx in range(whole_w):
                        g00[t0 + tx], g01[t0 + tx] = grad[top + 2 * tx], grad[top + 2 * tx + 1]
                        g10[t0 + tx], g11[t0 + tx] = grad[low + 2 * tx], grad[low + 2 * tx + 1]
                    if whole_w < tiles_w:
                        g00[t0 + whole_w], g01[t0 + whole_w] = grad[top + 2 * whole_w], zero
                        g10[t0 + whole_w], g11[t0 + whole_w] = grad[low + 2 * whole_w], zero
                else:
                    for tx in range(tiles_w):
                        g00[t0 + tx] = grad[top + 2 * tx]
                        g01[t0 + tx] = grad[top + 2 * tx + 1] if 2 * tx + 1 < conv_w else zero
                        g10[t0 + tx], g11[t0 + tx] = zero, zero
        # A dY A^T: rows (g0., g0. + g1., g0. - g1., -g1.) of A dY, then the same along the
        # columns, every tile at once, one row of A dY per pass: a loop writing all 16
        # cells did not vectorize (too many arrays for LLVM's overlap checks), four of 4 do
        for i in range(4):
            c0, c1 = dM[4 * i, f, :tiles], dM[4 * i + 1, f, :tiles]
            c2, c3 = dM[4 * i + 2, f, :tiles], dM[4 * i + 3, f, :tiles]
            if i == 0:
                for q in range(tiles):
                    left, right = g00[q], g01[q]
                    c0[q], c1[q], c2[q], c3[q] = left, left + right, left - right, -right
            elif i == 1:
                for q in range(tiles):
                    left, right = g00[q] + g10[q], g01[q] + g11[q]
                    c0[q], c1[q], c2[q], c3[q] = left, left + right, left - right, -right
            elif i == 2:
                for q in range(tiles):
                    left, right = g00[q] - g10[q], g01[q] - g11[q]
                    c0[q], c1[q], c2[q], c3[q] = left, left + right, left - right, -right
            else:
                for q in range(tiles):
                    left, right = -g10[q], -g11[q]
                    c0[q], c1[q], c2[q], c3[q] = left, left + right, left - right, -right
    return bad


# A's columns: how a tile's output (a, b) enters its 4x4 cells, dM[4i + j] = A[i, a] A[j, b]
_A = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]])


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _add_passing_gradients(grad, kept, index, zero, db, f):
    """db[f] += the sum, in float64, of a plane's window gradients that pass: dout where the
    pooled output is not 0 and the window index names a cell; True when one is not finite.
    Reassociated so that it vectorizes, as ``epilogues._add_row_sums``; the order depends
    only on the shape."""
    total = 0.0
    bad = False
    for q in range(grad.shape[0]):
        k = index[q]
        g = grad[q] if kept[q] != 0 and 0 <= k < 4 else zero
        bad |= (g - g) != 0
        total += g
    db[f] += total
    return bad


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pooled_gradient_tiles(dout, out, argmax, n0, n1, dM, db):
    """dM (16, FN, tiles) = A dY A^T for images n0..n1-1 of a conv -> ReLU -> 2x2 stride-2
    pool whose windows are the tiles (even conv output): each tile's dY is dout at its
    window's argmax where the pooled output is not 0, else 0. Adds the windows' gradients to
    db (FN, float64). One pass over the windows instead of scattering into the conv output's
    rows and reading them back. Returns True when a gradient that passes is not finite.

    dout, out and argmax are (N, FN, windows). The cells go four at a time, one row i of A
    per pass over a plane's windows: a pass writing all 16 (through 16 arrays) did not
    vectorize, four passes of 4 do (746 against 3234 us for 100 images of 16 planes of 196
    windows, float32, one thread)."""
    FN, windows = dout.shape[1], dout.shape[2]
    tiles = (n1 - n0) * windows
    A = _A.astype(dM.dtype)
    # A[j, b] for the column of the cell, b = 0 or 1
    left0, left1, left2, left3 = A[0, 0], A[1, 0], A[2, 0], A[3, 0]
    right0, right1, right2, right3 = A[0, 1], A[1, 1], A[2, 1], A[3, 1]
    zero = dM.dtype.type(0)
    # each filter's windows of the whole chunk in rows, so that the four passes run over all
    # of them at once: per image, DeepConvNet's 8x8 layers have 16 windows a plane, too few
    # for vectors (100 images of its 64->64 layer, float32, one thread, Zen 5: 354 against
    # 689 us; 16->16 at 28x28: 430 against 599 us)
    passing = np.empty(tiles, dtype=dM.dtype)  # the gradient each window passes, or 0
    cells = index_scratch(tiles, dM)  # (an index outside 0..3 passes 0, however narrowed)
    bad = False
    for f in range(FN):
        for n in range(n0, n1):
            grad, kept, index = dout[n, f], out[n, f], argmax[n, f]
            bad |= _add_passing_gradients(grad, kept, index, zero, db, f)
            t0 = (n - n0) * windows
            to_passing, to_cells = passing[t0:t0 + windows], cells[t0:t0 + windows]
            for q in range(windows):
                k = index[q]
                # an index that names no cell of the window routes nothing, as in the twin;
                # the rule of _add_passing_gradients written out again: a shared helper
                # returning (k, g) kept this loop scalar (19.6 against 0.6 ms a batch)
                to_passing[q] = grad[q] if kept[q] != 0 and 0 <= k < 4 else zero
                to_cells[q] = k
        for i in range(4):
            top, bottom = A[i, 0], A[i, 1]  # A[i, a] for the row a of the cell
            d0, d1 = dM[4 * i, f, :tiles], dM[4 * i + 1, f, :tiles]
            d2, d3 = dM[4 * i + 2, f, :tiles], dM[4 * i + 3, f, :tiles]
            for t in range(tiles):
                k = cells[t]
                row = (bottom if (k >> 1) & 1 else top) * passing[t]
                right = (k & 1) != 0
                d0[t] = row * (right0 if right else left0)
                d1[t] = row * (right1 if right else left1)
                d2[t] = row * (right2 if right else left2)
                d3[t] = row * (right3 if right else left3)
    return bad


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _pooled_output_tiles(M, n0, n1, b, out, argmax, with_argmax):
    """out (N, FN, windows) for images n0..n1-1 = a 2x2 stride-2 max pool of relu(conv + b)
    whose windows are the tiles (even conv output), straight from the tiles' products M,
    without the conv output's rows; argmax too when with_argmax. The same values and
    indices as the epilogue's pool (``epilogues._pool_split_plane``) gives from those
    rows. Returns False, with the chunk unfinished, when an output of a tile is NaN (an
    overflow in the transform: the caller then runs im2col, whose pools handle NaN), even
    one that a larger cell of its window would hide."""
    FN, windows = out.shape[1], out.shape[2]
    tiles = (n1 - n0) * windows
    zero = out.dtype.type(0)
    # Two passes, as in the output transform: every tile of a filter's chunk in one loop over
    # views with unit strides, which vectorizes, into scratch rows; then those rows into each
    # image's plane. Indexed M[k, f, t0 + q] tile by tile the loop stayed scalar: 4.8 ns a
    # tile of DeepConvNet's 16->16 layer (float32, one thread, Zen 5).
    pooled_row = np.empty(tiles, dtype=out.dtype)
    index_row = index_scratch(tiles if with_argmax else 0, out)
    found_nan = False
    for f in range(FN):
        bias = b[f]
        cells_of_f = _filter_cells(M, f, tiles)
        # a NaN is noted, not returned at once: a loop with an exit does not vectorize
        for t in range(tiles):
            y00, y01, y10, y11 = _tile_outputs(cells_of_f, t)
            best, index, has_nan = _relu_pool_window(y00, y01, y10, y11, bias, zero)
            found_nan |= has_nan
            pooled_row[t] = best
            if with_argmax:
                index_row[t] = index
        if found_nan:
            return False
        for i in range(n1 - n0):
            pooled = out[n0 + i, f]
            from_row = pooled_row[i * windows:(i + 1) * windows]
            for q in range(windows):
                pooled[q] = from_row[q]
            if with_argmax:
                kept = argmax[n0 + i, f]
                from_index = index_row[i * windows:(i + 1) * windows]
                for q in range(windows):
                    kept[q] = from_index[q]
    return True
