"""benchmarks/profile_step.py: every block of a DeepConvNet step timed, the classes restored."""
import numba
import pytest


@pytest.fixture(scope="module")
def profile_step(load_script):
    return load_script("benchmarks/profile_step.py")


def test_profile_names_every_block_and_restores_the_layers(profile_step):
    from fastconv.layers import Affine
    from fastconv.layers.fused import ConvReluBlock
    from fastconv.nets import base
    originals = (ConvReluBlock.forward, ConvReluBlock.backward, Affine.forward, base.chain)
    rows, step, chained = profile_step.profile("float32", steps=2)
    convs = [label for label in rows if label.startswith("conv ")]
    assert len(convs) == 6 and "conv 32->32 3x3 pad 2 at 14x14 +relu+pool" in convs
    assert {"affine 1024x50", "affine 50x10", "Adam update", "softmax + loss"} <= set(rows)
    first = rows["conv 1->16 3x3 pad 1 at 28x28 +relu"]
    # forward + weight gradient only: 2 * (100 images * 16 * 28 * 28 * 9 taps) * 2
    assert first["flops"] == 2 * 100 * 16 * 28 * 28 * 9 * 2
    timed = sum(r.get("forward", 0) + r.get("backward", 0) + r.get("update", 0)
                for r in rows.values())
    assert 0 < timed <= step * 1.05  # the parts are inside the step
    assert (ConvReluBlock.forward, ConvReluBlock.backward, Affine.forward,
            base.chain) == originals
    # every layer ran its own forward pass, the affine layers too
    assert all(rows[label].get("forward", 0) > 0 for label in convs + ["affine 1024x50"])
    table = profile_step.markdown(rows, step, "float32", 1, chained=chained)
    assert table.count("| conv ") == 6 and "As the network runs it" in table
    assert chained["step"] > 0
    from fastconv.kernels.jit import gemm
    assert gemm.handoff_log is None  # recording stopped
    handoffs = chained["handoffs"]
    if numba.get_num_threads() > 1 and gemm.PARTS > 1:  # the chain, forward and backward
        assert handoffs["per_step"] == 2 and 0 < handoffs["start"] < step
        assert 0 <= handoffs["beyond"] < step and "Hand-overs to the pool thread" in table


def test_handoff_summary_of_a_made_up_log(profile_step):
    # called at 0; caller done at 5; pool group from 2 to 9; returned at 10 (2 steps)
    log = [(0.0, 5.0, [(2.0, 9.0)], 10.0), (20.0, 30.0, [(21.0, 24.0)], 30.5)]
    summary = profile_step.handoff_summary(log, steps=2)
    assert summary["per_step"] == 1 and summary["start"] == 1.5
    assert summary["wake"] == 1.0  # only the first: there the caller finished first
    assert summary["beyond"] == ((10.0 - 7.0) + (10.5 - 10.0)) / 2
    assert profile_step.handoff_summary([], steps=2) is None


def test_simple_convnet_profile_counts_its_first_layer_without_input_gradient(profile_step):
    rows, _, _ = profile_step.profile("float64", steps=1, net_name="simple")
    first = rows["conv 1->30 5x5 pad 0 at 28x28 +relu+pool"]
    # forward + weight gradient only: 2 * (100 images * 30 * 24 * 24 * 25 taps) * 2
    assert first["flops"] == 2 * 100 * 30 * 24 * 24 * 25 * 2
    assert "affine 4320x100" in rows
    assert profile_step.markdown(rows, 1.0, "float64", 1, "simple").startswith("SimpleConvNet")
