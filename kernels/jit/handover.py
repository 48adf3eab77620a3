"""Pool threads that take tasks from the calling thread, spinning a while before they sleep.

A thread that sleeps until it is handed work pays its core's wake-up, and so does the caller
that sleeps until the work is done. On the 2-vCPU reference machine a lock's round trip
between two threads took 40 us, and ``concurrent.futures``' hand-over of two tasks of 1 us
took 75 us: more than most parts of a step. So each pool thread here waits for its next task
by spinning on a counter, in compiled code that holds no GIL, for ``WORKER_SPIN_US``, and only
then sleeps; the caller spins on the thread's done counter likewise (``CALLER_SPIN_US``).
Spinning is bounded so that an idle process gives its cores back within a fraction of a
millisecond: OpenBLAS's threads, which spin for far longer, once made a step 10x slower
(``gemm``).

A pool thread that sees its task waits ``LINGER_US`` more before it asks for the GIL: the
caller holds the GIL while it starts its own task, and a thread that asks meanwhile sleeps
until it is released. In SimpleConvNet's step a pool thread now starts its part about 10 us
after the hand-over, against 56 us with ``concurrent.futures`` and 22-32 us without the
linger (docs/performance.md, thirteenth session).

A counter is raised by one thread and waited on by another (``Counter``). The raiser stores,
then reads whether the waiter sleeps; the waiter says it sleeps, then reads the counter; both
sequentially consistent, so one of them sees the other's store and no wake-up is lost.

One caller at a time hands work over (``hand_over``); a second thread calling meanwhile, or a
task that hands over from inside a pool thread, gets None and runs its tasks itself. A forked
child starts its own threads.
"""
import atexit
import os
import platform
import threading
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = ["hand_over", "WORKER_SPIN_US", "CALLER_SPIN_US", "LINGER_US"]

WORKER_SPIN_US = 500   # a pool thread's wait for its next task, spinning, before it sleeps
CALLER_SPIN_US = 2000  # the caller's wait for a pool thread's task, spinning, before it sleeps
LINGER_US = 8          # a pool thread's pause between seeing its task and taking the GIL

# x86's pause as the LLVM intrinsic: Numba's JIT has no assembler for inline asm
_SPIN_HINT = ("llvm.x86.sse2.pause" if platform.machine().lower() in ("x86_64", "amd64")
              else None)


def _cell_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


# Compiled code reads and writes the cells atomically, in sequential consistency, through
# the intrinsics below; run as Python (NUMBA_DISABLE_JIT), plain indexing under the GIL is
# ordered already, and there is no spin hint.
def _load(cells, index):
    return cells[index]


def _store(cells, index, value):
    cells[index] = value


def _spin_hint():
    pass


@intrinsic
def _atomic_load(typingctx, cells, index):
    def codegen(context, builder, signature, args):
        pointer = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)
    return types.int64(cells, index), codegen


@intrinsic
def _atomic_store(typingctx, cells, index, value):
    def codegen(context, builder, signature, args):
        pointer = _cell_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(cells, index, types.int64), codegen


@intrinsic
def _pause(typingctx):
    # tells the core that this is a wait loop: less power, and an SMT sibling runs faster
    def codegen(context, builder, signature, args):
        if _SPIN_HINT is not None:
            hint = cgutils.get_or_insert_function(builder.module,
                                                  ir.FunctionType(ir.VoidType(), []), _SPIN_HINT)
            builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


@overload(_load)
def _load_compiled(cells, index):
    return lambda cells, index: _atomic_load(cells, index)


@overload(_store)
def _store_compiled(cells, index, value):
    return lambda cells, index, value: _atomic_store(cells, index, value)


@overload(_spin_hint)
def _spin_hint_compiled():
    return lambda: _pause()


@njit(cache=True)
def _exchange(cells, store_at, value, load_at):
    """cells[store_at] = value, then cells[load_at], both sequentially consistent."""
    _store(cells, store_at, value)
    return _load(cells, load_at)


@njit(nogil=True, cache=True)
def _raise_then_wait(raised, count, awaited, awaited_count, spins, linger):
    """In one call without the GIL (raised holding it, the thread it wakes would wait for the
    GIL, asleep): raised's count set to `count` unless that is negative, and -1 at once if
    raised's waiter sleeps (to be woken); else 1 once awaited's count reaches awaited_count,
    0 after `spins` looks without that. On 1 it first spins `linger` looks more: the thread
    that raised awaited's count holds the GIL a few microseconds more, and a thread that asks
    for the GIL meanwhile sleeps and pays a wake-up (20-40 us on the reference machine)."""
    if count >= 0:
        _store(raised, 0, count)
        if _load(raised, 1):
            return -1
    for _ in range(spins):
        if _load(awaited, 0) >= awaited_count:
            for _ in range(linger):
                _spin_hint()
            return 1
        _spin_hint()
    return 1 if _load(awaited, 0) >= awaited_count else 0


_spins_per_us = None


def _spins(us):
    """How many looks of ``_raise_then_wait`` take about `us` microseconds on this machine."""
    global _spins_per_us
    if _spins_per_us is None:
        cells, looks = np.zeros(2, np.int64), 20000
        _raise_then_wait(cells, -1, cells, 1, 1, 0)  # compiled (or loaded) before it is timed
        start = time.perf_counter()
        _raise_then_wait(cells, -1, cells, 1, looks, 0)
        _spins_per_us = looks / max((time.perf_counter() - start) * 1e6, 1e-3)
    return max(1, int(us * _spins_per_us))


class Counter:
    """A count that one thread raises and another waits for: spinning, then asleep."""

    def __init__(self):
        self.cells = np.zeros(2, np.int64)  # [count, 1 while the waiter sleeps]
        self._wake = threading.Condition(threading.Lock())

    def value(self):
        return int(self.cells[0])

    def raise_to(self, count):
        if _exchange(self.cells, 0, count, 1):
            self.wake()

    def wake(self):
        """Wakes the waiter, which said it sleeps."""
        with self._wake:
            self._wake.notify()

    def wait_for(self, count, spin_us):
        if _raise_then_wait(self.cells, -1, self.cells, count, _spins(spin_us), 0) == 0:
            self.sleep_until(count)

    def sleep_until(self, count):
        with self._wake:
            try:
                while _exchange(self.cells, 1, 1, 0) < count:
                    self._wake.wait()
            finally:
                self.cells[1] = 0  # a raiser that still sees 1 only notifies nobody


class _PoolThread:
    """A thread that runs the tasks posted to it, one at a time, in order."""

    def __init__(self, name):
        self.posted, self.done = Counter(), Counter()
        self.count = 0  # tasks posted so far
        self._task = self._outcome = None
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def post(self, task):
        """Start task() on this thread; None ends the thread."""
        self._task = task
        self.count += 1
        self.posted.raise_to(self.count)

    def result(self):
        """What the last posted task returned, once it has; its exception raised again."""
        self.done.wait_for(self.count, CALLER_SPIN_US)
        ok, value = self._outcome
        if not ok:
            raise value
        return value

    def finished(self):
        return self.done.value() >= self.count

    def _serve(self):
        spins, linger = _spins(WORKER_SPIN_US), _spins(LINGER_US)
        count = 1
        came = _raise_then_wait(self.done.cells, -1, self.posted.cells, count, spins, linger)
        while True:
            if not came:
                self.posted.sleep_until(count)
            task = self._task
            if task is None:
                return
            try:
                self._outcome = (True, task())
            except BaseException as error:  # handed back to the caller, which raises it
                self._outcome = (False, error)
            came = _raise_then_wait(self.done.cells, count, self.posted.cells, count + 1,
                                    spins, linger)
            if came < 0:
                self.done.wake()
                came = _raise_then_wait(self.done.cells, -1, self.posted.cells, count + 1,
                                        spins, linger)
            count += 1


_threads = []               # the pool threads, started as first needed
_caller = threading.Lock()  # held by the one thread handing work over


def hand_over(here, there):
    """(here(), [task() for task in there]): each task of `there` on a pool thread of its
    own, `here` on the calling thread; None, with nothing run, while another thread hands
    work over (or this one, from inside a task)."""
    if not _caller.acquire(blocking=False):
        return None
    try:
        while len(_threads) < len(there):
            _threads.append(_PoolThread(f"fastconv-parts-{len(_threads)}"))
        helpers = _threads[:len(there)]
        for thread, task in zip(helpers, there):
            thread.post(task)
        try:
            mine = here()
        finally:
            theirs = _results(helpers)
        return mine, theirs
    finally:
        _caller.release()


def _results(helpers):
    """Each helper's result once all have ended; the first exception raised after that. A
    helper still running when its caller is interrupted is let go and replaced, so that no
    later hand-over waits on its task."""
    results, first_error = [], None
    for thread in helpers:
        try:
            results.append(thread.result())
        except BaseException as error:
            if not thread.finished():
                _retire(thread)
            first_error = first_error or error
    if first_error is not None:
        raise first_error
    return results


def _retire(thread):
    _threads.remove(thread)
    thread.post(None)  # taken once its current task ends


@atexit.register
def _end_pool_threads():
    for thread in list(_threads):
        _retire(thread)


def _forget_threads_in_child():
    # the child inherits the list, not the threads; nor may it inherit a held lock
    global _threads, _caller
    _threads, _caller = [], threading.Lock()


os.register_at_fork(after_in_child=_forget_threads_in_child)
