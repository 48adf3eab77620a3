"""The pool threads of ``kernels.jit.handover``: results in order, errors handed back, no lost
wake-up when either side sleeps, no deadlock when a second caller or a task hands over, and a
pool thread whose caller was interrupted let go."""
import threading

import pytest

from fastconv.kernels.jit import handover

from test_concurrency import run_script


@pytest.fixture
def fresh_pool_threads():
    """Pool threads started inside the test (they read the spin times when they start), and
    none of them left to the tests after."""
    handover._end_pool_threads()
    yield
    handover._end_pool_threads()


def finishes(fn, seconds=60):
    """Whether fn() returns within `seconds` (a hang fails the test instead of the run)."""
    done = threading.Event()

    def run():
        fn()
        done.set()
    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def test_each_task_runs_once_on_a_thread_of_its_own(fresh_pool_threads):
    main = threading.get_ident()
    for i in range(50):
        here, there = handover.hand_over(lambda: (i, threading.get_ident()),
                                         [lambda k=k: (i, k, threading.get_ident())
                                          for k in range(3)])
        assert here == (i, main)
        assert [t[:2] for t in there] == [(i, 0), (i, 1), (i, 2)]
        assert len({t[2] for t in there} | {main}) == 4


def test_a_pool_task_error_reaches_the_caller_and_the_pool_goes_on(fresh_pool_threads):
    def fails():
        raise ValueError("from the pool thread")
    for _ in range(3):
        with pytest.raises(ValueError, match="from the pool thread"):
            handover.hand_over(lambda: 1, [fails])
        assert handover.hand_over(lambda: 1, [lambda: 2]) == (1, [2])


def test_the_callers_error_waits_for_the_pool_task(fresh_pool_threads):
    release, finished = threading.Event(), threading.Event()

    def slow():
        release.wait(10)
        finished.set()

    def fails():
        release.set()
        raise KeyError("caller")
    with pytest.raises(KeyError):
        handover.hand_over(fails, [slow])
    assert finished.is_set()  # no later hand-over can find this thread still busy


def test_a_second_caller_and_a_nested_call_get_none(fresh_pool_threads):
    nested = []
    assert finishes(lambda: nested.extend([
        handover.hand_over(lambda: handover.hand_over(lambda: 1, [lambda: 2]), [lambda: 3]),
        handover.hand_over(lambda: 1, [lambda: handover.hand_over(lambda: 1, [])])]), 10)
    assert nested == [(None, [3]), (1, [None])]
    inside, leave, seen = threading.Event(), threading.Event(), []

    def hold():
        inside.set()
        leave.wait(10)
    holder = threading.Thread(target=lambda: handover.hand_over(hold, [lambda: None]))
    holder.start()
    assert inside.wait(10)
    seen.append(handover.hand_over(lambda: 1, [lambda: 2]))
    leave.set()
    holder.join(10)
    assert seen == [None]


@pytest.mark.parametrize("spin_us", [0, 20])
def test_no_wake_up_is_lost_spinning_or_asleep(spin_us):
    """With (almost) no spinning every wait sleeps; with a short spin, waits end both ways.
    In a fresh interpreter with a time limit: a lost wake-up hangs there, not here."""
    out = run_script(f"""
import threading
from fastconv.kernels.jit import handover
handover.WORKER_SPIN_US = handover.CALLER_SPIN_US = {spin_us}
handover.LINGER_US = 0
counts = []
for i in range(2000):
    pause = [lambda: None, lambda: threading.Event().wait(1e-5)][i % 2]
    here, there = handover.hand_over(pause, [lambda i=i: (pause(), i)[1]])
    counts.append(there[0])
print(counts == list(range(2000)))
""")
    assert out.split() == ["True"]


def test_a_caller_interrupted_while_waiting_lets_its_pool_thread_go(fresh_pool_threads,
                                                                    monkeypatch):
    release = threading.Event()
    handover.hand_over(lambda: None, [lambda: None])
    (stuck,) = handover._threads
    real_wait = handover.Counter.wait_for

    def interrupted(counter, count, spin_us):
        raise KeyboardInterrupt
    monkeypatch.setattr(handover.Counter, "wait_for", interrupted)
    with pytest.raises(KeyboardInterrupt):
        handover.hand_over(lambda: None, [lambda: release.wait(10)])
    monkeypatch.setattr(handover.Counter, "wait_for", real_wait)
    assert stuck not in handover._threads
    # the next hand-over starts a new thread and does not wait on the stuck one
    assert finishes(lambda: handover.hand_over(lambda: 1, [lambda: 2]), seconds=5)
    release.set()
    stuck.thread.join(10)
    assert not stuck.thread.is_alive()  # it took its group's end, then the retirement


def test_a_spin_is_timed_right_though_its_timing_was_interrupted_once(monkeypatch):
    monkeypatch.setattr(handover, "_spins_per_us", None)
    quiet = handover._spins(1000)
    real_clock, calls = handover.time.perf_counter, []

    def clock_with_a_pause():
        calls.append(None)
        return real_clock() + (0.05 if len(calls) == 2 else 0.0)  # 50 ms off the core
    monkeypatch.setattr(handover.time, "perf_counter", clock_with_a_pause)
    monkeypatch.setattr(handover, "_spins_per_us", None)
    interrupted = handover._spins(1000)
    monkeypatch.undo()
    assert len(calls) > 2  # timed again after the pause
    assert interrupted > quiet / 3
