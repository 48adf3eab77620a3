"""``gemm``: a matrix product that compiled code can call, and plain Python as well.

A conv pipeline that multiplies through NumPy must come back to Python for every product,
and on two threads each return waits for the GIL, which the other thread holds between its
own calls: a waiting thread sleeps, and waking it took 50-130 us on the 2-core reference
machine, several times per chunk. Called from a Numba kernel, the product needs no GIL, so a
thread's whole share of a layer becomes one ``nogil`` call.

Inside ``@njit`` code ``gemm`` calls ``cblas_?gemm`` of the BLAS that NumPy itself uses,
bound by address under names of our own (``fastconv_cblas_?gemm64``, 64-bit integers), so
that every cached kernel links against one ABI whichever BLAS is found:

- the OpenBLAS bundled in NumPy's wheels: ``scipy_cblas_?gemm64_`` (NumPy 2) or
  ``cblas_?gemm64_`` (NumPy 1.2x), both built with 64-bit integers;
- else the BLAS library NumPy loaded (threadpoolctl names its file), as a system or conda
  NumPy links it: an OpenBLAS, whose ``openblas_get_config`` tells its integer width, or MKL
  with its default 32-bit interface. A 32-bit ``cblas_?gemm`` is called through a small
  compiled shim that narrows the sizes.

``AVAILABLE`` is False where none of these is found (BLIS, Accelerate, a reference BLAS);
callers then run their kernels' Python source (``py_func``), in which ``gemm`` multiplies
through ``np.matmul``. Both use the same BLAS product, and the threads are pinned to one BLAS
thread either way (``gemm.single_threaded_blas``).
"""
import ctypes
import glob
import os
import warnings

import numpy as np
from numba import cfunc, njit, types
from numba.extending import overload

__all__ = ["gemm", "AVAILABLE", "BOUND"]

_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112
_INT32_MAX = 2**31 - 1


def _numpy_wheel_libraries():
    """Paths of the BLAS libraries bundled in NumPy's wheel (Linux, Windows, macOS)."""
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(root, os.pardir, "numpy.libs", "lib*openblas*"),
                os.path.join(root, ".dylibs", "lib*openblas*")]
    return sorted(p for pattern in patterns for p in glob.glob(pattern))


def _numpy_linked_libraries():
    """Paths of the BLAS libraries loaded in this process, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
        return [info["filepath"] for info in threadpool_info() if info.get("user_api") == "blas"]
    except Exception:  # threadpoolctl cannot read this platform's libraries
        return []


def _openblas_uses_64bit_ints(lib, config_symbol):
    get_config = getattr(lib, config_symbol, None)
    if get_config is None:
        return None
    get_config.restype = ctypes.c_char_p
    return b"USE64BITINT" in get_config()


def _cblas_symbols(lib):
    """(sgemm name, dgemm name, 64-bit ints?) that lib exports, or None where its integer
    width cannot be told."""
    has = lambda name: hasattr(lib, name)  # noqa: E731
    for prefix in ("scipy_cblas_", "cblas_"):  # OpenBLAS's 64-bit builds for NumPy
        if has(prefix + "sgemm64_") and has(prefix + "dgemm64_"):
            return prefix + "sgemm64_", prefix + "dgemm64_", True
    for prefix, config in (("scipy_cblas_", "scipy_openblas_get_config"),
                           ("cblas_", "openblas_get_config")):
        if has(prefix + "sgemm") and has(prefix + "dgemm"):
            wide = _openblas_uses_64bit_ints(lib, config)
            if wide is None and has("MKL_Get_Version"):
                # MKL's cblas takes 32-bit sizes unless its interface layer says ILP64, and
                # then the width is not one we can be sure of: leave wide unknown
                if "ILP64" not in os.environ.get("MKL_INTERFACE_LAYER", "").upper():
                    wide = False
            if wide is not None:
                return prefix + "sgemm", prefix + "dgemm", wide
    return None


def _find_cblas():
    """(ctypes library, path, symbols as ``_cblas_symbols`` gives them) or None.

    ``FASTCONV_CBLAS``, the path of an OpenBLAS or MKL library, replaces the search."""
    forced = os.environ.get("FASTCONV_CBLAS")
    for path in ([forced] if forced else _numpy_wheel_libraries() or _numpy_linked_libraries()):
        try:
            lib = ctypes.CDLL(path)  # where NumPy loaded it already, this is the same copy
        except OSError:
            continue
        symbols = _cblas_symbols(lib)
        if symbols is not None:
            return lib, os.path.normpath(path), symbols
    if forced:
        warnings.warn(f"FASTCONV_CBLAS={forced!r}: no OpenBLAS or MKL cblas_sgemm/cblas_dgemm "
                      "found there; convolutions multiply through NumPy", RuntimeWarning)
    return None


def _cblas_gemm(name, real, integer):
    # order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc; pointers as
    # 64-bit integers, which is how the x86-64 and AArch64 C ABIs pass them too
    i32, pointer = types.int32, types.uint64
    signature = types.void(i32, i32, i32, integer, integer, integer, real, pointer, integer,
                           pointer, integer, real, pointer, integer)
    return types.ExternalFunction(name, signature)


_sgemm = _cblas_gemm("fastconv_cblas_sgemm64", types.float32, types.int64)
_dgemm = _cblas_gemm("fastconv_cblas_dgemm64", types.float64, types.int64)
_sgemm32 = _cblas_gemm("fastconv_cblas_sgemm32", types.float32, types.int32)
_dgemm32 = _cblas_gemm("fastconv_cblas_dgemm32", types.float64, types.int32)


# The shims that give a 32-bit cblas_?gemm the 64-bit signature; compiled only where one is
# bound. The sizes fit: ``gemm`` refuses any above 2**31 - 1.
def _sgemm_narrowing(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    i = np.int32
    _sgemm32(order, ta, tb, i(m), i(n), i(k), alpha, a, i(lda), b, i(ldb), beta, c, i(ldc))


def _dgemm_narrowing(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    i = np.int32
    _dgemm32(order, ta, tb, i(m), i(n), i(k), alpha, a, i(lda), b, i(ldb), beta, c, i(ldc))


_shims = []  # the compiled shims, kept alive: LLVM holds their addresses


def _register_symbols():
    """Binds fastconv_cblas_?gemm64; returns a description of what was bound, or None."""
    found = _find_cblas()
    if found is None:
        return None
    lib, path, (sgemm, dgemm, wide) = found
    import llvmlite.binding as llvm
    address = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
    if wide:
        llvm.add_symbol("fastconv_cblas_sgemm64", address(sgemm))
        llvm.add_symbol("fastconv_cblas_dgemm64", address(dgemm))
    else:
        llvm.add_symbol("fastconv_cblas_sgemm32", address(sgemm))
        llvm.add_symbol("fastconv_cblas_dgemm32", address(dgemm))
        for name, narrowing, wide_gemm in (("fastconv_cblas_sgemm64", _sgemm_narrowing, _sgemm),
                                           ("fastconv_cblas_dgemm64", _dgemm_narrowing, _dgemm)):
            shim = cfunc(wide_gemm.sig, cache=True)(narrowing)
            _shims.append(shim)
            llvm.add_symbol(name, shim.address)
    return f"{sgemm}/{dgemm} ({'64' if wide else '32'}-bit sizes) from {path}"


# Registered at import, before Numba loads any cached kernel that links against them.
BOUND = _register_symbols()  # what gemm calls in compiled code, or None
AVAILABLE = BOUND is not None


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
        lda, ldb, ldc = _leading_dim(a), _leading_dim(b), _leading_dim(c)
        if max(m, n, k, lda, ldb, ldc) > _INT32_MAX:
            raise ValueError("gemm: a size above 2**31 - 1")  # a 32-bit BLAS may be bound
        one = c.dtype.type(1)
        cblas(np.int32(_CBLAS_ROW_MAJOR),
              np.int32(_CBLAS_TRANS if trans_a else _CBLAS_NO_TRANS),
              np.int32(_CBLAS_TRANS if trans_b else _CBLAS_NO_TRANS),
              m, n, k, one, a.ctypes.data, lda, b.ctypes.data, ldb,
              one if beta else c.dtype.type(0), c.ctypes.data, ldc)
    return impl
