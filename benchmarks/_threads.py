"""Thread pinning shared by the asv suites.

Every benchmark takes a ``threads`` parameter and runs with exactly that many threads for
both of fastconv's pools: Numba's (``numba.set_num_threads``, which also bounds fastconv's
GEMM worker threads) and the BLAS library NumPy loaded (threadpoolctl), which is the only
pool the NumPy backend has. Unpinned, OpenBLAS starts one thread per core and on a busy
machine its spinning threads made NumPy-backend samples bimodal (0.2 ms in one, 16 ms in
the next). The values come from ``FASTCONV_BENCH_THREADS`` (comma-separated, default
``1``: the steadiest figure on a shared machine); ``FASTCONV_BENCH_THREADS=1,2`` adds a
second series per benchmark.
"""
import os

ENV_VAR = "FASTCONV_BENCH_THREADS"


def thread_counts():
    """The ``threads`` parameter values, from ``FASTCONV_BENCH_THREADS``."""
    text = os.environ.get(ENV_VAR, "1")
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise ValueError(f"{ENV_VAR} must be positive integers separated by commas, "
                         f"such as '1' or '1,2'; got {text!r}")
    return counts


THREADS = thread_counts()


class Pinned:
    """Pins both thread pools in ``pin`` and restores them in ``teardown``."""

    _blas_limit = None
    _numba_before = None

    def pin(self, threads):
        import numba
        from threadpoolctl import threadpool_limits
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError(
                f"threads={threads} exceeds the {numba.config.NUMBA_NUM_THREADS} Numba "
                "threads of this machine")
        self._numba_before = numba.get_num_threads()
        numba.set_num_threads(threads)
        self._blas_limit = threadpool_limits(limits=threads, user_api="blas")

    def teardown(self, *params):
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None
        if self._numba_before is not None:
            import numba
            numba.set_num_threads(self._numba_before)
            self._numba_before = None
