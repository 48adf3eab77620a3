import importlib.util
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fastconv.backend import backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def load_script():
    """``load_script("benchmarks/compare.py")``: a script of the repository as a fresh module
    (benchmarks/ and tools/ are not on the tests' sys.path); the caller's fixture scope says
    how long that module lives."""
    def load(relative_path):
        path = ROOT / relative_path
        spec = importlib.util.spec_from_file_location("_script_" + path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def blobs(n_train, n_test, features, classes=3, seed=0):
    """(x_train, t_train, x_test, t_test): one Gaussian blob a class, far enough apart that a
    small network learns them in a few epochs."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 2
    t = rng.integers(0, classes, n_train + n_test)
    x = centers[t] + rng.standard_normal((n_train + n_test, features))
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


@pytest.fixture
def run_with_threads():
    """run(n, fn): fn() with n Numba threads, the count before restored after."""
    import numba
    before = numba.get_num_threads()

    def run(n, fn):
        numba.set_num_threads(n)
        try:
            return fn()
        finally:
            numba.set_num_threads(before)

    return run


@pytest.fixture
def numpy_backend():
    with backend("numpy"):
        yield


def tolerance(dtype):
    """rtol/atol for comparing a jit kernel with its NumPy twin."""
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def peak_bytes(action):
    """(peak memory that tracemalloc, which sees NumPy's arrays, traced while ``action()``
    ran, the exception it raised or None): the hostile-file tests expect an error, and a
    bounded peak on the way to it."""
    tracemalloc.start()
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        error = exc
    else:
        error = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error
