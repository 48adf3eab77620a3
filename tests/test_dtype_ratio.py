"""benchmarks/dtype_ratio.py: the kernels of a step found, phases timed, the layers restored."""
import numpy as np
import pytest


@pytest.fixture(scope="module")
def dtype_ratio(load_script):
    return load_script("benchmarks/dtype_ratio.py")


def test_cases_cover_the_step_and_restore_the_layers(dtype_ratio):
    from fastconv.layers import Affine
    from fastconv.layers.fused import ConvReluBlock
    from fastconv.nets import base
    originals = (ConvReluBlock.forward, ConvReluBlock.backward, Affine.backward, base.chain)
    cases, source = dtype_ratio.build_cases(["simple", "extend"], "random", steps=False)
    assert (ConvReluBlock.forward, ConvReluBlock.backward, Affine.backward,
            base.chain) == originals
    assert source == "uniform noise"
    names = [name for name, _ in cases]
    block = "simple conv1 1->30 5x5 pad 0 at 28x28 +relu+pool"
    # the first block needs no input gradient: no dx GEMM, col2im or crop
    assert [n for n in names if n.startswith(block + " | ")] == [
        f"{block} | {phase}" for phase in dtype_ratio.PHASES[:7]] + [
        f"{block} | epilogue without argmax (inference)"]
    for name in ("simple affine 4320x100 backward", "simple softmax + loss forward",
                 "extend batchnorm 100 backward", "extend dropout 100 forward (NumPy)",
                 "extend SGD update", "simple unfused maxpool backward",
                 "simple unfused col2im (the book's layout)"):
        assert name in names
    assert len(names) == len(set(names))


def test_phase_driver_does_the_pipelines_work(dtype_ratio, monkeypatch):
    """The epilogue phase, run over the batch, writes the block's forward output: the
    driver times the kernels the im2col pipeline runs, on the whole batch."""
    from fastconv.kernels import jit
    from fastconv.kernels.jit import epilogues as ep, pipeline
    from fastconv.kernels.jit.pipeline import _layer_operands
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 6, 6))
    W = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    monkeypatch.setattr(pipeline, "DIRECT_MAX_CHANNELS", 0)  # the phases are im2col's
    want, argmax_want, _ = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
    x, Wm, geometry, _ = _layer_operands(x, W, 1, 1)
    chunk = 2
    scratch = (np.empty(18 * chunk * 36), np.empty(3 * chunk * 36),
               np.empty((chunk, 2, 8, 8)))
    out, argmax = np.full_like(want, np.nan), np.empty_like(argmax_want)
    epilogue = (ep.OUTPUT_RELU_POOL, b, (2, 2, 2, 0), out, argmax)
    prologue = (ep.GRADIENT_RELU_POOL, (2, 2, 2, 0), out, out, argmax)
    drive = dtype_ratio._phase_driver()
    # phase by phase, the whole batch each: only the last chunk's scratch survives, so run
    # one chunk at a time through pad, im2col, GEMM and epilogue
    for n0 in range(0, 5, chunk):
        part = x[n0:n0 + chunk]
        for phase in (0, 1, 2):
            drive(phase, part, Wm, chunk, geometry, scratch, epilogue, prologue,
                  np.zeros(Wm.shape), np.zeros(3), np.empty_like(part))
        shifted = (ep.OUTPUT_RELU_POOL, b, (2, 2, 2, 0), out[n0:], argmax[n0:])
        drive(3, part, Wm, chunk, geometry, scratch, shifted, prologue,
              np.zeros(Wm.shape), np.zeros(3), np.empty_like(part))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(argmax, argmax_want)


def test_measure_and_table(dtype_ratio):
    calls = []

    def make(dtype):
        return lambda: calls.append(dtype)
    result = dtype_ratio.measure([("noop", make)], rounds=3)
    t32, t64, ratio = result["noop"]
    assert t32 > 0 and t64 > 0 and ratio > 0
    assert set(calls) == {np.float32, np.float64}
    table = dtype_ratio.markdown({"slow": (1e-3, 5e-3, 5.0), "fine": (1e-3, 2e-3, 2.0)})
    assert "| slow | 1000.0 us | 5000.0 us | **5.00** |" in table
    assert "| fine | 1000.0 us | 2000.0 us | 2.00 |" in table


def test_unknown_network_is_refused(dtype_ratio):
    with pytest.raises(SystemExit):
        dtype_ratio.main(["--nets", "simple,lenet"])
