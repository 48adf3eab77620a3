"""The conv pipeline's two ways to run a part: one compiled call with BLAS bound from NumPy's
OpenBLAS, or its Python source multiplying through NumPy (where that library is missing).
Both must give the twin's results, and each must be independent of the thread count."""
import contextlib

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fastconv.kernels import jit, reference
from fastconv.kernels.jit import blas, pipeline
from fastconv.kernels.shapes import conv_output_hw

from test_kernels import assert_all_close, assert_close, block_geometry, conv_operands
from test_threads import all_kernels

# the compiled path links against the bound BLAS: without one, LLVM would abort the process
PATHS = st.sampled_from(["compiled", "python"] if blas.AVAILABLE else ["python"])


@contextlib.contextmanager
def part_path(path, chunk_bytes=None):
    """Parts run compiled or as Python; chunk_bytes=1 makes every image a chunk of its own in
    both loops, im2col and Winograd (the floor of positions per chunk goes too)."""
    saved = (pipeline.COMPILED, pipeline.CHUNK_BYTES, pipeline.WINOGRAD_CHUNK_BYTES,
             pipeline.MIN_CHUNK_POSITIONS)
    pipeline.COMPILED = path == "compiled"
    if chunk_bytes is not None:
        pipeline.CHUNK_BYTES = pipeline.WINOGRAD_CHUNK_BYTES = chunk_bytes
    if chunk_bytes == 1:
        pipeline.MIN_CHUNK_POSITIONS = 1
    try:
        yield
    finally:
        (pipeline.COMPILED, pipeline.CHUNK_BYTES, pipeline.WINOGRAD_CHUNK_BYTES,
         pipeline.MIN_CHUNK_POSITIONS) = saved


@contextlib.contextmanager
def recording_results(name, record=lambda result: result):
    """Records record(what it returned) for each call of pipeline.<name>; yields the list and
    puts the function back after."""
    function = getattr(pipeline, name)
    records = []

    def recording(*args):
        result = function(*args)
        records.append(record(result))
        return result

    setattr(pipeline, name, recording)
    try:
        yield records
    finally:
        setattr(pipeline, name, function)


@contextlib.contextmanager
def recording_choices(operands, settings, taken=lambda picked: picked is not None):
    """Sets each (module, name) of settings to its value and records each call of
    pipeline.<operands> (the function that picks a path; by default None for "not this
    one", else taken(what it returned) says); yields the list of choices (True: the path was
    taken) and restores everything after."""
    saved = {key: getattr(*key) for key in settings}
    for (module, name), value in settings.items():
        setattr(module, name, value)
    try:
        with recording_results(operands, taken) as chosen:
            yield chosen
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def test_numpy_wheels_bundled_openblas_is_bound():
    """pip's NumPy 2 bundles scipy-openblas (ILP64); there the compiled path must be on, so
    that it cannot silently fall back to the slower Python loop."""
    config = getattr(np.__config__, "CONFIG", {})  # NumPy >= 1.25
    blas_info = config.get("Build Dependencies", {}).get("blas", {})
    if blas_info.get("name") != "scipy-openblas" or "USE64BITINT" not in str(blas_info):
        pytest.skip(f"NumPy links {blas_info.get('name', 'another BLAS')}, not scipy-openblas64")
    assert blas.AVAILABLE and pipeline.COMPILED


def test_an_openblas_in_numpys_wheel_is_bound():
    """NumPy 1.2x wheels bundle an OpenBLAS with cblas_?gemm64_, NumPy 2's scipy_cblas_?gemm64_."""
    if not blas._numpy_wheel_libraries():
        pytest.skip("this NumPy bundles no OpenBLAS")
    assert blas.AVAILABLE and "64-bit sizes" in blas.BOUND


class FakeLibrary:
    """Stands for a ctypes library: the given symbols, and OpenBLAS's config string."""

    def __init__(self, *symbols, config=None):
        for name in symbols:
            setattr(self, name, object())
        if config is not None:
            get_config = lambda: config.encode()  # noqa: E731
            setattr(self, symbols[0].split("cblas")[0] + "openblas_get_config", get_config)


@pytest.mark.parametrize("lib, want", [
    (FakeLibrary("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
     ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", True)),
    (FakeLibrary("cblas_sgemm64_", "cblas_dgemm64_"), ("cblas_sgemm64_", "cblas_dgemm64_", True)),
    (FakeLibrary("cblas_sgemm", "cblas_dgemm", config="OpenBLAS 0.3.21 DYNAMIC_ARCH Zen MAX_THREADS=64"),
     ("cblas_sgemm", "cblas_dgemm", False)),
    (FakeLibrary("cblas_sgemm", "cblas_dgemm", config="OpenBLAS 0.3.21 USE64BITINT Zen"),
     ("cblas_sgemm", "cblas_dgemm", True)),
    (FakeLibrary("scipy_cblas_sgemm", "scipy_cblas_dgemm", config="OpenBLAS 0.3.28 Haswell"),
     ("scipy_cblas_sgemm", "scipy_cblas_dgemm", False)),
    (FakeLibrary("cblas_sgemm", "cblas_dgemm", "MKL_Get_Version"),
     ("cblas_sgemm", "cblas_dgemm", False)),
    (FakeLibrary("cblas_sgemm", "cblas_dgemm"), None),  # BLIS, Accelerate...: width unknown
    (FakeLibrary("cblas_sgemm", config="OpenBLAS"), None),  # no dgemm
])
def test_cblas_symbols_and_their_integer_width(lib, want):
    assert blas._cblas_symbols(lib) == want


def test_mkl_with_its_64bit_interface_is_not_bound(monkeypatch):
    monkeypatch.setenv("MKL_INTERFACE_LAYER", "ILP64")
    assert blas._cblas_symbols(FakeLibrary("cblas_sgemm", "cblas_dgemm", "MKL_Get_Version")) is None


NARROWING_SCRIPT = """
import numpy as np
from numba import njit
from fastconv.kernels import jit, reference
from fastconv.kernels.jit import blas
print(blas.BOUND)
print(len(blas._shims))

@njit
def call(a, trans_a, b, trans_b, c, beta):
    blas.gemm(a, trans_a, b, trans_b, c, beta)

rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = rng.standard_normal((29, 37) if trans_a else (37, 29)).astype(dtype)
            b = rng.standard_normal((53, 29) if trans_b else (29, 53)).astype(dtype)
            c = rng.standard_normal((37, 53)).astype(dtype)
            want = (a.T if trans_a else a) @ (b.T if trans_b else b) + c
            call(a, trans_a, b, trans_b, c, 1)
            np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
x = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
out, ctx = jit.conv2d_forward(x, W, b, 1, 1)
np.testing.assert_allclose(out, reference.conv2d_forward(x, W, b, 1, 1)[0], rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_a_32bit_cblas_is_called_through_the_narrowing_shim(tmp_path):
    """Where NumPy links a 32-bit BLAS (Debian's, conda's), gemm goes through the shim. Here
    FASTCONV_CBLAS binds the 32-bit OpenBLAS of the scipy-openblas32 wheel (a test extra).

    On x86-64 a 32-bit callee reads the low half of each 64-bit argument, so the products
    would come out right even without the shim; that the shims exist is checked directly."""
    scipy_openblas32 = pytest.importorskip("scipy_openblas32")
    import glob
    import os
    import subprocess
    import sys
    path, = [p for p in glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "*scipy_openblas*"))
             if p.endswith((".so", ".dylib", ".dll"))]  # not Windows' import library
    env = dict(os.environ, FASTCONV_CBLAS=path, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", NARROWING_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    bound, shims, ok = proc.stdout.split("\n")[:3]
    assert bound.startswith("scipy_cblas_sgemm/scipy_cblas_dgemm (32-bit sizes)"), bound
    assert shims == "2" and ok == "ok"


@pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS bound for compiled code")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0, 1])
def test_compiled_gemm_equals_numpy_matmul(dtype, trans_a, trans_b, beta):
    from numba import njit

    @njit
    def call(a, b, c):
        blas.gemm(a, trans_a, b, trans_b, c, beta)

    rng = np.random.default_rng(0)
    m, n, k = 37, 53, 29
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    product = (a.T if trans_a else a) @ (b.T if trans_b else b)
    compiled, python = c0.copy(), c0.copy()
    call(a, b, compiled)
    blas.gemm(a, trans_a, b, trans_b, python, beta)
    want = product + c0 if beta else product
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(compiled, want, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(python, want, rtol=rtol, atol=rtol * 10)
    if not beta:  # the same OpenBLAS product as NumPy's
        np.testing.assert_array_equal(compiled, product)


@pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS bound for compiled code")
def test_compiled_gemm_rejects_mismatched_shapes_and_strided_rows():
    from numba import njit

    @njit
    def call(a, b, c):
        blas.gemm(a, False, b, False, c, 0)

    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        call(a, np.ones((5, 2), np.float32), np.empty((4, 2), np.float32))
    with pytest.raises(ValueError, match="contiguous rows"):
        call(np.ones((4, 6), np.float32)[:, ::2], np.ones((3, 2), np.float32),
             np.empty((4, 2), np.float32))


@settings(max_examples=30, deadline=None)
@given(block_geometry(), st.integers(1, 4), st.sampled_from([np.float32, np.float64]),
       st.booleans(), PATHS, st.sampled_from([1, None]), st.integers(3, 6),
       st.integers(0, 2**32 - 1))
def test_both_paths_match_the_twin(geometry, FN, dtype, need_dx, path, chunk_bytes, N, seed):
    shape, fh, fw, stride, pad, *pool = geometry
    shape = (N,) + shape[1:]  # 3+ images: with chunk_bytes=1 some part walks 2+ chunks
    ph, pw, _, pp = pool
    conv_h, conv_w = conv_output_hw(shape[2], shape[3], fh, fw, stride, pad)
    assume(conv_h + 2 * pp >= ph and conv_w + 2 * pp >= pw)  # the pool window fits
    rng, x, W, b = conv_operands(shape, FN, fh, fw, dtype, seed)
    ref_out, ref_ctx = reference.conv2d_forward(x, W, b, stride, pad)
    ref_block, ref_argmax, ref_block_ctx = reference.conv_relu_pool_forward(
        x, W, b, stride, pad, *pool)
    dout = rng.standard_normal(ref_out.shape).astype(dtype)
    dblock = rng.standard_normal(ref_block.shape).astype(dtype)
    with part_path(path, chunk_bytes):
        out, ctx = jit.conv2d_forward(x, W, b, stride, pad)
        grads = jit.conv2d_backward(dout, x, W, ctx, stride, pad, need_dx)
        block, argmax, block_ctx = jit.conv_relu_pool_forward(x, W, b, stride, pad, *pool)
        # from the twin's output and argmax: a float32 near-tie may pick another cell
        block_grads = jit.conv_relu_pool_backward(dblock, ref_block, ref_argmax, x, W,
                                                  block_ctx, stride, pad, *pool, need_dx)
    assert_close(out, ref_out, dtype)
    assert_all_close(grads, reference.conv2d_backward(dout, x, W, ref_ctx, stride, pad,
                                                      need_dx), dtype)
    assert_close(block, ref_block, dtype)
    exact = block == ref_block
    np.testing.assert_array_equal(argmax[exact], ref_argmax[exact])
    assert_all_close(block_grads, reference.conv_relu_pool_backward(
        dblock, ref_block, ref_argmax, x, W, ref_block_ctx, stride, pad, *pool, need_dx), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_path_is_thread_count_independent(run_with_threads, dtype):  # noqa: F811
    with part_path("python"):
        one = run_with_threads(1, lambda: all_kernels(dtype))
        two = run_with_threads(2, lambda: all_kernels(dtype))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
