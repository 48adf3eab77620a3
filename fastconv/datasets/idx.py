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

UINT8_CODE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """A file is not a well-formed uint8 IDX file, or not a readable gzip of one."""


def read_idx(path):
    """Return the uint8 array stored in the IDX file at ``path``, gzip-compressed or raw."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    # Decided by content rather than by name, so a .gz unpacked in place still reads.
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(f"{path}: corrupt gzip data ({exc})") from exc
    return _parse_idx(data, path)


def _parse_idx(data, path):
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise IDXFormatError(f"{path}: not an IDX file (magic bytes {data[:4]!r})")
    if data[2] != UINT8_CODE:
        raise IDXFormatError(
            f"{path}: IDX dtype code 0x{data[2]:02x} is not supported, only 0x08 (uint8)")
    ndim = data[3]
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares no dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = math.prod(shape)
    found = len(data) - header_size
    if found != expected:
        problem = "truncated" if found < expected else "trailing bytes after the data"
        raise IDXFormatError(
            f"{path}: {problem}: shape {shape} needs {expected} bytes, found {found}")
    # frombuffer over bytes is read-only; the copy gives callers an ordinary array.
    return np.frombuffer(data, np.uint8, count=expected, offset=header_size).reshape(shape).copy()


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
    with open(path, "wb") as f:
        f.write(data)
