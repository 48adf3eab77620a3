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
