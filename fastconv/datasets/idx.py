"""Read and write IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. Only uint8 data (dtype code 0x08)
is supported: it is all that MNIST-style data sets use.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from fastconv.fileio import atomic_write, open_regular

UINT8_CODE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """A file is not a well-formed uint8 IDX file, or not a readable gzip of one."""


def read_idx(path, max_items=None):
    """Return the uint8 array stored in the IDX file at ``path``, gzip-compressed or raw.

    The header is read first and its shape checked against ``max_items`` (the most values
    the caller accepts) before anything else is decompressed; then exactly the bytes that
    shape needs are read, and one more to detect trailing data. So memory stays within the
    declared size, and a gzip bomb is stopped one byte past it.
    """
    path = os.fspath(path)
    with open_regular(path) as raw:
        # Decided by content rather than by name, so a .gz unpacked in place still reads.
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            return _read_stream(stream, path, max_items)
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise
            raise IDXFormatError(f"{path}: corrupt gzip data ({exc})") from exc


def _read_stream(stream, path, max_items):
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise IDXFormatError(f"{path}: not an IDX file (magic bytes {head!r})")
    if head[2] != UINT8_CODE:
        raise IDXFormatError(
            f"{path}: IDX dtype code 0x{head[2]:02x} is not supported, only 0x08 (uint8)")
    ndim = head[3]
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares no dimensions")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXFormatError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", dims)
    expected = math.prod(shape)
    if max_items is not None and expected > max_items:
        raise IDXFormatError(f"{path}: IDX header declares shape {shape}, {expected} values; "
                             f"at most {max_items} are expected")
    data = stream.read(expected)
    if len(data) < expected:
        raise IDXFormatError(
            f"{path}: truncated: shape {shape} needs {expected} bytes, found {len(data)}")
    if stream.read(1):
        # a gzip stream checks its CRC at its end: bytes flipped inside it may first show as
        # more data than the header declares, and then the reading on says what they are
        stream.read(1 << 20)
        raise IDXFormatError(f"{path}: trailing bytes after the data: shape {shape} needs "
                             f"{expected} bytes")
    # frombuffer over bytes is read-only; the copy gives callers an ordinary array.
    return np.frombuffer(data, np.uint8, count=expected).reshape(shape).copy()


def write_idx(path, array):
    """Write a uint8 ``array`` to ``path`` as IDX, gzip-compressed when the name ends in .gz."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx supports uint8 arrays only, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, UINT8_CODE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array).tobytes()
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same array always gives the same bytes
    with atomic_write(path) as f:
        f.write(data)
