"""The IDX file format (LeCun's MNIST format): the test sets every stage reads, numpy only."""

import gzip
import struct
from pathlib import Path

import numpy as np

from . import LutmacError
from .files import atomic_write_bytes

__all__ = ["IDXError", "read_idx", "write_idx"]

# IDX type codes (LeCun's format description) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(LutmacError):
    """An IDX file that is truncated, has a bad magic number or does not have the expected shape."""


def _idx_payload(path):
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise IDXError(f"{path}: corrupt gzip stream ({e})") from None
    return raw


def read_idx(path, *, ndim=None, dtype_code=None):
    """Read an IDX file (raw or gzip-compressed) into a native-endian numpy array.

    Parameters
    ----------
    path : path-like
        The file.
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).
    dtype_code : int, optional
        Required IDX type code (``0x08`` for unsigned bytes).

    Raises
    ------
    IDXError
        On a bad magic number, unknown type, wrong dimensionality, or a length that does not match the header.
    """
    try:
        raw = _idx_payload(path)
    except OSError as e:
        raise IDXError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) < 4:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes)")
    zero, code, nd = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or nd == 0:
        raise IDXError(f"{path}: bad IDX magic number 0x{raw[:4].hex()}")
    if dtype_code is not None and code != dtype_code:
        raise IDXError(f"{path}: IDX type 0x{code:02x}, expected 0x{dtype_code:02x}")
    if ndim is not None and nd != ndim:
        raise IDXError(f"{path}: {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{nd}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IDXError(f"{path}: {len(raw) - header} data bytes, header {dims} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array, *, compress=None):
    """Write ``array`` as an IDX file (gzip when ``compress`` or when the name ends in ``.gz``), atomically."""
    array = np.asarray(array)
    for code, name in _IDX_DTYPES.items():  # noqa: B007 (code is read after the break)
        if np.dtype(name).newbyteorder("=") == array.dtype:
            break
    else:
        raise IDXError(f"{path}: dtype {array.dtype} has no IDX type code")
    data = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(_IDX_DTYPES[code]).tobytes()
    if compress or (compress is None and str(path).endswith(".gz")):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
