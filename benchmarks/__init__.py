"""asv benchmark suite of fastconv (see asv.conf.json and "Benchmarks (asv)" in README.md).

- ``bench_kernels``: every kernel and optimizer update, by convolution geometry
  (``fastconv.bench.CONV_SHAPES``), dtype and backend.
- ``bench_training``: whole training steps, inference over 10k images, peak memory and the
  speed-up over the NumPy backend.
- ``compare.py`` is not an asv suite: it is the side-by-side script against the book's code
  and PyTorch (``python benchmarks/compare.py``). It and ``torch_models`` import nothing heavy
  at module level, so asv's discovery can import them harmlessly.

Every benchmark calls its kernels once in ``setup``, so Numba compilation (or loading the
on-disk cache) is never timed.
"""
