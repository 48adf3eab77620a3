"""Mid-sized products in two halves (``kernels.jit.halves``), the second posted to a pool
thread that runs it without the GIL: the same bits whoever multiplies each half, the pool
thread really taking its half, and no hang or mix-up with several callers, Python tasks in
between, a sleeping pool thread, a retired one, or a fork."""
import threading
import time

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.kernels.jit import gemm, halves, handover

from test_concurrency import run_script

needs_compiled_halves = pytest.mark.skipif(
    not halves.ENABLED or numba.config.NUMBA_NUM_THREADS < 2,
    reason="needs a BLAS bound in compiled code and 2 Numba threads")


# A pool thread keeps its mailbox open only while it spins, 0.5 ms after a nudge by default.
# The tests look from a Python thread that has to be on a core then: on two busy cores (CI
# runs another test process beside) it was not, for a minute on end. Pool threads started
# here spin long enough for any scheduler; what is tested does not depend on how long.
PATIENT_SPIN_US = 100_000


@pytest.fixture(autouse=True, scope="module")
def patient_pool_threads():
    before = handover.WORKER_SPIN_US
    handover._end_pool_threads()  # their spin is fixed when they start
    handover.WORKER_SPIN_US = PATIENT_SPIN_US
    yield
    handover._end_pool_threads()
    handover.WORKER_SPIN_US = before


@pytest.fixture
def two_threads():
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    """op(a) (m, k) and op(b) (k, n) stored as blas.gemm takes them."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def pool_thread_ready(seconds=60):
    """Starts (or wakes) the first pool thread and waits until it spins with its mailbox
    open: its first start compiles its wait loop, which takes a while on an empty cache.
    Looks without sleeping: woken, the thread spins for half a millisecond, then sleeps."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if halves.state_of(handover.mailbox()) == halves.OPEN:
            return True
    return False


def pool_thread_asleep(seconds=60):
    """Waits, without calling ``mailbox()`` (which would wake it), until the first pool
    thread has stopped spinning and sleeps."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if handover._threads[0].posted.cells[1]:
            return True
        time.sleep(0.01)
    return False


def served():
    return int(handover.mailbox()[halves._SERVED])


def served_while_multiplying(a, b, halves_wanted, seconds=30):
    """Whether the pool thread runs that many halves of a @ b within `seconds`. Not at once:
    after a pause (a compile) it may wait for the GIL a few milliseconds to go to sleep, or
    to wake, and until then its mailbox is closed."""
    before = served()
    deadline = time.monotonic() + seconds
    while served() - before < halves_wanted and time.monotonic() < deadline:
        product_of(a, False, b, False, handover.mailbox())
    return served() - before >= halves_wanted


def product_of(a, trans_a, b, trans_b, mailbox, beta_start=None):
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    c = np.zeros((m, n), a.dtype) if beta_start is None else beta_start.copy()
    with gemm.single_threaded_blas():
        halves.multiply(a, trans_a, b, trans_b, c, 0 if beta_start is None else 1, mailbox)
    return c


@settings(max_examples=40, deadline=None)
@given(m=st.integers(60, 250), n=st.integers(60, 250), k=st.integers(200, 400),
       trans_a=st.booleans(), trans_b=st.booleans(), accumulate=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_halves_give_the_product_and_the_same_bits_whoever_multiplies(
        m, n, k, trans_a, trans_b, accumulate, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, m, n, k, trans_a, trans_b, dtype)
    start = rng.standard_normal((m, n)).astype(dtype) if accumulate else None
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        if halves.ENABLED and numba.get_num_threads() >= 2:
            assert pool_thread_ready()  # so that it takes the second half, mostly
        shared = product_of(a, trans_a, b, trans_b, handover.mailbox(), start)
    finally:
        numba.set_num_threads(before)
    alone = product_of(a, trans_a, b, trans_b, halves.closed_mailbox(), start)
    np.testing.assert_array_equal(shared, alone)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    if accumulate:
        want += start
    # entries are sums of k products of unit normals: their rounding grows with k
    np.testing.assert_allclose(shared, want, rtol=0, atol=k * (1e-5 if dtype == np.float32
                                                                else 1e-13))


@needs_compiled_halves
def test_the_pool_thread_takes_the_second_half(two_threads):
    rng = np.random.default_rng(0)
    a, b = operands(rng, 100, 50, 784, False, False, np.float32)
    assert pool_thread_ready()
    assert served_while_multiplying(a, b, 100)


@needs_compiled_halves
def test_one_thread_posts_nothing():
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert handover.mailbox() is handover._CLOSED
    finally:
        numba.set_num_threads(before)


@needs_compiled_halves
def test_small_and_large_products_are_not_cut():
    assert not halves.splits(100, 100, 100)       # 2 MFLOP: one call
    assert halves.splits(100, 50, 784)            # TwoLayerNet's first layer
    assert not halves.splits(8, 8, 100000)        # sides too short to cut
    assert not halves.splits(100, 100, 4320)      # the gemm pool's pieces take it


@needs_compiled_halves
def test_a_sleeping_pool_thread_is_woken_for_the_next_products(two_threads):
    rng = np.random.default_rng(1)
    a, b = operands(rng, 100, 50, 784, False, False, np.float32)
    assert pool_thread_ready()
    assert pool_thread_asleep()
    assert halves.state_of(handover._threads[0].mailbox) == halves.CLOSED
    assert pool_thread_ready(seconds=30)  # mailbox() woke it
    assert served_while_multiplying(a, b, 10)


@needs_compiled_halves
def test_callers_on_many_threads_and_python_tasks_between(two_threads):
    """Each caller's products come out right while others post, the first pool thread runs
    Python tasks in between, and pool threads retire and start again."""
    rng = np.random.default_rng(2)
    cases = [operands(rng, 100, 50, 784, False, False, np.float32),
             operands(rng, 60, 120, 300, True, False, np.float64),
             operands(rng, 64, 200, 150, False, True, np.float32)]
    wanted = [product_of(a, ta, b, tb, halves.closed_mailbox())
              for (a, b), (ta, tb) in zip(cases, [(False, False), (True, False), (False, True)])]
    errors = []

    def caller(i):
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        (a, b), (ta, tb) = cases[i % 3], [(False, False), (True, False), (False, True)][i % 3]
        for _ in range(150):
            got = product_of(a, ta, b, tb, handover.mailbox())
            if not np.array_equal(got, wanted[i % 3]):
                errors.append(i)
                return

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for i in range(60):
        assert handover.hand_over(lambda: 1, [lambda i=i: i]) in ((1, [i]), None)
        if i % 20 == 19:
            handover._end_pool_threads()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a caller hung"
    assert errors == []


def test_a_forked_child_multiplies_without_its_parents_pool_thread():
    out = run_script("""
import os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from fastconv.kernels.jit import gemm, handover
handover.WORKER_SPIN_US = 20_000_000  # the pool thread spins, its mailbox open, at the fork
rng = np.random.default_rng(0)
a = rng.standard_normal((100, 784)).astype(np.float32)
b = rng.standard_normal((784, 50)).astype(np.float32)
want = gemm.matmul(a, b)
from fastconv.kernels.jit import halves
while halves.state_of(handover.mailbox()) != halves.OPEN:
    gemm.matmul(a, b)
pid = os.fork()
if pid == 0:
    ok = all(np.array_equal(gemm.matmul(a, b), want) for _ in range(50))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), np.array_equal(gemm.matmul(a, b), want))
""")
    assert out.split() == ["0", "True"]


@pytest.mark.parametrize("state", [halves.CLOSED, halves.TAKEN, halves.POSTED,
                                   halves.RUNNING])
def test_a_caller_posts_only_to_an_open_mailbox(state):
    rng = np.random.default_rng(3)
    a, b = operands(rng, 50, 50, 784, False, False, np.float32)
    c = np.zeros((50, 50), np.float32)
    mailbox = halves.closed_mailbox()
    mailbox[halves._STATE] = halves._tagged(0, halves.OPEN)
    assert halves._post(a, False, b, False, c, 0, mailbox) == 1
    assert mailbox[halves._STATE] == halves._tagged(1, halves.POSTED)
    assert mailbox[halves._C] == c.ctypes.data
    mailbox[halves._STATE] = halves._tagged(1, state)
    before = mailbox.copy()
    assert halves._post(a, False, b, False, np.zeros_like(c), 0, mailbox) == 0
    np.testing.assert_array_equal(mailbox, before)


def test_a_caller_takes_back_only_its_own_post_before_it_starts():
    rng = np.random.default_rng(4)
    a, b = operands(rng, 50, 50, 784, False, False, np.float32)
    c = np.zeros((50, 50), np.float32)
    mailbox = halves.closed_mailbox()
    mailbox[halves._STATE] = halves._tagged(0, halves.OPEN)
    first = halves._post(a, False, b, False, c, 0, mailbox)
    assert halves._taken_back(mailbox, first)
    assert halves.state_of(mailbox) == halves.OPEN
    second = halves._post(a, False, b, False, c, 0, mailbox)
    assert second == first + 1
    assert not halves._taken_back(mailbox, first)  # another caller's post now
    mailbox[halves._STATE] = halves._tagged(second, halves.RUNNING)  # the pool thread has it
    assert not halves._taken_back(mailbox, second)


def test_a_network_without_mid_sized_products_does_not_compile_the_serving_loop():
    # SimpleConvNet's first step on an empty cache is a target (<= 10 s): the serving wait
    # loop would add 0.37 s to it
    out = run_script("""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from fastconv.kernels.jit import handover
from fastconv.nets import SimpleConvNet, TwoLayerNet
rng = np.random.default_rng(0)
net = SimpleConvNet(dtype=np.float32)
for _ in range(3):
    net.gradient(rng.random((100, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 100))
print(len(handover._threads) > 0, any(t.serving for t in handover._threads))
TwoLayerNet(784, 50, 10).gradient(rng.random((100, 784)), rng.integers(0, 10, 100))
print(all(t.serving for t in handover._threads[:1]))
""")
    assert out.split() == ["True", "False", "True"]
