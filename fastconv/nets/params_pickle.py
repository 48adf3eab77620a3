"""Reading a parameter pickle without trusting it: plain numeric arrays in a dict, nothing else.

A NumPy array pickle normally rebuilds the array through NumPy itself (``_reconstruct`` and
``ndarray.__setstate__``, or ``_frombuffer``), which believes whatever dtype and buffer the file
states: an object-dtype array over eight forged bytes is a pointer NumPy then dereferences. So
here no NumPy function ever sees the file's values. The pickle is first scanned opcode by opcode
(:func:`pickletools.genops`) against a whitelist and an opcode budget; then it is run by an
unpickler whose few allowed globals are stand-ins that only *record* what the file says (dtype
text, shape, raw bytes). :func:`read_pickled_params` checks each record -- a bool, integer or
float dtype, a shape whose size matches the bytes given -- and only then builds the array from
those bytes. Every array's bytes come from the file itself, and the arrays built together
need no more bytes than the file has (a record named twice is built once), so memory stays
within a small multiple of the file's size; the caller caps that size before anything is read.
"""
import io
import math
import pickle
import pickletools

import numpy as np

__all__ = ["read_pickled_params", "NUMERIC_DTYPES"]

# dtype texts a parameter file may use: bool, signed and unsigned integers, floats
NUMERIC_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                            "f2", "f4", "f8"})
_BYTE_ORDERS = frozenset("<>|=")

# Everything a pickle of a dict of arrays needs (NumPy 1.x and 2.x writers, protocols 0-5);
# lists, sets, object construction, extensions and out-of-band buffers are not among them.
_ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2",
    "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
})


class _Dtype:
    """What the file says a dtype is: NumPy's text (``'f8'``) and byte order, unchecked."""

    def __init__(self, text, align=False, copy=True):
        if not isinstance(text, str) or text not in NUMERIC_DTYPES:
            raise TypeError(f"array dtype {text!r} is not allowed in a parameter file: only "
                            f"bool, integer and float arrays ({', '.join(sorted(NUMERIC_DTYPES))})")
        self.text = text
        self.order = "|" if text in ("b1", "i1", "u1") else "="

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags); anything
        # but a plain dtype (a structured or sub-array one) has more than a byte order set
        if not (isinstance(state, tuple) and len(state) >= 5 and state[1] in _BYTE_ORDERS
                and state[2] is None and state[3] is None and state[4] is None):
            raise TypeError(f"dtype {self.text!r} with state {state!r} is not allowed in a "
                            f"parameter file: only plain numeric dtypes")
        self.order = state[1]

    def numpy(self):
        return np.dtype(self.order + self.text)


class _ArrayClass:
    """Stands for ``numpy.ndarray`` where a pickle names it; calling it is not allowed."""


class _Array:
    """An array as the file describes it (shape, dtype, raw bytes), not yet built."""

    def __init__(self, shape=None, dtype=None, data=None, fortran=False):
        self.shape, self.dtype, self.data, self.fortran = shape, dtype, data, fortran

    def __setstate__(self, state):  # ndarray's state: (version, shape, dtype, fortran, data)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise TypeError("malformed array in parameter file")
        _, self.shape, self.dtype, self.fortran, self.data = state

    def checked(self):
        """(dtype, shape, bytes) of the record; raises TypeError/ValueError for a bad one."""
        if not isinstance(self.dtype, _Dtype):
            raise TypeError("array without a plain numeric dtype in parameter file")
        dtype = self.dtype.numpy()
        shape = _checked_shape(self.shape)
        data = self.data
        if isinstance(data, str):  # protocols 0-2 may carry the bytes as latin-1 text
            data = data.encode("latin-1")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("array data in parameter file is not a byte string")
        needed = math.prod(shape) * dtype.itemsize
        if len(data) != needed:
            raise ValueError(f"array of shape {shape} and dtype {dtype} needs {needed} bytes; "
                             f"the parameter file gives {len(data)}")
        return dtype, shape, data

    def build(self, dtype, shape, data):
        """The ndarray of the record, from what ``checked`` gave."""
        order = "F" if self.fortran is True else "C"
        array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order)
        return array.astype(dtype.newbyteorder("="), order="C")  # an owned, native array


def _checked_shape(shape):
    if not (isinstance(shape, tuple) and len(shape) <= 32
            and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"array shape {shape!r} in parameter file is not a tuple of sizes")
    return shape


def _reconstruct(cls, shape, typecode):
    if cls is not _ArrayClass:
        raise TypeError("parameter file rebuilds something other than an ndarray")
    return _Array()


def _frombuffer(data, dtype, shape, order):
    return _Array(shape, dtype, data, order == "F")


def _scalar(dtype, data=None):
    if not isinstance(dtype, _Dtype):
        raise TypeError("scalar without a plain numeric dtype in parameter file")
    return _Array((), dtype, data)


def _latin1(text, encoding):
    if not isinstance(text, str) or encoding != "latin1":
        raise TypeError("parameter file encodes bytes other than as latin-1 text")
    return text.encode("latin-1")


def _empty_bytes(*args):
    # protocols 0-2 spell b"" as bytes(); any argument (bytes(10**12)) would allocate
    if args:
        raise TypeError("parameter file calls bytes() with arguments")
    return b""


class _Dict(dict):
    """Stands for ``collections.OrderedDict`` (a plain dict keeps order too)."""


_GLOBALS = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_module, "_reconstruct")] = _reconstruct
    _GLOBALS[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _GLOBALS[(_module, "_frombuffer")] = _frombuffer
_GLOBALS[("numpy", "ndarray")] = _ArrayClass
_GLOBALS[("numpy", "dtype")] = _Dtype
_GLOBALS[("collections", "OrderedDict")] = _Dict
_GLOBALS[("_codecs", "encode")] = _latin1
for _module in ("__builtin__", "builtins"):
    _GLOBALS[(_module, "bytes")] = _empty_bytes


class _RecordingUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name} in parameter file: only NumPy arrays in a "
                f"dict may be loaded") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent IDs are not allowed in a parameter file")


def _scan(data, max_opcodes, where):
    """Refuse opcodes outside the whitelist, and more than ``max_opcodes`` of them."""
    last_text = None  # where a dict's value is refused, the text before it is its key
    try:
        for count, (opcode, arg, position) in enumerate(pickletools.genops(data), 1):
            if opcode.name not in _ALLOWED_OPCODES:
                after = "" if last_text is None else f" (the last text before it: {last_text!r})"
                raise pickle.UnpicklingError(
                    f"{where}: pickle opcode {opcode.name} at byte {position}{after} is not "
                    f"allowed in a parameter file: only a dict of NumPy arrays may be loaded")
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                last_text = arg[:40]
            if count > max_opcodes:
                raise pickle.UnpicklingError(
                    f"{where}: more than {max_opcodes} pickle opcodes, far more than a dict "
                    f"of this network's arrays needs")
    except (ValueError, EOFError) as exc:  # genops' word for a malformed stream
        raise pickle.UnpicklingError(f"{where}: not a valid pickle ({exc})") from None


def _as_array(value, records, built):
    """A value of the loaded dict as an ndarray: a recorded array (built once, however many
    names the file gives it, from what ``_checked_records`` found of it; ``built`` maps
    records to their arrays), or a Python number."""
    if isinstance(value, _Array):
        if id(value) not in built:
            built[id(value)] = value.build(*records[id(value)][1:])
        return built[id(value)]
    if isinstance(value, bool):
        return np.array(value)
    if isinstance(value, int):
        if not -2**63 <= value < 2**63:
            raise ValueError(f"integer {value} does not fit in int64")
        return np.array(value, dtype=np.int64)
    if isinstance(value, float):
        return np.array(value)
    raise TypeError(f"a {type(value).__name__} is not a numeric array")


def read_pickled_params(data, where, max_opcodes):
    """The dict ``{name: ndarray}`` pickled in the bytes ``data``, refusing anything else.

    ``where`` names the file in errors. Raises ``pickle.UnpicklingError`` for a disallowed
    opcode or global or a malformed stream, ``TypeError`` for a non-dict, a non-string key or
    a non-numeric value, and ``ValueError`` for an array whose bytes do not match its shape.
    """
    _scan(data, max_opcodes, where)
    try:
        loaded = _RecordingUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except Exception as exc:  # anything the stand-ins did not expect: a malformed file
        raise pickle.UnpicklingError(f"{where}: malformed parameter pickle "
                                     f"({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, dict):
        raise TypeError(f"{where}: expected a dict of arrays, got {type(loaded).__name__}")
    records = _checked_records(loaded, len(data), where)
    result, built = {}, {}
    for key, value in loaded.items():
        try:
            result[key] = _as_array(value, records, built)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: parameter {key!r}: {exc}") from None
    return result


def _checked_records(loaded, file_size, where):
    """{id(record): (record, dtype, shape, bytes)} for the dict's recorded arrays, each
    checked, before any array is built; refuses a file whose arrays need more bytes than it
    has.

    A pickle can name one byte string many times at the cost of a few bytes each (its memo),
    and every array built from it is a copy: a 1 MB file could ask for 400 MB. One record
    under several names is built once and shared, as the pickle shares it; distinct records
    must each have bytes of their own in the file. (The record is kept in the value, so
    that its id stays its own.)"""
    total, records = 0, {}
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: parameter names must be strings; got {key!r}")
        if not isinstance(value, _Array) or id(value) in records:
            continue
        try:
            dtype, shape, data = value.checked()
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: parameter {key!r}: {exc}") from None
        records[id(value)] = (value, dtype, shape, data)
        total += len(data)
        if total > file_size:
            raise ValueError(f"{where}: its arrays need more bytes than the file's {file_size} "
                             f"(the same bytes named again and again); not a parameter file")
    return records
