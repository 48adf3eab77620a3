"""asv benchmark suite of fastconv (see asv.conf.json and docs/benchmarking.md).

- ``bench_kernels``: every kernel and optimizer update, by convolution geometry
  (``fastconv.bench.CONV_SHAPES``), dtype, backend and threads.
- ``bench_training``: whole training steps by mode (fast/parity), inference over 10k images,
  peak memory and ``Slowdown``, fastconv's time over its NumPy twin's (lower is better).
- ``bench_scripts``: a book-style script run as ``python`` and ``python -m fastconv``.
- ``_threads``: the ``threads`` parameter, pinning Numba's and BLAS's threads.
- ``publish_offline.py``: ``asv publish`` plus the scripts the dashboard needs, for offline
  viewing.
- ``compare.py`` is not an asv suite: it is the side-by-side script against the book's code
  and PyTorch (``python benchmarks/compare.py``). It and ``torch_models`` import nothing heavy
  at module level, so asv's discovery can import them harmlessly.

Every benchmark calls its kernels once in ``setup``, so Numba compilation (or loading the
on-disk cache) is never timed.
"""
