"""Saving and loading network parameters, shared by every network in ``fastconv.nets``.

The file format is the book's: a pickle of a plain dict ``{key: ndarray}`` (``W1``, ``b1``,
...), so the book's published ``params.pkl`` files load here and our files load in the book's
code. A name ending in ``.npz`` (any case) is written with NumPy's ``savez`` instead; reading
tells the two apart by their first bytes, not by the name.

Loading treats the file as hostile. It yields only plain numeric arrays (bool, integer, float)
and numbers, never an object array or anything built by an arbitrary global: pickles go
through :mod:`fastconv.nets.params_pickle`, ``.npz`` members are read from their ``.npy``
header and raw bytes without ``np.load``. When the network is known, memory is bounded by the
network's own size: an unexpected key, a wrong shape or an oversized file is refused from the
zip directory, the ``.npy`` headers or the file's size, before anything is allocated or
decompressed. Everything is checked before anything is written, so a bad file raises and
leaves the network as it was. Saving goes through :func:`fastconv.fileio.atomic_write`: a
failed save leaves the previous file intact.
"""
import math
import os
import pickle
import zipfile

import numpy as np

from fastconv.fileio import atomic_write, open_regular
from fastconv.nets.params_pickle import NUMERIC_DTYPES, read_pickled_params

__all__ = ["read_params", "save_params", "load_params"]

_ZIP_MAGIC = b"PK"
_NPY_MAGIC = b"\x93NUMPY"
_MAX_ITEMSIZE = 8  # float64/int64: the widest dtype a parameter file may hold
_MAX_NPY_HEADER = 10000  # np.lib.format's own limit on a trusted header
# A pickle may spell each byte of an array as up to six characters (protocol 0 text escapes),
# and needs some bytes and opcodes per array for names, dtypes and shapes.
_PICKLE_BYTES_PER_BYTE = 6
_PICKLE_BYTES_PER_ARRAY = 1024
_OPCODES_PER_ARRAY = 200
_OPCODES_UNBOUNDED = 10_000_000
# Without a network's shapes, an .npz may inflate to at most this many times its own size
# (plus the constant): savez_compressed shrinks real weights little, zero arrays a lot.
_NPZ_INFLATION = 32
_NPZ_INFLATION_EXTRA = 16 << 20


def _where(file_name):
    return os.fspath(file_name) if isinstance(file_name, (str, os.PathLike)) else repr(file_name)


def _check_path(file_name):
    if not isinstance(file_name, (str, bytes, os.PathLike)):
        raise TypeError(f"file_name must be a path (str, bytes or os.PathLike); got "
                        f"{type(file_name).__name__}")


def read_params(file_name, expected_shapes=None):
    """The dict ``{name: ndarray}`` stored in ``file_name`` (book pickle or ``.npz``), read safely.

    Every value is a plain bool, integer or float ndarray owned by the caller. With
    ``expected_shapes`` (``{name: shape}``), a name outside it or a size or shape that differs
    from it is refused before the data is read, and the file may be at most a few times the
    size those arrays need. Without it, a pickle's arrays are built from the file's own bytes,
    and an .npz may inflate to at most 32 times its size plus 16 MB. Raises
    ``pickle.UnpicklingError`` for a pickle holding anything but a dict of arrays,
    ``TypeError`` for a non-numeric value, ``ValueError`` for a wrong name, shape or size.
    """
    where = _where(file_name)
    with open_regular(file_name) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(len(_NPY_MAGIC))
        if head.startswith(_ZIP_MAGIC):
            f.seek(0)
            return _read_npz(f, where, expected_shapes,
                             size * _NPZ_INFLATION + _NPZ_INFLATION_EXTRA)
        if head.startswith(_NPY_MAGIC):
            raise ValueError(f"{where} is a single .npy array; a parameter file is a pickle of "
                             f"a dict of arrays or an .npz archive")
        limit, max_opcodes = _pickle_budget(expected_shapes)
        if limit is not None and size > limit:
            raise ValueError(f"{where}: {size} bytes is more than a parameter pickle of this "
                             f"network can take (at most {limit} bytes)")
        f.seek(0)
        # a sized read (read() with no size grows its buffer step by step: 8x slower here);
        # the byte past the size tells a file that grew since fstat
        data = f.read(size + 1)
    if len(data) > size:
        raise ValueError(f"{where}: the file grew while it was read")
    loaded = read_pickled_params(data, where, max_opcodes)
    if expected_shapes is not None:
        for key, value in loaded.items():
            _check_expected(where, key, value.shape, expected_shapes)
    return loaded


def _pickle_budget(expected_shapes):
    """(largest file size, most opcodes) a pickle of arrays of these shapes can need.

    Without shapes there is no size limit: the arrays are then built from the file's own
    bytes, so memory stays within a small multiple of the file's size.
    """
    if expected_shapes is None:
        return None, _OPCODES_UNBOUNDED
    elements = sum(math.prod(shape) for shape in expected_shapes.values())
    arrays = len(expected_shapes)
    limit = (elements * _MAX_ITEMSIZE * _PICKLE_BYTES_PER_BYTE
             + (arrays + 1) * _PICKLE_BYTES_PER_ARRAY)
    return limit, (arrays + 1) * _OPCODES_PER_ARRAY


def _check_expected(where, key, shape, expected_shapes):
    if key not in expected_shapes:
        raise ValueError(f"{where}: unexpected key {key!r}; this network has "
                         f"{list(expected_shapes)}")
    if tuple(shape) != tuple(expected_shapes[key]):
        raise ValueError(f"{where}: parameter {key!r} has the wrong shape: expected "
                         f"{tuple(expected_shapes[key])}, got {tuple(shape)}")


def _read_npz(f, where, expected_shapes, max_total):
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{where}: not a readable .npz archive ({exc})") from None
    with archive:
        members = archive.infolist()
        total = sum(member.file_size for member in members)
        if expected_shapes is None and total > max_total:
            raise ValueError(f"{where}: the archive inflates to {total} bytes, more than "
                             f"{max_total} for a file of its size")
        keys = []
        for member in members:  # names and sizes from the zip directory, nothing inflated yet
            key = member.filename[:-4] if member.filename.endswith(".npy") else None
            if key is None or key in keys:
                raise ValueError(f"{where}: member {member.filename!r} is not one array of an "
                                 f".npz archive")
            if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"{where}: member {member.filename!r} uses compression "
                                 f"{member.compress_type}; .npz archives use none or deflate")
            if expected_shapes is not None:
                if key not in expected_shapes:
                    raise ValueError(f"{where}: unexpected key {key!r}; this network has "
                                     f"{list(expected_shapes)}")
                largest = (math.prod(expected_shapes[key]) * _MAX_ITEMSIZE
                           + _MAX_NPY_HEADER + 16)
                if member.file_size > largest:
                    raise ValueError(f"{where}: member {member.filename!r} holds "
                                     f"{member.file_size} bytes; parameter {key!r} needs at "
                                     f"most {largest}")
            keys.append(key)
        try:
            return {key: _read_npy_member(archive, member, where, key, expected_shapes)
                    for key, member in zip(keys, members)}
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"{where}: corrupt .npz archive ({exc})") from None


def _read_npy_member(archive, member, where, key, expected_shapes):
    """One member's array, from its .npy header and exactly the bytes that header declares."""
    with archive.open(member) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(stream, _MAX_NPY_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(stream, _MAX_NPY_HEADER)
            else:
                raise ValueError(f".npy version {version} is not supported")
        except ValueError as exc:
            raise ValueError(f"{where}: parameter {key!r}: bad .npy header ({exc})") from None
        shape, fortran, dtype = header
        if (dtype.fields is not None or dtype.subdtype is not None
                or dtype.str[1:] not in NUMERIC_DTYPES):
            raise TypeError(f"{where}: parameter {key!r} has dtype {dtype}; only bool, "
                            f"integer and float arrays may be loaded")
        if expected_shapes is not None:
            _check_expected(where, key, shape, expected_shapes)
        needed = math.prod(shape) * dtype.itemsize
        data = stream.read(needed)
        if len(data) != needed or stream.read(1):
            raise ValueError(f"{where}: parameter {key!r}: shape {shape} of {dtype} needs "
                             f"{needed} bytes; the member holds another amount")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.astype(dtype.newbyteorder("="), order="C")


def save_params(net, file_name="params.pkl"):
    """Write ``net.params`` (plus BatchNorm running statistics, when set) to ``file_name``.

    The file is written under exactly the name given, atomically: a failure half-way leaves
    the previous file as it was. A name ending in ``.npz`` (any case) gets an .npz archive,
    any other name the book's pickle.
    """
    data = dict(net.params)
    for key, (layer, attr, _) in net._state_slots().items():
        value = getattr(layer, attr)
        if value is not None:
            data[key] = np.asarray(value)
    for key, value in data.items():
        _check_loadable(key, value)
    _check_path(file_name)
    as_npz = os.fspath(file_name).lower().endswith(".npz")
    with atomic_write(file_name) as f:
        if as_npz:
            np.savez(f, **data)  # a file object: savez adds no ".npz" to the name
        else:
            pickle.dump(data, f)


def _check_loadable(key, value):
    """Raises unless value is what load_params reads back: a numeric array or a plain
    number. Checked before the file is opened, so that a save that could not be loaded
    again does not replace the previous, good file."""
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.str[1:] in NUMERIC_DTYPES:
            return
        found = f"{type(value).__name__} of dtype {value.dtype}"
    elif isinstance(value, (bool, int, float)):
        return
    else:
        found = type(value).__name__
    raise TypeError(f"params[{key!r}] must be a bool, integer or float array or number to be "
                    f"saved and loaded again; got {found}")


def load_params(net, file_name="params.pkl"):
    """Copy the parameters in ``file_name`` into ``net.params``, in place.

    The file must hold a dict with exactly the keys of ``net.params`` (plus, optionally, the
    net's running statistics, e.g. ``running_mean1``), each a numeric array of the right
    shape. Values are cast to the net's dtype and written INTO the existing arrays, which the
    layers share, so optimizers and layers keep seeing the same objects. On any error nothing
    is changed.
    """
    _check_path(file_name)
    slots = net._state_slots()
    expected = {key: value.shape for key, value in net.params.items()}
    expected.update({key: shape for key, (_, _, shape) in slots.items()})
    loaded = read_params(file_name, expected)
    missing = [key for key in net.params if key not in loaded]
    if missing:
        raise ValueError(f"{_where(file_name)}: missing parameters {missing}")
    values = {key: loaded[key].astype(net.dtype) for key in net.params}
    states = {key: loaded[key].astype(net.dtype) for key in slots if key in loaded}
    # all checks passed: commit
    for key, value in values.items():
        net.params[key][...] = value
    net._rebind()
    for key, value in states.items():
        layer, attr, _ = slots[key]
        setattr(layer, attr, value)
