"""The weight gradient of a conv chunk, dW (FN, K) += rows (FN, m) @ cols (K, m).T, compiled.

In the conv pipeline this product is thin: 16-64 filters by 9-576 columns, summed over the
chunk's m = images * out_h * out_w positions. OpenBLAS packs both factors for each call and
ran it at 45-100 GFLOP/s on one AVX-512 core (sgemm), 29-57 in double. Here each output
entry is a dot product of two contiguous rows, and a tile of 4 filters by 4 columns keeps
its 16 sums in vector registers while one pass over m reads 8 rows. The caller multiplies
the few filters and columns left over (a strip of at most 3 rows and one of 3 columns) by
BLAS: smaller tiles for them cost as much compile time on an empty cache (0.5 s) as the
4x4 tile itself.

The sums are reassociated (``fastmath``) so that the compiler can vectorize them; the order
then depends on the shapes and the machine's vector width, never on the thread count.
"""
from numba import njit

from .compile_options import HELPER_INLINE

__all__ = ["add_weight_gradient_tiles"]

_REASSOCIATE = {"reassoc", "contract"}


@njit(nogil=True, cache=True, fastmath=_REASSOCIATE)
def _tile_4x4(rows, f, cols, k, dW):
    """dW[f:f+4, k:k+4] += rows[f:f+4] @ cols[k:k+4].T"""
    r0, r1, r2, r3 = rows[f], rows[f + 1], rows[f + 2], rows[f + 3]
    c0, c1, c2, c3 = cols[k], cols[k + 1], cols[k + 2], cols[k + 3]
    zero = dW.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for p in range(rows.shape[1]):
        y0, y1, y2, y3 = c0[p], c1[p], c2[p], c3[p]
        x = r0[p]
        s00 += x * y0; s01 += x * y1; s02 += x * y2; s03 += x * y3  # noqa: E702
        x = r1[p]
        s10 += x * y0; s11 += x * y1; s12 += x * y2; s13 += x * y3  # noqa: E702
        x = r2[p]
        s20 += x * y0; s21 += x * y1; s22 += x * y2; s23 += x * y3  # noqa: E702
        x = r3[p]
        s30 += x * y0; s31 += x * y1; s32 += x * y2; s33 += x * y3  # noqa: E702
    _add_4(dW[f], k, s00, s01, s02, s03)
    _add_4(dW[f + 1], k, s10, s11, s12, s13)
    _add_4(dW[f + 2], k, s20, s21, s22, s23)
    _add_4(dW[f + 3], k, s30, s31, s32, s33)


@njit(nogil=True, cache=True, inline="always")
def _add_4(row, k, s0, s1, s2, s3):
    row[k] += s0
    row[k + 1] += s1
    row[k + 2] += s2
    row[k + 3] += s3


@njit(nogil=True, cache=True, inline=HELPER_INLINE)
def add_weight_gradient_tiles(rows, cols, dW):
    """dW[:F, :C] += rows[:F] @ cols[:C].T for the largest F, C that are multiples of 4, and
    returns (F, C); the caller adds the filters and columns left over. rows (FN, m), cols
    (K, m) and dW (FN, K) are C-contiguous, of one dtype."""
    FN = rows.shape[0]
    K = cols.shape[0]
    if rows.shape[1] != cols.shape[1] or dW.shape[0] != FN or dW.shape[1] != K:
        raise ValueError("add_weight_gradient_tiles: rows (FN, m), cols (K, m) and dW "
                         "(FN, K) must agree")
    full_f = FN - FN % 4
    full_k = K - K % 4
    for f in range(0, full_f, 4):
        for k in range(0, full_k, 4):
            _tile_4x4(rows, f, cols, k, dW)
    return full_f, full_k
