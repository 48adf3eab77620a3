"""Kernels: plain functions on arrays with explicit shapes, no classes.

``fastconv.kernels.jit`` holds the Numba implementations and ``fastconv.kernels.reference``
their plain-NumPy twins (the book's algorithms). Both export the same names with the same
signatures and return the same shapes and dtypes; tests use the twin as the oracle.
"""
