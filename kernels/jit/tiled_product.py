"""out = a @ b for a few rows of a: an affine layer's forward product on one part of a batch.

OpenBLAS packs all of b for each call, and for a part of 50 rows that costs as much as the
product: SimpleConvNet's 50 x 4320 @ 4320 x 100 ran at 137 GFLOP/s in float32 and 60 in
float64 on one core (Intel Xeon, AVX-512), where its kernel reaches 200 and more on square
products. Here b is not copied. Its rows are read in blocks of ``K_BLOCK`` (a float32 block
of 64 rows of 100 columns is 25 KB, in L1 while every row block of a uses it), and a tile of
3 rows of out by 7 vectors of columns keeps its 21 sums in registers (``simd``): per row k of
the block, 7 loads of b and 3 broadcasts of a for 21 FMAs.

Columns come in panels of 7 vectors. A panel's last vectors, and the last panel, start early
enough to end at the last column, so they overlap columns that other vectors compute; each
such column is computed from the same sums in the same order, so every store of it writes
the same value. A panel goes through all of k before the next starts. The last tile of rows
repeats a's last row and writes the rows past out's end to scratch.

Each entry of out is one chain of FMAs along k in order, whatever the vector width or the
thread: its bits depend on the shapes only (not on OpenBLAS's kernel either, unlike a BLAS
call's).
"""
import numba
import numpy as np
from numba import njit

from .compile_options import HELPER_INLINE
from .simd import FULL_WIDTH, LANES, VECTOR_BYTES, fma, load, splat, store

__all__ = ["tiles_pay", "tiled_product"]

TILE_ROWS = 3
TILE_VECTORS = 7
K_BLOCK = 64
# Where the tiles beat OpenBLAS (one core, Intel Xeon with AVX-512). The panels' share of
# useful columns: at 0.89 (100 float32 columns, 100 or 50 float64) 50 x 784 products ran
# 1.15-1.4x as fast, at 0.45 (50 float32) 0.7x. The inner dimension: with 100, BLAS won
# (100 x 100 x 100: 0.8x as fast in both dtypes), its packing being short.
MIN_USEFUL_COLUMNS = 0.85
MIN_INNER = 256


def tiles_pay(n, k, dtype):
    """Whether a product with n output columns and inner dimension k of dtype runs faster
    here than in BLAS: measured where compiled code has 512-bit registers (AVX2's 16 would
    hold half of the 21 sums), never as Python (NUMBA_DISABLE_JIT)."""
    dtype = np.dtype(dtype)
    if (numba.config.DISABLE_JIT or not FULL_WIDTH or dtype not in LANES
            or n < LANES[dtype] or k < MIN_INNER):
        return False
    width = TILE_VECTORS * LANES[dtype]
    panels = -(-n // width)
    return n / (panels * width) >= MIN_USEFUL_COLUMNS


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def _tile(a0, a1, a2, flat_b, n, k0, k1, c0, c1, c2, j, lanes, first):
    """c0..c2[panel] (+)= a0..a2[k0:k1] @ b[k0:k1, panel] for the panel of 7 vectors from
    column j (each vector ending by column n); the sums start at 0 where first."""
    last = n - lanes
    j0, j1, j2 = j, min(j + lanes, last), min(j + 2 * lanes, last)
    j3, j4 = min(j + 3 * lanes, last), min(j + 4 * lanes, last)
    j5, j6 = min(j + 5 * lanes, last), min(j + 6 * lanes, last)
    if first:
        z = splat(flat_b.dtype.type(0))
        s00 = s01 = s02 = s03 = s04 = s05 = s06 = z
        s10 = s11 = s12 = s13 = s14 = s15 = s16 = z
        s20 = s21 = s22 = s23 = s24 = s25 = s26 = z
    else:
        s00, s01, s02, s03 = load(c0, j0), load(c0, j1), load(c0, j2), load(c0, j3)
        s04, s05, s06 = load(c0, j4), load(c0, j5), load(c0, j6)
        s10, s11, s12, s13 = load(c1, j0), load(c1, j1), load(c1, j2), load(c1, j3)
        s14, s15, s16 = load(c1, j4), load(c1, j5), load(c1, j6)
        s20, s21, s22, s23 = load(c2, j0), load(c2, j1), load(c2, j2), load(c2, j3)
        s24, s25, s26 = load(c2, j4), load(c2, j5), load(c2, j6)
    for k in range(k0, k1):
        x0, x1, x2 = splat(a0[k]), splat(a1[k]), splat(a2[k])
        row = k * n
        s00, s10, s20 = _column(flat_b, row + j0, x0, x1, x2, s00, s10, s20)
        s01, s11, s21 = _column(flat_b, row + j1, x0, x1, x2, s01, s11, s21)
        s02, s12, s22 = _column(flat_b, row + j2, x0, x1, x2, s02, s12, s22)
        s03, s13, s23 = _column(flat_b, row + j3, x0, x1, x2, s03, s13, s23)
        s04, s14, s24 = _column(flat_b, row + j4, x0, x1, x2, s04, s14, s24)
        s05, s15, s25 = _column(flat_b, row + j5, x0, x1, x2, s05, s15, s25)
        s06, s16, s26 = _column(flat_b, row + j6, x0, x1, x2, s06, s16, s26)
    _store_row(c0, j0, j1, j2, j3, j4, j5, j6, s00, s01, s02, s03, s04, s05, s06)
    _store_row(c1, j0, j1, j2, j3, j4, j5, j6, s10, s11, s12, s13, s14, s15, s16)
    _store_row(c2, j0, j1, j2, j3, j4, j5, j6, s20, s21, s22, s23, s24, s25, s26)


@njit(nogil=True, cache=True, inline="always")
def _column(flat_b, at, x0, x1, x2, s0, s1, s2):
    """The three sums of one vector of columns, each plus its row's value times b there."""
    w = load(flat_b, at)
    return fma(x0, w, s0), fma(x1, w, s1), fma(x2, w, s2)


@njit(nogil=True, cache=True, inline="always")
def _store_row(c, j0, j1, j2, j3, j4, j5, j6, v0, v1, v2, v3, v4, v5, v6):
    store(c, j0, v0)
    store(c, j1, v1)
    store(c, j2, v2)
    store(c, j3, v3)
    store(c, j4, v4)
    store(c, j5, v5)
    store(c, j6, v6)


def tiled_product(a, b, out):
    """out (m, n) = a (m, k) @ b (k, n): 2-D arrays of one dtype, float32 or float64, b and
    out C-contiguous, n at least one vector (``simd.LANES``), out apart from a and b. Raises
    where they do not fit, before anything is written."""
    arrays = {"a": a, "b": b, "out": out}
    for name, array in arrays.items():
        if not (isinstance(array, np.ndarray) and array.ndim == 2
                and array.dtype in (np.float32, np.float64)):
            raise TypeError(f"tiled_product: {name} must be a 2-D float32 or float64 array; "
                            f"got {getattr(array, 'dtype', type(array).__name__)} of shape "
                            f"{np.shape(array)}")
    if not a.dtype == b.dtype == out.dtype:
        raise TypeError(f"tiled_product: a, b and out must have one dtype; got {a.dtype}, "
                        f"{b.dtype}, {out.dtype}")
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k or out.shape != (m, n):
        raise ValueError(f"tiled_product: a (m, k), b (k, n) and out (m, n) must agree; got "
                         f"a {a.shape}, b {b.shape}, out {out.shape}")
    if n < LANES[a.dtype]:
        raise ValueError(f"tiled_product: b needs at least one vector of columns "
                         f"({LANES[a.dtype]} in {a.dtype}); got {n}")
    if not (b.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("tiled_product: b and out must be C-contiguous")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        # its first blocks of sums would overwrite what the later ones read
        raise ValueError("tiled_product: out must not overlap a or b")
    _tiled_product(a, b, out)


@njit(nogil=True, cache=True)
def _tiled_product(a, b, out):
    """``tiled_product`` once the operands are checked; checked again here since the loads
    and stores are not."""
    m, k = a.shape
    n = b.shape[1]
    lanes = VECTOR_BYTES // out.itemsize
    if b.shape[0] != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError("tiled_product: a (m, k), b (k, n) and out (m, n) must agree")
    if n < lanes:
        raise ValueError("tiled_product: b needs at least one vector of columns")
    if m == 0:
        return
    if k == 0:
        out[:] = 0
        return
    flat_b = b.reshape(k * n)
    spare = np.empty((TILE_ROWS - 1, n), out.dtype)  # rows past out's end
    width = TILE_VECTORS * lanes
    for p0 in range(0, n, width):
        j = max(0, min(p0, n - width))
        for k0 in range(0, k, K_BLOCK):
            k1 = min(k0 + K_BLOCK, k)
            for r in range(0, m, TILE_ROWS):
                r1, r2 = min(r + 1, m - 1), min(r + 2, m - 1)
                c1 = out[r + 1] if r + 1 < m else spare[0]
                c2 = out[r + 2] if r + 2 < m else spare[1]
                _tile(a[r], a[r1], a[r2], flat_b, n, k0, k1, out[r], c1, c2, j, lanes,
                      k0 == 0)
