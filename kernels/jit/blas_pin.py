"""BLAS on one thread while fastconv multiplies, from any Python thread and after a fork.

Why one thread: OpenBLAS cuts a product over its threads differently from how it runs it on
one, and the last bits change (SimpleConvNet's float32 gradient by ~2e-7 relative), so the
jit kernels pin BLAS to one thread and split large products themselves (``gemm``).

Why not threadpoolctl alone: the OpenBLAS that NumPy's wheels bundle is built on pthreads and
keeps a single thread count for the whole process (``openblas_set_num_threads_local`` is
process-wide too, in 0.3.31). Recent threadpoolctl (3.8 here) therefore lets only the
first thread that sets it change it and silently ignores the others, so a pin set in a
``threading.Thread`` did nothing and that thread's gradient differed from the main
thread's. Such a library gets one pin shared by every thread inside fastconv: the first
thread to enter pins it, the last to leave restores it, and the count is set through the
library's own functions. Libraries whose count belongs to each thread (MKL's
``MKL_Set_Num_Threads_Local``, an OpenBLAS built on OpenMP) are pinned by each thread for
itself, through threadpoolctl.

While any thread is inside fastconv, a process-wide BLAS runs on one thread for the other
threads too, as it did before for the main thread.
"""
import ctypes
import itertools
import os
import threading

__all__ = ["single_threaded_blas"]


class _ProcessWideOpenBLAS:
    """The thread count of an OpenBLAS built on pthreads, read and set without threadpoolctl."""

    def __init__(self, filepath):
        lib = ctypes.CDLL(filepath)  # the copy NumPy loaded: dlopen returns the same handle
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                self._get, self._set = get, put
                return
        raise OSError(f"no openblas_get/set_num_threads in {filepath}")

    def get_num_threads(self):
        return self._get()

    def set_num_threads(self, count):
        self._set(int(count))


def _thread_local_count(controller):
    return (controller.internal_api == "mkl"
            or getattr(controller, "threading_layer", None) == "openmp")


def _find_libraries():
    """(process-wide controllers, per-thread controllers) of the BLAS libraries loaded."""
    try:
        from threadpoolctl import ThreadpoolController
        found = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave BLAS alone
        return [], []
    shared, own = [], []
    for controller in found:
        if _thread_local_count(controller):
            own.append(controller)
        elif controller.internal_api == "openblas":
            try:
                shared.append(_ProcessWideOpenBLAS(controller.filepath))
            except OSError:
                shared.append(controller)
        else:
            shared.append(controller)  # BLIS, FlexiBLAS: one count, and threadpoolctl sets it
    return shared, own


_libraries = None


def _blas_libraries():
    global _libraries
    if _libraries is None:
        _libraries = _find_libraries()
    return _libraries


def _pin(controllers):
    saved = [(lib, lib.get_num_threads()) for lib in controllers]
    for lib, count in saved:
        if count != 1:
            lib.set_num_threads(1)
    return saved


def _restore(saved):
    for lib, count in saved:
        if count != 1:
            lib.set_num_threads(count)


class _SharedPin:
    """How many threads are inside a pin, and the process-wide counts saved by the first."""

    def __init__(self, holders=0, saved=()):
        self.lock = threading.Lock()
        self.holders = holders
        self.saved = list(saved)

    def enter(self, controllers):
        with self.lock:
            self.holders += 1
            if self.holders == 1:
                self.saved = _pin(controllers)

    def leave(self):
        with self.lock:
            self.holders -= 1
            if self.holders == 0:
                saved, self.saved = self.saved, []
                _restore(saved)


_shared = _SharedPin()
_this_thread = threading.local()  # .depth: how many pinned blocks this thread is in


class single_threaded_blas:
    """BLAS on one thread inside the ``with`` block; its previous thread count is restored
    after.

    Re-entrant: blocks nested in one thread pin and restore once, at the outermost block.
    A pin and restore costs ~4 us (as through threadpoolctl), so a network wraps its step in
    one block (``gemm.blas_scope``) and the GEMMs inside it pay only the nesting count. A
    class, not a generator: a step enters 8-14 nested blocks, at 1.1 us each as a generator.
    """

    __slots__ = ("_saved",)

    def __enter__(self):
        depth = getattr(_this_thread, "depth", 0)
        self._saved = None
        if depth == 0:
            shared, own = _blas_libraries()
            _shared.enter(shared)
            try:
                self._saved = _pin(own)
            except BaseException:
                _shared.leave()
                raise
        _this_thread.depth = depth + 1
        return self

    def __exit__(self, *exc_info):
        depth = _this_thread.depth - 1
        _this_thread.depth = depth
        if depth == 0:
            try:
                _restore(self._saved)
            finally:
                _shared.leave()
        return False


def _after_fork_in_child():
    # Only the forking thread lives on in the child, and the lock may have been held by a
    # thread that is gone. The pin is the forking thread's alone now: kept while it is
    # inside a block, released (the saved counts restored) when it is not.
    global _shared
    inside = getattr(_this_thread, "depth", 0) > 0
    stale = _shared.saved
    _shared = _SharedPin(holders=1 if inside else 0, saved=stale if inside else ())
    if not inside:
        _restore(stale)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
