"""Parity mode (the book's numbers) or fast mode (float32, one forward pass a step).

``parity`` is the default: networks compute in float64, the book's dtype, and the
``Trainer`` makes every random draw in the book's order, its loss pass after each update
included, so the same ``np.random.seed`` prints the book's numbers to rounding.

``fast`` trades that for speed: networks default to float32, and the ``Trainer`` records the
loss of the step's own forward pass instead of running a second one.

Select it with ``FASTCONV_MODE=fast`` in the environment, ``fastconv.set_mode("fast")`` or
``with fastconv.using_mode("fast"):`` in code, or ``python -m fastconv --fast`` (which sets
the environment variable, so worker processes follow). An explicit ``dtype=`` on a network
always wins over the mode.
"""
import os

import numpy as np

from fastconv._switch import Switch

__all__ = ["MODES", "set_mode", "get_mode", "using_mode", "default_dtype", "is_fast"]

MODES = ("parity", "fast")
ENV_VAR = "FASTCONV_MODE"

_mode = Switch("mode", MODES, os.environ.get(ENV_VAR) or "parity", source=ENV_VAR)


def set_mode(name):
    """Select ``"parity"`` (the book's numbers, float64) or ``"fast"`` (float32) from now on,
    in every thread."""
    _mode.set(name)


def get_mode():
    """The name of the mode in use here: ``"parity"`` or ``"fast"``."""
    return _mode.get()


def using_mode(name):
    """``with using_mode("fast"):`` runs a block in one mode, then restores the previous one;
    other threads are not affected."""
    return _mode.using(name)


def is_fast():
    return _mode.get() == "fast"


def default_dtype():
    """The dtype a network gets when its constructor is given none."""
    return np.dtype(np.float32) if is_fast() else np.dtype(np.float64)
