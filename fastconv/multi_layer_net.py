"""The book's ``common/multi_layer_net.py`` module name.

Its star import brings what the book's does (the book's module has no ``__all__``): the
network, the layers and functions it imports, ``np``, ``os``, ``sys``, ``OrderedDict`` and
``numerical_gradient``.
"""
import os  # noqa: F401
import sys  # noqa: F401
from collections import OrderedDict  # noqa: F401

import numpy as np  # noqa: F401

from fastconv.gradient import numerical_gradient  # noqa: F401
from fastconv.layers import *  # noqa: F401,F403
from fastconv.layers import __all__ as _layer_names
from fastconv.nets.multi_layer_net import MultiLayerNet  # noqa: F401

__all__ = ["MultiLayerNet", "OrderedDict", "numerical_gradient", "os", "sys", *_layer_names]
