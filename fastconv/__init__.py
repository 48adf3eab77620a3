"""fastconv: a Numba-compiled drop-in replacement for the 'Deep Learning from Scratch' package.

Zero-change mode: the book's scripts run as they are, and fastconv serves the book's modules
(``common.layers``, ``dataset.mnist``, the chapters' networks) where your copy defines them
as the book does::

    python -m fastconv ch07/train_convnet.py     # or: fastconv run ch07/train_convnet.py
    %load_ext fastconv                           # IPython / Jupyter, in the first cell
    fastconv.install()                           # from code, before the book's imports

Import swap: ``from fastconv.layers import Convolution`` for ``from common.layers import
Convolution`` (likewise functions, util, gradient, optimizer, trainer, the networks and
``fastconv.datasets.load_mnist``).

Two modes: ``parity`` (the default: float64 and the book's order of random draws, so the
book's numbers) and ``fast`` (float32, one forward pass a step); choose with
``FASTCONV_MODE``, ``set_mode``/``using_mode`` or ``--fast``.
"""
import importlib.util as _importlib_util
import os as _os
import sys as _sys


def _mount_source_kernels():
    # Installed builds map kernels/ to fastconv.kernels through package-dir; a bare source
    # checkout (``python -m pytest`` from the repository root) has no such mapping, so the
    # sibling kernels/ folder is registered under the same name by hand.
    name = __name__ + ".kernels"
    if _importlib_util.find_spec(name) is not None:
        return
    init = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))),
                         "kernels", "__init__.py")
    if not _os.path.isfile(init):
        return
    spec = _importlib_util.spec_from_file_location(
        name, init, submodule_search_locations=[_os.path.dirname(init)])
    module = _importlib_util.module_from_spec(spec)
    _sys.modules[name] = module
    spec.loader.exec_module(module)


_mount_source_kernels()


def _choose_threading_layer():
    # workqueue: OpenMP workers spin after each parallel loop and fight the BLAS threads of
    # the GEMM that follows (on 2 cores a SimpleConvNet step ran ~10x slower), and GNU
    # OpenMP kills a forked child that runs a parallel loop; workqueue starts its threads
    # again in a forked child. It aborts when two threads run parallel loops at once, so
    # fastconv lets one thread at a time into them (kernels/jit/dispatch.py). TBB is safe
    # both ways but needs a separate package that pip puts outside the loader's path, and
    # was no faster here (docs/safety.md). An explicit NUMBA_THREADING_LAYER from
    # the user still wins.
    if "NUMBA_THREADING_LAYER" in _os.environ:
        return
    import numba
    from numba.np.ufunc import parallel
    if getattr(parallel, "_is_initialized", False):
        # numba.set_num_threads() or a parallel function ran before this import
        if numba.threading_layer() == "omp":
            import warnings
            warnings.warn("Numba's threads were started with the OpenMP layer before fastconv "
                          "was imported; its spinning workers slow fastconv down several "
                          "times on small machines. Import fastconv first, or set "
                          "NUMBA_THREADING_LAYER=workqueue.", RuntimeWarning, stacklevel=3)
        return
    numba.config.THREADING_LAYER = "workqueue"


_choose_threading_layer()

# The context manager is exported as using_backend: a package attribute named "backend"
# would hide the fastconv.backend module.
from fastconv.backend import use_backend, get_backend, using_backend  # noqa: E402
from fastconv.mode import set_mode, get_mode, using_mode  # noqa: E402


def install(**options):
    """Zero-change mode from code: the book's modules imported from now on are served by
    fastconv where equivalent (see fastconv.zerochange.install for the options)."""
    from fastconv.zerochange import install as _install
    _install(**options)


def load_ipython_extension(ipython):  # %load_ext fastconv
    from fastconv.zerochange.ipython import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython):
    from fastconv.zerochange.ipython import unload_ipython_extension as _unload
    _unload(ipython)


__version__ = "0.1.0"
__all__ = ["use_backend", "get_backend", "using_backend", "set_mode", "get_mode", "using_mode",
           "install", "__version__"]
