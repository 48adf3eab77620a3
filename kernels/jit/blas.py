"""``gemm``: a matrix product that compiled code can call, and plain Python as well.

A conv pipeline that multiplies through NumPy must come back to Python for every product,
and on two threads each return waits for the GIL, which the other thread holds between its
own calls: a waiting thread sleeps, and waking it took 50-130 us on the 2-core reference
machine, several times per chunk. Called from a Numba kernel, the product needs no GIL, so a
thread's whole share of a layer becomes one ``nogil`` call.

Inside ``@njit`` code ``gemm`` calls ``cblas_?gemm`` of the OpenBLAS that NumPy's wheels
bundle (built with 64-bit integers, symbols ``scipy_cblas_?gemm64_``), bound by address under
names of our own. ``AVAILABLE`` is False where that library is missing (a NumPy linked to a
system BLAS, as conda's is); callers then run their kernels' Python source (``py_func``), in
which ``gemm`` multiplies through ``np.matmul``. Both use the same BLAS product, and the
threads are pinned to one BLAS thread either way (``gemm.single_threaded_blas``).
"""
import ctypes
import glob
import os

import numpy as np
from numba import njit, types
from numba.extending import overload

__all__ = ["gemm", "AVAILABLE"]

_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112


def _bundled_openblas():
    """ctypes handle of NumPy's bundled ILP64 OpenBLAS, or None."""
    root = os.path.dirname(np.__file__)
    name = "libscipy_openblas64_*"
    patterns = [os.path.join(root, os.pardir, "numpy.libs", name),  # Linux and Windows wheels
                os.path.join(root, ".dylibs", name)]                # macOS wheels
    for path in sorted(p for pattern in patterns for p in glob.glob(pattern)):
        try:
            lib = ctypes.CDLL(path)  # NumPy loaded it already: this finds the same copy
        except OSError:
            continue
        if all(hasattr(lib, f"scipy_cblas_{letter}gemm64_") for letter in "sd"):
            return lib
    return None


def _register_symbols():
    lib = _bundled_openblas()
    if lib is None:
        return False
    import llvmlite.binding as llvm
    for letter in "sd":
        address = ctypes.cast(getattr(lib, f"scipy_cblas_{letter}gemm64_"), ctypes.c_void_p).value
        llvm.add_symbol(f"fastconv_cblas_{letter}gemm64", address)
    return True


# Registered at import, before Numba loads any cached kernel that links against them.
AVAILABLE = _register_symbols()


def _cblas_gemm(name, real):
    # order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc; pointers as
    # 64-bit integers, which is how the x86-64 and AArch64 C ABIs pass them too
    i32, i64, pointer = types.int32, types.int64, types.uint64
    signature = types.void(i32, i32, i32, i64, i64, i64, real, pointer, i64, pointer, i64, real,
                           pointer, i64)
    return types.ExternalFunction(name, signature)


_sgemm = _cblas_gemm("fastconv_cblas_sgemm64", types.float32)
_dgemm = _cblas_gemm("fastconv_cblas_dgemm64", types.float64)


def gemm(a, trans_a, b, trans_b, c, beta):
    """c = op(a) @ op(b) + beta * c, where op(m) is m.T when trans_m, else m.

    All three are 2-D arrays of one dtype, float32 or float64, whose rows are contiguous;
    beta is 0 (overwrite c) or 1 (accumulate into c). This body is what Python runs.
    """
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if beta:
        c += product
    else:
        c[...] = product


@njit(cache=True)
def _leading_dim(m):
    if m.strides[1] != m.itemsize:
        raise ValueError("gemm: every matrix needs contiguous rows")
    return m.strides[0] // m.itemsize


@overload(gemm, nogil=True)
def _gemm_compiled(a, trans_a, b, trans_b, c, beta):
    if not (a.dtype == b.dtype == c.dtype and a.dtype in (types.float32, types.float64)):
        return None
    cblas = _sgemm if a.dtype == types.float32 else _dgemm

    def impl(a, trans_a, b, trans_b, c, beta):
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k_b, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k_b != k or c.shape[0] != m or c.shape[1] != n:
            raise ValueError("gemm: shapes do not match")
        one = c.dtype.type(1)
        cblas(np.int32(_CBLAS_ROW_MAJOR),
              np.int32(_CBLAS_TRANS if trans_a else _CBLAS_NO_TRANS),
              np.int32(_CBLAS_TRANS if trans_b else _CBLAS_NO_TRANS),
              m, n, k, one, a.ctypes.data, _leading_dim(a), b.ctypes.data, _leading_dim(b),
              one if beta else c.dtype.type(0), c.ctypes.data, _leading_dim(c))
    return impl
