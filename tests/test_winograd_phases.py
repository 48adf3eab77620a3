"""benchmarks/winograd_phases.py: its phases, run in the pipeline's order, are the pipeline."""
import numpy as np
import pytest

from fastconv.kernels import jit
from fastconv.kernels.jit.winograd import filter_gradient


@pytest.fixture(scope="module")
def phases(load_script):
    return load_script("benchmarks/winograd_phases.py")


@pytest.mark.parametrize("pooled", [True, False])
def test_phases_in_order_give_the_blocks_forward_and_backward(phases, pooled):
    # 8 channels of 6x6 (pad 1): one chunk holds all 3 images, so the driver's loops over the
    # batch are the pipeline's
    args, W = phases.operands(8, 8, 6, 1, pooled, np.float64, images=3, seed=3)
    x, U, chunk, geometry, scratch, epilogue, prologue, dU, db, dx = args
    assert chunk >= 3
    drive = phases.phase_driver()
    names = phases.phases_of(pooled)
    first_backward = next(name for name in names if name in phases.BACKWARD)
    for name in names:
        if name == first_backward:  # the backward pass transforms its input again
            drive(phases.PHASES.index("input transform"), *args)
        drive(phases.PHASES.index(name), *args)
    _, b, _, out, argmax = epilogue
    dout = prologue[2]
    if pooled:
        want, want_argmax, ctx = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
        np.testing.assert_array_equal(argmax, want_argmax)
        want_dx, want_dW, want_db = jit.conv_relu_pool_backward(
            dout, want, want_argmax, x, W, ctx, 1, 1, 2, 2, 2, 0, True)
    else:
        want, ctx = jit.conv_relu_forward(x, W, b, 1, 1)
        want_dx, want_dW, want_db = jit.conv_relu_backward(dout, want, x, W, ctx, 1, 1, True)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(filter_gradient(dU), want_dW, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, want_db, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-10)


def test_the_table_has_a_row_per_phase_and_a_total(phases):
    times = {label: {name: 1e-6 for name in phases.phases_of(pooled)}
             for label, *_, pooled in phases.LAYERS}
    table = phases.markdown(times, "float32")
    assert table.count("\n| ") == len(phases.PHASES) + 2  # the header, the phases, the total
    assert "| **total** (input transform twice) | **8** | **11** | **8** |" in table
