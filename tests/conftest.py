import numpy as np
import pytest

from fastconv.backend import backend


@pytest.fixture
def numpy_backend():
    with backend("numpy"):
        yield


def tolerance(dtype):
    """rtol/atol for comparing a jit kernel with its NumPy twin."""
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
