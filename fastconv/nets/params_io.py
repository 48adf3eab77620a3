"""Saving and loading network parameters, shared by every network in ``fastconv.nets``.

The file format is the book's: a pickle of a plain dict ``{key: ndarray}`` (``W1``, ``b1``,
...), so the book's published ``params.pkl`` files load here and our files load in the book's
code. A name ending in ``.npz`` uses NumPy's ``savez`` instead.

Loading is safe against malicious files: pickles go through :class:`RestrictedUnpickler`,
which resolves only the handful of globals a NumPy array pickle needs, and ``.npz`` files are
read with ``allow_pickle=False``. Everything is checked before anything is written, so a bad
file raises and leaves the network as it was.
"""
import collections
import codecs
import pickle

import numpy as np

try:  # NumPy >= 2 (1.26 also ships numpy._core for reading NumPy 2 pickles)
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - older NumPy
    from numpy.core import multiarray as _multiarray, numeric as _numeric

__all__ = ["RestrictedUnpickler", "read_params", "save_params", "load_params"]

# Every global an ndarray/dict pickle can name, for NumPy 1.x and 2.x writers:
# _reconstruct/ndarray/dtype/scalar (all protocols), _frombuffer (protocol 5), and
# _codecs.encode (protocols 0-2 write bytes through it).
_ALLOWED = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_module, "scalar")] = _multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _numeric._frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("collections", "OrderedDict")] = collections.OrderedDict
_ALLOWED[("_codecs", "encode")] = codecs.encode


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays, dicts and OrderedDicts, and nothing else.

    Any other global (``os.system``, ``builtins.eval``, ...) raises ``pickle.UnpicklingError``
    naming it, before it could be called.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name} in parameter file: only NumPy arrays in a "
                f"dict may be loaded") from None


def _is_npz(file_name):
    return str(file_name).lower().endswith(".npz")


def read_params(file_name):
    """The dict stored in ``file_name`` (book pickle or ``.npz``), read safely."""
    if _is_npz(file_name):
        with np.load(file_name, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    with open(file_name, "rb") as f:
        return RestrictedUnpickler(f).load()


def save_params(net, file_name="params.pkl"):
    """Write ``net.params`` (plus BatchNorm running statistics, when set) to ``file_name``."""
    data = dict(net.params)
    for key, (layer, attr, _) in net._state_slots().items():
        value = getattr(layer, attr)
        if value is not None:
            data[key] = np.asarray(value)
    if _is_npz(file_name):
        np.savez(file_name, **data)
    else:
        with open(file_name, "wb") as f:
            pickle.dump(data, f)


def _checked_value(key, value, expected_shape, dtype):
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise TypeError(f"parameter {key!r} must be a numeric array; got dtype {value.dtype}")
    if value.shape != tuple(expected_shape):
        raise ValueError(f"parameter {key!r} has the wrong shape: expected "
                         f"{tuple(expected_shape)}, got {value.shape}")
    return value.astype(dtype)


def load_params(net, file_name="params.pkl"):
    """Copy the parameters in ``file_name`` into ``net.params``, in place.

    The file must hold a dict with exactly the keys of ``net.params`` (plus, optionally, the
    net's running statistics, e.g. ``running_mean1``), each of the right shape. Values are cast
    to the net's dtype and written INTO the existing arrays, which the layers share, so
    optimizers and layers keep seeing the same objects. On any error nothing is changed.
    """
    loaded = read_params(file_name)
    if not isinstance(loaded, dict):
        raise TypeError(f"{file_name}: expected a dict of arrays, got {type(loaded).__name__}")
    slots = net._state_slots()
    missing = [key for key in net.params if key not in loaded]
    if missing:
        raise ValueError(f"{file_name}: missing parameters {missing}")
    unexpected = [key for key in loaded if key not in net.params and key not in slots]
    if unexpected:
        raise ValueError(f"{file_name}: unexpected keys {unexpected}; this network has "
                         f"{list(net.params)}")
    values = {key: _checked_value(key, loaded[key], net.params[key].shape, net.dtype)
              for key in net.params}
    states = {key: _checked_value(key, loaded[key], shape, net.dtype)
              for key, (_, _, shape) in slots.items() if key in loaded}
    # all checks passed: commit
    for key, value in values.items():
        net.params[key][...] = value
    net._rebind()
    for key, value in states.items():
        layer, attr, _ = slots[key]
        setattr(layer, attr, value)
