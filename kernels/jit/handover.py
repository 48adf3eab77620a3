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
linger (docs/performance-history.md, thirteenth session).

A counter is raised by one thread and waited on by another (``Counter``). The raiser stores,
then reads whether the waiter sleeps; the waiter says it sleeps, then reads the counter; both
sequentially consistent, so one of them sees the other's store and no wake-up is lost.

A KeyboardInterrupt that a program catches (a notebook's interrupt, a script that saves and
goes on) can land between any two bytecodes of the caller's bookkeeping. So a sleeper waits
on a ``queue.SimpleQueue``, whose put and get are single C calls (a ``threading.Condition``,
Python code, could be left with its lock held and deadlock the next hand-over); every pool
thread a hand-over has posted to is retired when the hand-over ends by an exception, since
its count may no longer match the caller's (a task could run twice); and the mark of the
thread handing work over is one that this thread can take back after an interrupt
(``_caller_free``).

While it spins, a pool thread also runs the second halves of the products that compiled code
posts to its mailbox (``halves``, ``mailbox``): BLAS calls it makes without the GIL. A caller
that finds it asleep nudges it awake for the products that follow.

One caller at a time hands work over (``hand_over``); a second thread calling meanwhile, or a
task that hands over from inside a pool thread, gets None and runs its tasks itself. A forked
child starts its own threads.
"""
import atexit
import os
import queue
import sys
import threading
import time

import numba
import numpy as np
from numba import njit

from . import halves
from .atomics import load as _load, spin_hint as _spin_hint, store as _store
from .blas_pin import _blas_libraries

__all__ = ["hand_over", "mailbox", "WORKER_SPIN_US", "CALLER_SPIN_US", "LINGER_US"]

WORKER_SPIN_US = 500   # a pool thread's wait for its next task, spinning, before it sleeps
CALLER_SPIN_US = 2000  # the caller's wait for a pool thread's task, spinning, before it sleeps
LINGER_US = 8          # a pool thread's pause between seeing its task and taking the GIL
# a sleeping pool thread is nudged awake for mailbox products at most this often: where the
# products come further apart than its spin (a BatchNorm network's first layer), it serves
# none and each wake only costs (that step: 1.03x the time nudged at every product, 1.02x at
# most every 5 ms, within the spread of the blocks)
NUDGE_INTERVAL_S = 0.005

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


@njit(nogil=True, cache=True)
def _raise_then_serve(raised, count, awaited, awaited_count, spins, linger, mailbox):
    """``_raise_then_wait``, and while it waits, the products posted to the thread's mailbox
    (``halves``) run here, each starting the count of looks again. The mailbox is open only
    in here."""
    if count >= 0:
        _store(raised, 0, count)
        if _load(raised, 1):
            return -1
    halves.open_mailbox(mailbox)
    looks = 0
    while True:
        if halves.serve_posted(mailbox):
            looks = 0
        elif _load(awaited, 0) >= awaited_count or looks >= spins:
            if halves.close_mailbox(mailbox):
                break
        else:
            _spin_hint()
            looks += 1
    if _load(awaited, 0) >= awaited_count:
        for _ in range(linger):
            _spin_hint()
        return 1
    return 0


_spins_per_us = None


def _spins(us):
    """How many looks of ``_raise_then_wait`` take about `us` microseconds on this machine."""
    global _spins_per_us
    if _spins_per_us is None:
        cells, looks = np.zeros(2, np.int64), 4000
        _raise_then_wait(cells, -1, cells, 1, 1, 0)  # compiled (or loaded) before it is timed
        # the fastest of five: one timing that the OS interrupts would shorten every spin
        # of the process's life
        fastest = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            _raise_then_wait(cells, -1, cells, 1, looks, 0)
            fastest = min(fastest, time.perf_counter() - start)
        _spins_per_us = looks / max(fastest * 1e6, 1e-3)
    return max(1, int(us * _spins_per_us))


class Counter:
    """A count that one thread raises and another waits for: spinning, then asleep."""

    def __init__(self):
        self.cells = np.zeros(2, np.int64)  # [count, 1 while the waiter sleeps]
        # a token per wake-up; one left over from a waiter that did not sleep costs the next
        # sleep one more look at the count
        self._tokens = queue.SimpleQueue()
        self._nudged = False

    def value(self):
        return int(self.cells[0])

    def raise_to(self, count):
        if _exchange(self.cells, 0, count, 1):
            self.wake()

    def wake(self):
        """Wakes the waiter, which said it sleeps."""
        self._tokens.put(None)

    def wait_for(self, count, spin_us):
        if _raise_then_wait(self.cells, -1, self.cells, count, _spins(spin_us), 0) == 0:
            self.sleep_until(count)

    def sleep_until(self, count):
        """Sleeps until the count reaches `count`, or until ``nudge``."""
        try:
            while _exchange(self.cells, 1, 1, 0) < count and not self._nudged:
                self._tokens.get()
        finally:
            self.cells[1] = 0  # a raiser that still sees 1 only leaves a token
            self._nudged = False

    def nudge(self):
        """Wakes a sleeping waiter before the count has come."""
        if self.cells[1]:
            self._nudged = True
            self._tokens.put(None)


class _PoolThread:
    """A thread that runs the tasks posted to it, one at a time, in order."""

    def __init__(self, name):
        self.posted, self.done = Counter(), Counter()
        self.count = 0  # tasks posted so far
        self._task = self._outcome = None
        self.mailbox = halves.closed_mailbox()
        # serves its mailbox from the first call of ``mailbox()`` on: the serving wait loop
        # takes 0.37 s to compile on an empty cache, which a network without mid-sized
        # products (SimpleConvNet's first step) need not pay
        self.serving = False
        self.nudged_at = 0.0
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

    def _wait(self, done_count, posted_count, spins, linger):
        if self.serving:
            return _raise_then_serve(self.done.cells, done_count, self.posted.cells,
                                     posted_count, spins, linger, self.mailbox)
        return _raise_then_wait(self.done.cells, done_count, self.posted.cells, posted_count,
                                spins, linger)

    def _serve(self):
        spins, linger = _spins(WORKER_SPIN_US), _spins(LINGER_US)
        count = 1
        came = self._wait(-1, count, spins, linger)
        while True:
            if not came:
                self.posted.sleep_until(count)
                if self.posted.value() < count:  # nudged: the mailbox is wanted again
                    came = self._wait(-1, count, spins, linger)
                    continue
            task = self._task
            if task is None:
                return
            try:
                self._outcome = (True, task())
            except BaseException as error:  # handed back to the caller, which raises it
                self._outcome = (False, error)
            came = self._wait(count, count + 1, spins, linger)
            if came < 0:
                self.done.wake()
                came = self._wait(-1, count + 1, spins, linger)
            count += 1


_threads = []  # the pool threads, started as first needed
# The ident of the thread handing work over, 0 if none: set under _gate, a lock held for a
# few bytecodes whose `with` releases it whatever is raised inside.
_gate = threading.Lock()
_caller = 0


def _caller_free(me, frame):
    """Under _gate: whether thread `me`, whose calls below `frame` are running, may hand work
    over (or start the pool): no thread is handing work over, or only `me` in a hand-over
    that an exception ended before it gave the mark back (no ``hand_over`` of its own is
    running: none is on its stack)."""
    if not _caller:
        return True
    if _caller != me:
        return False
    while frame is not None:
        if frame.f_code is hand_over.__code__:
            return False
        frame = frame.f_back
    return True


def _take_caller():
    """Whether this thread may hand work over now; if so, it is marked as the one that does."""
    global _caller
    me = threading.get_ident()
    with _gate:
        if not _caller_free(me, sys._getframe(2)):  # from hand_over's caller down
            return False
        _caller = me
        return True


def hand_over(here, there):
    """(here(), [task() for task in there]): each task of `there` on a pool thread of its
    own, `here` on the calling thread; None, with nothing run, while another thread hands
    work over (or this one, from inside a task)."""
    global _caller
    if not _take_caller():
        return None
    try:
        while len(_threads) < len(there):
            _threads.append(_PoolThread(f"fastconv-parts-{len(_threads)}"))
        helpers = _threads[:len(there)]
        try:
            for thread, task in zip(helpers, there):
                thread.post(task)
        except BaseException:
            # raised inside a post, a thread's count may differ from ours
            for thread in helpers:
                _retire(thread)
            raise
        try:
            mine = here()
        finally:
            theirs = _results(helpers)
        return mine, theirs
    finally:
        _caller = 0


_CLOSED = halves.closed_mailbox()  # no thread opens it
_blas_of_each_thread = None


def mailbox():
    """Where this thread's compiled products post their second halves (``halves``): the first
    pool thread's mailbox, the thread started if need be, while Numba allows this thread two
    threads or more; else a mailbox that no thread opens."""
    global _blas_of_each_thread
    if not halves.ENABLED or numba.get_num_threads() < 2:
        return _CLOSED
    if _blas_of_each_thread is None:
        # a BLAS whose thread count each thread sets (MKL) would run the pool thread's half
        # on as many threads as it likes: the pool thread pins it only in Python tasks
        _blas_of_each_thread = bool(_blas_libraries()[1])
    if _blas_of_each_thread:
        return _CLOSED
    threads = _threads
    try:
        thread = threads[0]
    except IndexError:
        pass
    else:
        thread.serving = True
        now = time.monotonic()
        if now - thread.nudged_at > NUDGE_INTERVAL_S:
            # asleep, it has closed its mailbox: woken, it opens it for the next products
            thread.nudged_at = now
            thread.posted.nudge()
        return thread.mailbox
    with _gate:  # (not while a hand-over may be starting threads)
        if not _caller_free(threading.get_ident(), sys._getframe(1)):
            return _CLOSED
        if not _threads:
            _threads.append(_PoolThread("fastconv-parts-0"))
        _threads[0].serving = True
        return _threads[0].mailbox


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
    """Let thread go: it ends once its current task, if any, has; a retired thread is not
    posted to again."""
    if thread in _threads:
        _threads.remove(thread)
        thread.post(None)  # taken once its current task ends


@atexit.register
def _end_pool_threads():
    for thread in list(_threads):
        _retire(thread)


def _forget_threads_in_child():
    # the child inherits the list, not the threads; nor may it inherit a held lock
    global _threads, _gate, _caller
    _threads, _gate, _caller = [], threading.Lock(), 0


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_threads_in_child)
