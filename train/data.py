"""Data sets as 8-bit pixel arrays: an IDX reader/writer, MNIST, Fashion-MNIST and scikit-learn's digits.

numpy only (no torch), so the exporter and simulators can load the same test images.
Every loader returns :class:`Dataset` with ``uint8`` images of shape ``(N, H, W)`` and ``int64`` labels.
"""

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import TrainError
from .files import atomic_write_bytes

__all__ = [
    "IDXError", "read_idx", "write_idx", "Dataset", "Splits", "DATASETS", "load_dataset", "split_validation",
]

# IDX type codes (LeCun's format description) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(TrainError):
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
    for code, name in _IDX_DTYPES.items():
        if np.dtype(name).newbyteorder("=") == array.dtype:
            break
    else:
        raise IDXError(f"{path}: dtype {array.dtype} has no IDX type code")
    data = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(_IDX_DTYPES[code]).tobytes()
    if compress or (compress is None and str(path).endswith(".gz")):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8, (N, H, W)
    labels: np.ndarray  # int64, (N,)

    def __len__(self):
        return len(self.labels)

    def take(self, index):
        return Dataset(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Splits:
    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    classes: int = 10

    @property
    def shape(self):
        return tuple(self.test.images.shape[1:])


# name -> (file, SHA-256). MNIST's mirrors serve identical files; Fashion-MNIST comes from Debian's package offline.
_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
_FASHION_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
}
_MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
_SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")], "mnist": []}
_ENV_DIRS = {"mnist": "MNIST_DIR", "fashion-mnist": "FASHION_MNIST_DIR"}


def _cache_dir(name):
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lutmac" / name


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _download(name, fname, sha, dest):
    errors = []
    for base in _MIRRORS[name]:
        try:
            with urllib.request.urlopen(base + fname, timeout=30) as r:
                data = r.read()
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{base}: {getattr(e, 'reason', e)}")
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            errors.append(f"{base}{fname}: SHA-256 mismatch")
            continue
        atomic_write_bytes(dest, data)
        return dest
    env = _ENV_DIRS[name]
    raise TrainError(
        f"{name}: {fname} not found locally and download failed ({'; '.join(errors)}); put the IDX files in "
        f"${env}, or use an offline data set: DATASET=digits or DATASET=fashion-mnist "
        f"(apt-get install dataset-fashion-mnist)")


def _locate(name, files):
    """Directory-by-directory search: $ENV, system package, cache; download into the cache as a last resort."""
    dirs = []
    if os.environ.get(_ENV_DIRS[name]):
        dirs.append(Path(os.environ[_ENV_DIRS[name]]))
    dirs += _SYSTEM_DIRS[name] + [_cache_dir(name)]
    paths = {}
    for key, (fname, sha) in files.items():
        for d in dirs:
            for cand in (d / fname, d / fname.removesuffix(".gz")):
                if cand.is_file():
                    paths[key] = cand
                    break
            if key in paths:
                break
        else:
            paths[key] = _download(name, fname, sha, _cache_dir(name) / fname)
        if paths[key].suffix == ".gz" and _sha256(paths[key]) != sha:
            raise IDXError(f"{paths[key]}: SHA-256 does not match the published {name} file")
    return paths


def _load_idx_set(name, files):
    p = _locate(name, files)
    train = Dataset(read_idx(p["train_images"], ndim=3, dtype_code=0x08),
                    read_idx(p["train_labels"], ndim=1, dtype_code=0x08).astype(np.int64))
    test = Dataset(read_idx(p["test_images"], ndim=3, dtype_code=0x08),
                   read_idx(p["test_labels"], ndim=1, dtype_code=0x08).astype(np.int64))
    for part, key in ((train, "train"), (test, "test")):
        if len(part.images) != len(part.labels):
            raise IDXError(f"{p[key + '_labels']}: {len(part.labels)} labels for {len(part.images)} images")
    # the paper's validation set: the last 10,000 of the 60,000 training images
    tr, val = split_validation(train, 10_000)
    return Splits(name, tr, val, test)


def _load_digits():
    # scikit-learn ships these 1,797 8x8 images, so the default pipeline runs offline anywhere.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr_idx, te_idx = train_test_split(idx, test_size=360, stratify=labels, random_state=0)
    train = Dataset(images[tr_idx], labels[tr_idx])
    tr, val = split_validation(train, 240)
    return Splits("digits", tr, val, Dataset(images[te_idx], labels[te_idx]))


def split_validation(train, n_val):
    """Keep the last ``n_val`` training images as the validation set (as the paper does for MNIST)."""
    n = len(train)
    return train.take(slice(0, n - n_val)), train.take(slice(n - n_val, n))


DATASETS = {
    "digits": _load_digits,
    "mnist": lambda: _load_idx_set("mnist", _MNIST_FILES),
    "fashion-mnist": lambda: _load_idx_set("fashion-mnist", _FASHION_FILES),
}


def load_dataset(name):
    """Load a data set by name as :class:`Splits` (train / validation / test)."""
    if name not in DATASETS:
        raise TrainError(f"dataset {name!r} is unknown; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]()
