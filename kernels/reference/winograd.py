"""NumPy twins of the Winograd F(2x2, 3x3) transforms of ``fastconv.kernels.jit.winograd``.

Written with the matrices B^T and A^T themselves, tile by tile, where the jit kernels spell
out their additions; the layouts are the jit kernels': V and M (16, rows, images*tiles), a
tile (ty, tx) of image n at column n*tiles_h*tiles_w + ty*tiles_w + tx, rows (FN,
images*conv_h*conv_w).
"""
import numpy as np

__all__ = ["B_T", "A_T", "G", "filter_transform", "filter_gradient", "input_transform",
           "input_transform_adjoint", "output_transform", "output_transform_adjoint"]

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def filter_transform(W, dtype):
    """U (16, FN, C) = G g G^T for every filter g of W (FN, C, 3, 3), in float64 then dtype."""
    FN, C = W.shape[:2]
    U = np.einsum("ik,fckl,jl->ijfc", G, W.astype(np.float64), G)
    return U.reshape(16, FN, C).astype(dtype)


def filter_gradient(dU):
    """dW (FN, C, 3, 3) = G^T dU G, the adjoint of ``filter_transform``, in dU's dtype."""
    FN, C = dU.shape[1:]
    dW = np.einsum("ik,ijfc,jl->fckl", G, dU.astype(np.float64).reshape(4, 4, FN, C), G)
    return dW.astype(dU.dtype)


def _tiles(xp, tiles_h, tiles_w):
    """(count, C, tiles_h, tiles_w, 4, 4): the 4x4 input tiles, stepping by 2."""
    rows = np.arange(tiles_h)[:, None] * 2 + np.arange(4)
    cols = np.arange(tiles_w)[:, None] * 2 + np.arange(4)
    return xp[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def input_transform(xp, tiles_h, tiles_w):
    """V (16, C, count*tiles) = B^T d B for every tile d of the padded images xp (count, C,
    2*tiles_h + 2, 2*tiles_w + 2)."""
    count, C = xp.shape[:2]
    V = np.einsum("ia,nctsab,jb->ijcnts", B_T, _tiles(xp, tiles_h, tiles_w), B_T)
    return V.reshape(16, C, count * tiles_h * tiles_w).astype(xp.dtype)


def input_transform_adjoint(V, count, tiles_h, tiles_w):
    """dxp (count, C, 2*tiles_h + 2, 2*tiles_w + 2): each padded pixel sums B dV B^T over the
    tiles it belongs to."""
    C = V.shape[1]
    dV = V.astype(np.float64).reshape(4, 4, C, count, tiles_h, tiles_w)
    patches = np.einsum("ia,ijcnts,jb->nctsab", B_T, dV, B_T)
    dxp = np.zeros((count, C, 2 * tiles_h + 2, 2 * tiles_w + 2))
    for ty in range(tiles_h):
        for tx in range(tiles_w):
            dxp[:, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4] += patches[:, :, ty, tx]
    return dxp.astype(V.dtype)


def output_transform(M, count, tiles_h, tiles_w, conv_h, conv_w):
    """rows (FN, count*conv_h*conv_w) = A^T m A of every tile, cut to the conv output."""
    FN = M.shape[1]
    m = M.astype(np.float64).reshape(4, 4, FN, count, tiles_h, tiles_w)
    Y = np.einsum("ai,ijfnts,bj->fntasb", A_T, m, A_T)
    Y = Y.reshape(FN, count, 2 * tiles_h, 2 * tiles_w)[:, :, :conv_h, :conv_w]
    return Y.reshape(FN, count * conv_h * conv_w).astype(M.dtype)


def output_transform_adjoint(rows, count, tiles_h, tiles_w, conv_h, conv_w):
    """dM (16, FN, count*tiles) = A dY A^T for each tile's 2x2 gradient dY (0 past the edge)."""
    FN = rows.shape[0]
    dY = np.zeros((FN, count, 2 * tiles_h, 2 * tiles_w))
    dY[:, :, :conv_h, :conv_w] = rows.reshape(FN, count, conv_h, conv_w)
    dY = dY.reshape(FN, count, tiles_h, 2, tiles_w, 2)
    dM = np.einsum("ai,fntasb,bj->ijfnts", A_T, dY, A_T)
    return dM.reshape(16, FN, count * tiles_h * tiles_w).astype(rows.dtype)
