"""Which kernel implementation the layers call: the Numba kernels or their plain-NumPy twins.

Both live in ``fastconv.kernels`` (``jit`` and ``reference``) and expose the same functions
with the same signatures, so a layer asks ``kernels()`` for the module on every call and the
switch takes effect at once, even for layers built before it.
"""
import contextlib
import contextvars
import importlib
import os

BACKENDS = ("numba", "numpy")
_MODULES = {"numba": "fastconv.kernels.jit", "numpy": "fastconv.kernels.reference"}


def _checked(name):
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name.lower()


_global = _checked(os.environ.get("FASTCONV_BACKEND", "numba"))
# using_backend() switches its own thread (or asyncio task) only
_local = contextvars.ContextVar("fastconv_backend", default=None)


def use_backend(name):
    """Select the kernels every layer uses from now on, in every thread: ``"numba"``
    (default) or ``"numpy"``."""
    global _global
    _global = _checked(name)


def get_backend():
    """The name of the backend in use here."""
    return _local.get() or _global


@contextlib.contextmanager
def using_backend(name):
    """Run a block on one backend, then restore the previous one; other threads are not
    affected."""
    token = _local.set(_checked(name))
    try:
        yield
    finally:
        _local.reset(token)


_loaded = {}


def kernels(name=None):
    """The kernel module of ``name`` (default: the current backend)."""
    name = (_local.get() or _global) if name is None else _checked(name)
    module = _loaded.get(name)
    if module is None:  # layers ask on every call: import once
        module = _loaded[name] = importlib.import_module(_MODULES[name])
    return module


backend = using_backend  # short name inside this module; the package exports using_backend
