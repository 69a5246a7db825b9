"""The packed ±1 weight format and the threshold table format (specified in ``docs/weight-format.md``).

Both files are a 16-byte little-endian header followed by a row-major payload:

====== ====== ==========================================================
offset  size   field
====== ====== ==========================================================
0       4      magic: ``LMWB`` (weights) or ``LMTH`` (thresholds)
4       2      format version (1)
6       2      flags (0; reserved)
8       4      rows (output neurons)
12      4      columns (input features for weights; levels for thresholds)
====== ====== ==========================================================

Weights: each row is ``ceil(columns / 8)`` bytes; weight ``(r, c)`` is bit ``c % 8`` (LSB first) of byte ``c // 8`` of
row ``r``; ``1`` is +1, ``0`` is −1; the unused high bits of a row's last byte are 0.
Thresholds: ``rows`` signed bytes (orientation, +1 or −1), then ``rows × columns`` little-endian int32 thresholds.
Progression thresholds (magic ``LMTP``, columns = the levels ``L``): a u32 ``frac_bits`` F, ``rows`` signed bytes
(orientation), then per row two little-endian int64, ``A_fx`` and ``D_fx``.
"""

import struct

import numpy as np

from . import WeightFormatError

__all__ = [
    "FORMAT_VERSION",
    "WEIGHT_MAGIC",
    "THRESHOLD_MAGIC",
    "HEADER_BYTES",
    "pack_rows",
    "unpack_rows",
    "encode_weights",
    "decode_weights",
    "encode_thresholds",
    "decode_thresholds",
    "PROGRESSION_MAGIC",
    "encode_progression",
    "decode_progression",
]

FORMAT_VERSION = 1
WEIGHT_MAGIC = b"LMWB"
THRESHOLD_MAGIC = b"LMTH"
PROGRESSION_MAGIC = b"LMTP"
HEADER_BYTES = 16
_HEADER = struct.Struct("<4sHHII")


def pack_rows(signs):
    """Pack a ``(rows, cols)`` array of ±1 (or bits, 1 = +1) into ``(rows, ceil(cols/8))`` uint8, LSB first."""
    bits = np.asarray(signs) > 0
    if bits.ndim != 2:
        raise ValueError(f"weights must be 2-D, not shape {bits.shape!r}")
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_rows(packed, cols):
    """Inverse of :func:`pack_rows`: ``(rows, cols)`` int8 array of ±1."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=cols, bitorder="little")
    return bits.astype(np.int8) * 2 - 1


def _header(magic, rows, cols):
    return _HEADER.pack(magic, FORMAT_VERSION, 0, rows, cols)


def _parse_header(data, magic, name):
    if len(data) < HEADER_BYTES:
        raise WeightFormatError(f"{name}: truncated header ({len(data)} of {HEADER_BYTES} bytes)")
    got, version, flags, rows, cols = _HEADER.unpack_from(data)
    if got != magic:
        raise WeightFormatError(f"{name}: bad magic {got!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise WeightFormatError(f"{name}: format version {version}, this reader knows {FORMAT_VERSION}")
    if flags != 0:
        raise WeightFormatError(f"{name}: reserved flags 0x{flags:04x} are not zero")
    if rows == 0 or cols == 0:
        raise WeightFormatError(f"{name}: empty matrix {rows}x{cols}")
    return rows, cols


def encode_weights(signs):
    """Bytes of a weight file for a ``(out_features, in_features)`` ±1 matrix."""
    signs = np.asarray(signs)
    return _header(WEIGHT_MAGIC, *signs.shape) + pack_rows(signs).tobytes()


def decode_weights(data, name="weights"):
    """Parse a weight file's bytes into a ``(rows, cols)`` int8 ±1 matrix; :class:`WeightFormatError` if malformed."""
    rows, cols = _parse_header(data, WEIGHT_MAGIC, name)
    stride = (cols + 7) // 8
    expected = HEADER_BYTES + rows * stride
    if len(data) != expected:
        raise WeightFormatError(f"{name}: {len(data)} bytes, a {rows}x{cols} layer needs {expected}")
    packed = np.frombuffer(data, dtype=np.uint8, offset=HEADER_BYTES).reshape(rows, stride)
    if cols % 8 and np.any(packed[:, -1] >> (cols % 8)):
        raise WeightFormatError(f"{name}: row padding bits are not zero")
    return unpack_rows(packed, cols)


def encode_thresholds(orientation, thresholds):
    """Bytes of a threshold file: per-row orientation (±1) and ``(rows, levels)`` int32 thresholds."""
    orientation = np.asarray(orientation, dtype=np.int8)
    thresholds = np.asarray(thresholds, dtype="<i4")
    rows, levels = thresholds.shape
    return _header(THRESHOLD_MAGIC, rows, levels) + orientation.tobytes() + thresholds.tobytes()


def decode_thresholds(data, name="thresholds"):
    """Parse a threshold file into ``(orientation, thresholds)``; :class:`WeightFormatError` if malformed."""
    rows, levels = _parse_header(data, THRESHOLD_MAGIC, name)
    expected = HEADER_BYTES + rows + 4 * rows * levels
    if len(data) != expected:
        raise WeightFormatError(f"{name}: {len(data)} bytes, {rows} rows of {levels} thresholds need {expected}")
    orientation = np.frombuffer(data, dtype=np.int8, count=rows, offset=HEADER_BYTES).astype(np.int64)
    if not np.all(np.abs(orientation) == 1):
        raise WeightFormatError(f"{name}: orientation bytes must be +1 or -1")
    thr = np.frombuffer(data, dtype="<i4", offset=HEADER_BYTES + rows).reshape(rows, levels).astype(np.int64)
    if levels > 1 and np.any(np.diff(thr, axis=1) < 0):
        raise WeightFormatError(f"{name}: thresholds of a row must be non-decreasing")
    return orientation, thr


def encode_progression(orientation, a_fx, d_fx, frac_bits, levels):
    """Bytes of a progression threshold file: header (columns = ``levels``), u32 ``frac_bits``, per-row orientation
    (±1), then ``(A_fx, D_fx)`` per row as little-endian int64."""
    orientation = np.asarray(orientation, dtype=np.int8)
    pairs = np.stack([np.asarray(a_fx, np.int64), np.asarray(d_fx, np.int64)], axis=1).astype("<i8")
    return (
        _header(PROGRESSION_MAGIC, len(orientation), levels)
        + struct.pack("<I", frac_bits)
        + orientation.tobytes()
        + pairs.tobytes()
    )


def decode_progression(data, name="thresholds"):
    """Parse a progression threshold file into ``(orientation, a_fx, d_fx, frac_bits, levels)``;
    :class:`WeightFormatError` if malformed (``D_fx`` must be positive)."""
    rows, levels = _parse_header(data, PROGRESSION_MAGIC, name)
    expected = HEADER_BYTES + 4 + rows + 16 * rows
    if len(data) != expected:
        raise WeightFormatError(f"{name}: {len(data)} bytes, {rows} progression rows need {expected}")
    (frac_bits,) = struct.unpack_from("<I", data, HEADER_BYTES)
    orientation = np.frombuffer(data, dtype=np.int8, count=rows, offset=HEADER_BYTES + 4).astype(np.int64)
    if not np.all(np.abs(orientation) == 1):
        raise WeightFormatError(f"{name}: orientation bytes must be +1 or -1")
    pairs = np.frombuffer(data, dtype="<i8", offset=HEADER_BYTES + 4 + rows).reshape(rows, 2).astype(np.int64)
    a_fx, d_fx = pairs[:, 0].copy(), pairs[:, 1].copy()
    if np.any(d_fx <= 0):
        raise WeightFormatError(
            f"{name}: D_fx of row {int(np.flatnonzero(d_fx <= 0)[0])} is {int(d_fx[d_fx <= 0][0])}, it must be positive"
        )
    return orientation, a_fx, d_fx, int(frac_bits), levels
