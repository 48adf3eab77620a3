"""Which kernel implementation the layers call: the Numba kernels or their plain-NumPy twins.

Both live in ``fastconv.kernels`` (``jit`` and ``reference``) and expose the same functions
with the same signatures, so a layer asks ``kernels()`` for the module on every call and the
switch takes effect at once, even for layers built before it.
"""
import importlib
import os

from fastconv._switch import Switch

BACKENDS = ("numba", "numpy")
_MODULES = {"numba": "fastconv.kernels.jit", "numpy": "fastconv.kernels.reference"}


_backend = Switch("backend", BACKENDS, os.environ.get("FASTCONV_BACKEND", "numba"))


def use_backend(name):
    """Select the kernels every layer uses from now on, in every thread: ``"numba"``
    (default) or ``"numpy"``."""
    _backend.set(name)


def get_backend():
    """The name of the backend in use here."""
    return _backend.get()


def using_backend(name):
    """``with using_backend("numpy"):`` runs a block on one backend, then restores the
    previous one; other threads are not affected."""
    return _backend.using(name)


_loaded = {}


def kernels(name=None):
    """The kernel module of ``name`` (default: the current backend)."""
    name = _backend.get() if name is None else _backend.checked(name)
    module = _loaded.get(name)
    if module is None:  # layers ask on every call: import once
        module = _loaded[name] = importlib.import_module(_MODULES[name])
    return module


backend = using_backend  # short name inside this module; the package exports using_backend
