"""Data sets for the book's examples, returned in the book's format.

``from fastconv.datasets.mnist import load_mnist`` replaces the book's
``from dataset.mnist import load_mnist``.
"""
from fastconv.datasets.idx import IDXFormatError, read_idx, write_idx
from fastconv.datasets.mnist import (MNISTFormatError, MNISTNotFoundError, load_fashion_mnist,
                                     load_mnist)

__all__ = ["load_mnist", "load_fashion_mnist", "MNISTNotFoundError", "MNISTFormatError",
           "read_idx", "write_idx", "IDXFormatError"]
