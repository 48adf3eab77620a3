"""One loop kernel compiled twice: parallel for large arrays, serial for small ones.

A parallel loop costs about 50 us to start with Numba's workqueue threading layer, more than
a whole ReLU of a 100x100 array or an optimizer step on a bias vector. ``parallel_above``
compiles the same Python function both ways (``prange`` runs as ``range`` in the serial
build) and picks one per call from the size of the first argument; each element's arithmetic
is the same in both, so the choice never changes a result.
"""
import functools
import types

from numba import njit

__all__ = ["parallel_above"]

PARALLEL_MIN_SIZE = 1 << 16  # elements; below this the launch costs more than it saves


def _renamed(fn, suffix):
    # Numba names cache files after the qualified name: the serial build needs its own.
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def parallel_above(min_size=PARALLEL_MIN_SIZE):
    def decorate(fn):
        parallel = njit(parallel=True, cache=True)(fn)
        serial = njit(cache=True)(_renamed(fn, "_serial"))

        @functools.wraps(fn)
        def call(*args):
            kernel = parallel if args[0].size >= min_size else serial
            return kernel(*args)

        call.parallel, call.serial = parallel, serial
        return call
    return decorate
