"""Drop-in layers for the book's ``common/layers.py``: same names, constructors and attributes.

Each layer holds its state and calls one kernel of the current backend per step
(``fastconv.use_backend``). The star import below also brings the book's functions into
scope, as ``from common.layers import *`` does.
"""
from fastconv import functions as _functions
from fastconv.functions import *  # noqa: F401,F403
from fastconv.util import im2col, col2im  # noqa: F401

from .activation import Relu, Sigmoid
from .linear import Affine
from .loss import SoftmaxWithLoss
from .normalization import BatchNormalization, Dropout
from .spatial import Convolution, Pooling

# The book's module has no __all__: its star import brings its classes, np and every name of
# common.functions, im2col and col2im, so this one lists the same.
__all__ = (["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "Dropout", "BatchNormalization",
            "Convolution", "Pooling", "im2col", "col2im"] + list(_functions.__all__))
