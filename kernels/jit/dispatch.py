"""One loop kernel compiled twice: parallel for large arrays, serial for small ones.

A parallel loop costs 30-50 us to start with Numba's workqueue threading layer, and these
loops are memory-bound: on the 2-core reference machine the serial build of a ReLU or an SGD
step beat the 2-thread parallel one up to a million elements (ReLU at 1M: 140 against 204
us). Updates that take a square root and divide per element (AdaGrad, RMSprop, Adam) gain
from a second core sooner: Adam on 432,000 elements took 156 us serial and 110 us on 2
threads, and lost at 262,144 (104 against 143 us). ``parallel_above``
compiles the same Python function both ways (``prange`` runs as ``range`` in the serial
build) and picks one per call from the size of the first argument and the thread count;
each element's arithmetic is the same in both, and both use NumPy's error model (a division
by zero gives inf or NaN), so the choice never changes a result.

With one Numba thread the serial build runs whatever the size: workqueue hands even a
one-thread loop to its worker thread and waits for it, and Adam on 432,000 float32 elements
took 363 us that way against 213 us serial (one thread, medians of 400, interleaved).
"""
import functools
import types

import numba
from numba import njit

__all__ = ["parallel_above", "PARALLEL_MIN_SIZE", "PARALLEL_MIN_SIZE_DIVIDING"]

PARALLEL_MIN_SIZE = 1 << 20        # elements; below this a second thread does not pay
PARALLEL_MIN_SIZE_DIVIDING = 3 << 17  # the same for the updates that divide (393,216)


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
        # NumPy's error model, which parallel builds use too: a division by zero gives inf
        # or NaN as in NumPy instead of raising ZeroDivisionError half-way through an
        # in-place update, and without that branch a loop that divides vectorizes (Adam: 4-6x)
        serial = njit(cache=True, error_model="numpy")(_renamed(fn, "_serial_numpy_errors"))

        @functools.wraps(fn)
        def call(*args):
            if args[0].size >= min_size and numba.get_num_threads() > 1:
                return call.parallel(*args)
            return call.serial(*args)

        call.parallel, call.serial = parallel, serial
        return call
    return decorate
