"""The jit kernels' large outputs are made again from arrays nothing holds, never from one
that something still references."""
import threading

import numpy as np
import pytest

from fastconv.kernels.jit import recycle
from fastconv.nets import SimpleConvNet
from fastconv.optimizer import Adam

BIG = (600, 128)  # 600 KB in float64: above recycle.MIN_BYTES


@pytest.fixture(autouse=True)
def nothing_kept():
    recycle.release()
    yield
    recycle.release()


def address(a):
    return a.__array_interface__["data"][0]


def test_an_array_nothing_holds_is_made_again_from_its_memory():
    a = recycle.empty(BIG, np.float64)
    where = address(a)
    del a
    again = recycle.empty(BIG, np.float64)
    assert address(again) == where
    assert again.shape == BIG and again.dtype == np.float64 and again.flags.c_contiguous
    assert again.flags.owndata and again.flags.writeable


@pytest.mark.parametrize("hold", ["name", "view", "list", "reshape"])
def test_an_array_still_referenced_is_never_handed_out(hold):
    a = recycle.empty(BIG, np.float64)
    a[:] = 7.0
    where = address(a)
    keeper = {"name": lambda: a, "view": lambda: a[10:], "list": lambda: [a],
              "reshape": lambda: a.reshape(-1)}[hold]()
    del a
    for _ in range(recycle.MAX_KEPT_PER_SHAPE + 1):
        other = recycle.empty(BIG, np.float64)
        assert address(other) != where
        other[:] = -1.0
    held = keeper if hold != "list" else keeper[0]
    assert (held == 7.0).all()


def test_other_shapes_dtypes_and_small_arrays_are_new():
    a = recycle.empty(BIG, np.float64)
    where = address(a)
    del a
    assert address(recycle.empty(BIG, np.float32)) != where
    assert address(recycle.empty((128, 600), np.float64)) != where
    small = recycle.empty((10, 10), np.float64)
    del small
    assert recycle._kept.get(((10, 10), np.dtype(np.float64))) is None


def test_kept_memory_stays_under_its_bound_giving_up_old_shapes_first(monkeypatch):
    monkeypatch.setattr(recycle, "MAX_KEPT_BYTES", 3 * 610 * 128 * 8)
    for rows in range(600, 610):  # ten shapes, each dropped at once
        recycle.empty((rows, 128), np.float64)
        assert recycle._kept_bytes <= recycle.MAX_KEPT_BYTES
    kept_rows = sorted(key[0][0] for key, arrays in recycle._kept.items() if arrays)
    assert kept_rows == [607, 608, 609]


def test_arrays_held_by_callers_are_not_counted_out_of_the_bound(monkeypatch):
    size = np.prod(BIG) * 8
    monkeypatch.setattr(recycle, "MAX_KEPT_BYTES", 2 * size)
    held = [recycle.empty((rows, 128), np.float64) for rows in range(600, 604)]
    assert recycle._kept_bytes <= recycle.MAX_KEPT_BYTES
    assert len({address(a) for a in held}) == 4


def test_threads_never_share_an_array():
    results, errors = [], []
    start = threading.Barrier(8)

    def work(mark):
        try:
            start.wait()
            mine = []
            for _ in range(50):
                a = recycle.empty(BIG, np.float64)
                a[:] = mark
                mine.append(a)
                if len(mine) > 2:
                    mine.pop(0)
                assert all((m == mark).all() for m in mine)
            results.append(mark)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(float(i),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 8


def _step(net, opt, x, t):
    grads = net.gradient(x, t)
    opt.update(net.params, grads)
    return grads


def test_training_steps_never_write_an_output_that_is_held():
    np.random.seed(0)
    net = SimpleConvNet(dtype=np.float64)
    opt = Adam()
    rng = np.random.default_rng(0)
    x, t = rng.random((100, 1, 28, 28)), rng.integers(0, 10, 100)
    pool = net.layers["Pool1"]
    _step(net, opt, x, t)
    held, held_argmax = pool.fused_block.out, pool.argmax
    held_copy, held_argmax_copy = held.copy(), held_argmax.copy()
    grads = _step(net, opt, x, t)
    held_grad = grads["W2"]
    held_grad_copy = held_grad.copy()
    addresses = set()
    for _ in range(4):
        _step(net, opt, x, t)
        addresses.add(address(pool.fused_block.out))
    assert (held == held_copy).all() and (held_grad == held_grad_copy).all()
    assert (held_argmax == held_argmax_copy).all()
    assert address(held) not in addresses


def test_a_step_gives_the_same_bits_with_and_without_recycling(monkeypatch):
    def gradients():
        np.random.seed(0)
        net = SimpleConvNet(dtype=np.float32)
        opt = Adam()
        rng = np.random.default_rng(1)
        x = rng.random((64, 1, 28, 28), dtype=np.float32)
        t = rng.integers(0, 10, 64)
        for _ in range(3):
            grads = _step(net, opt, x, t)
        return {k: v.copy() for k, v in grads.items()}

    recycled = gradients()
    monkeypatch.setattr(recycle, "MIN_BYTES", 1 << 62)
    fresh = gradients()
    for key in fresh:
        np.testing.assert_array_equal(recycled[key], fresh[key])
