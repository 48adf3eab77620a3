"""NumPy twins of the Winograd F(4x4, 3x3) transforms of ``fastconv.kernels.jit.winograd4``.

Written with the matrices B^T, G and A^T themselves, tile by tile, where the jit kernels spell
out their additions in vectors; the layout is the jit kernels': V (36, C, T) with tile (ty,
tx) of image n at column (ty*count + n)*tiles_w + tx.
"""
import numpy as np

__all__ = ["B_T", "G", "A_T", "filter_transform", "filter_gradient", "input_transform",
           "input_transform_adjoint", "pooled_output_tiles"]

# the points 0, 1, -1, 2, -2 and infinity
B_T = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=float)


def filter_transform(W):
    """U (36, FN, C) = G g G^T for every filter g of W (FN, C, 3, 3), in float64."""
    FN, C = W.shape[:2]
    return np.einsum("ak,fckl,bl->abfc", G, W.astype(np.float64), G).reshape(36, FN, C)


def filter_gradient(dU):
    """dW (FN*C, 9) = G^T dU G, the adjoint of ``filter_transform``, in float64."""
    FN, C = dU.shape[1:]
    dW = np.einsum("ak,abfc,bl->fckl", G, dU.astype(np.float64).reshape(6, 6, FN, C), G)
    return dW.reshape(FN * C, 9)


def _columns(count, tiles_h, tiles_w):
    """(n, ty, tx) -> column, as an (count, tiles_h, tiles_w) array."""
    n, ty, tx = np.meshgrid(np.arange(count), np.arange(tiles_h), np.arange(tiles_w),
                            indexing="ij")
    return (ty * count + n) * tiles_w + tx


def input_transform(xp, tiles_h, tiles_w):
    """V (36, C, count*tiles) = B^T d B for every 6x6 tile d (stepping by 4) of the padded
    images xp (count, C, 4*tiles_h + 2, 4*tiles_w + 2), in float64."""
    count, C = xp.shape[:2]
    rows = np.arange(tiles_h)[:, None] * 4 + np.arange(6)
    cols = np.arange(tiles_w)[:, None] * 4 + np.arange(6)
    tiles = xp.astype(np.float64)[:, :, rows[:, None, :, None], cols[None, :, None, :]]
    transformed = np.einsum("ia,nctsab,jb->ijcnts", B_T, tiles, B_T)
    V = np.empty((36, C, count * tiles_h * tiles_w))
    V[:, :, _columns(count, tiles_h, tiles_w)] = transformed.reshape(36, C, count, tiles_h,
                                                                      tiles_w)
    return V


def input_transform_adjoint(dV, count, tiles_h, tiles_w):
    """dxp (count, C, 4*tiles_h + 2, 4*tiles_w + 2): each padded pixel sums B dV B^T over
    the tiles it belongs to, in float64."""
    C = dV.shape[1]
    cells = dV.astype(np.float64)[:, :, _columns(count, tiles_h, tiles_w)]
    patches = np.einsum("ia,ijcnts,jb->nctsab", B_T, cells.reshape(6, 6, C, count, tiles_h,
                                                                   tiles_w), B_T)
    dxp = np.zeros((count, C, 4 * tiles_h + 2, 4 * tiles_w + 2))
    for ty in range(tiles_h):
        for tx in range(tiles_w):
            dxp[:, :, 4 * ty:4 * ty + 6, 4 * tx:4 * tx + 6] += patches[:, :, ty, tx]
    return dxp


def pooled_output_tiles(M, count, tiles_h, tiles_w, b):
    """(out, argmax, windows) (count, FN, 2*tiles_h, 2*tiles_w): the 2x2 stride-2 max pool of
    relu(A^T m A + b) over each tile's four windows, from the products M (36, FN, T); the
    index of a window's first maximum in row order; the windows' cells (..., 4) in row
    order. In float64."""
    FN = M.shape[1]
    cells = M.astype(np.float64)[:, :, _columns(count, tiles_h, tiles_w)]
    y = np.einsum("ai,ijfnts,bj->nftasb", A_T, cells.reshape(6, 6, FN, count, tiles_h,
                                                              tiles_w), A_T)
    y = np.maximum(y + b.astype(np.float64)[None, :, None, None, None, None], 0)
    conv = y.reshape(count, FN, 4 * tiles_h, 4 * tiles_w)
    windows = conv.reshape(count, FN, 2 * tiles_h, 2, 2 * tiles_w, 2).transpose(0, 1, 2, 4, 3,
                                                                                5)
    windows = windows.reshape(count, FN, 2 * tiles_h, 2 * tiles_w, 4)
    return windows.max(axis=-1), windows.argmax(axis=-1), windows
