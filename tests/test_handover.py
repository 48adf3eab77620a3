"""The pool threads of ``kernels.jit.handover``: results in order, errors handed back, no lost
wake-up when either side sleeps, no deadlock when a second caller or a task hands over, and a
pool thread whose caller was interrupted let go."""
import dis
import sys
import threading
import time

import numpy as np
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


# the caller's bookkeeping, where a KeyboardInterrupt may land
BOOKKEEPING = ("hand_over", "_take_caller", "_caller_free", "_results", "_retire",
               "_PoolThread.post", "_PoolThread.result", "Counter.raise_to", "Counter.wake",
               "Counter.wait_for", "Counter.sleep_until")


def _checked_offsets(code):
    """Where CPython looks for a pending signal in code: entering it, jumping back, and after
    a call returns (the KeyboardInterrupt then comes before the next instruction)."""
    offsets, after_call = set(), False
    for instruction in dis.get_instructions(code):
        if after_call or instruction.opname == "RESUME" or "BACKWARD" in instruction.opname:
            offsets.add(instruction.offset)
        after_call = instruction.opname in ("CALL", "CALL_FUNCTION_EX")
    return offsets


def _interrupted_at(k, fn, checked):
    """fn() with a KeyboardInterrupt raised at the k-th place of ``checked`` (code -> offsets)
    that this thread reaches; whether one was."""
    reached = 0

    def at_opcode(frame, event, arg):
        nonlocal reached
        if event == "opcode" and frame.f_lasti in checked[frame.f_code]:
            reached += 1
            if reached == k:
                raise KeyboardInterrupt
        return at_opcode

    def on_call(frame, event, arg):
        if frame.f_code in checked:
            frame.f_trace_opcodes = True
            return at_opcode
        return None
    sys.settrace(on_call)
    try:
        fn()
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


def interrupt_everywhere(asleep):
    """Hand-overs, each with a KeyboardInterrupt caught at the next place of the bookkeeping
    where one can land, each followed by two that must run on the pool, each task once; the
    number of places. With asleep, the tasks outlast both spins (pool thread and caller
    sleep)."""
    def code(name):
        owner, _, attribute = name.rpartition(".")
        return getattr(getattr(handover, owner) if owner else handover, attribute).__code__
    checked = {code(name): _checked_offsets(code(name)) for name in BOOKKEEPING}
    # and the Python code of the standard library's locks, if the bookkeeping comes to use it
    for method in ("__enter__", "__exit__", "wait", "notify", "_release_save",
                   "_acquire_restore", "_is_owned"):
        function = getattr(threading.Condition, method)
        checked[function.__code__] = _checked_offsets(function.__code__)
    runs = np.zeros(2, np.int64)
    pause = 0.004 if asleep else 0.0

    def task(i):
        def run():
            runs[i] += 1
            time.sleep(pause)
            return threading.get_ident()
        return run

    def step():
        return handover.hand_over(task(0), [task(1)])
    step()
    k = 1
    while True:
        time.sleep(pause)
        before = list(handover._threads)
        if not _interrupted_at(k, step, checked):
            return k - 1
        # the interrupted step's parts end (a retired thread ends after its part), so that
        # none counts a run below
        for thread in before:
            if thread in handover._threads:
                while not thread.finished():
                    time.sleep(0.001)
            else:
                thread.thread.join()
        runs[:] = 0
        for _ in range(2):
            done = step()
            assert done is not None, f"the pool is off after an interrupt at {k}"
            assert done[1][0] != threading.get_ident(), k
        assert list(runs) == [2, 2], f"after an interrupt at {k}: tasks ran {runs} times"
        k += 1


@pytest.mark.parametrize("asleep", ["spinning", "asleep"])
def test_a_caught_interrupt_anywhere_in_a_hand_over_leaves_the_pool_working(asleep):
    # caught (a notebook's interrupt), one left the hand-over's lock held for good, the pool
    # off; one deadlocked a later hand-over on a Condition's lock; one between a post's count
    # and its raise made a later task run twice on the pool thread. In a process of its own:
    # a hang fails the test
    out = run_script("import sys; sys.path.insert(0, sys.argv[1]); import test_handover; "
                     "print(test_handover.interrupt_everywhere(sys.argv[2] == 'asleep'))",
                     asleep)
    assert int(out.split()[-1]) > 10  # the places were reached


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
