"""Data sets as 8-bit pixel arrays: MNIST, Fashion-MNIST, scikit-learn's digits, CIFAR-10, SVHN, a shape-only
CIFAR-sized stand-in, and your own data (an ``.npz`` or a folder of IDX files).

numpy only at import time (no torch), so the exporter and simulators can load the same test images; SVHN's ``.mat``
files need scipy, imported when SVHN is loaded.

Layout (every loader): :class:`Dataset` ``images`` are ``uint8`` of shape ``(N, H, W, C)`` -- channels last, rows top
to bottom, pixels left to right, C = 1 for grey data sets and 3 (R, G, B) for colour ones -- and ``labels`` are
``int64`` of shape ``(N,)`` in ``0 .. classes-1``. :attr:`Splits.shape` is the network's input shape ``(C, H, W)``.

Named sets (:data:`DATASETS`) and where their files come from:

- ``digits``: scikit-learn's bundled 1,797 8x8 digits (offline anywhere).
- ``mnist``, ``fashion-mnist``: the IDX files from ``$MNIST_DIR`` / ``$FASHION_MNIST_DIR``, Debian's
  ``dataset-fashion-mnist`` package, the cache, else downloaded (SHA-256 checked). Validation: the last 10,000 of the
  60,000 training images (the BinaryConnect paper's split).
- ``cifar10``: the python version, ``cifar-10-python.tar.gz``, from ``$CIFAR10_DIR`` (the tarball itself, a folder
  holding it, or its extracted ``cifar-10-batches-py`` folder), the cache, else downloaded. A tarball is used only if
  its MD5 is the published one, wherever it was found. The batches are pickles; they are read with an unpickler that
  admits nothing but dicts, lists, bytes, numbers and numpy arrays, so a tampered file cannot run code. Validation:
  the last 5,000 of the 50,000 training images (the paper's 45k / 5k).
- ``svhn``: the 32x32 cropped digits ("format 2": ``train_32x32.mat``, ``test_32x32.mat`` and optionally
  ``extra_32x32.mat``), from ``$SVHN_DIR``, the cache, else downloaded (train and test only; MD5 checked wherever
  found). SVHN's "format 1" (whole house numbers with bounding boxes, ``digitStruct.mat``, HDF5) is not what
  BinaryConnect uses and is not read. Label 10 means digit 0 and becomes 0. ``extra`` (1.3 GB, 531,131 images) is
  never downloaded automatically: when it lies beside the others it joins the training set, as in the paper
  (604,388 images), otherwise training uses ``train`` alone. Validation is the paper's (pylearn2's
  ``splitted_train`` / ``valid``): 400 images per class from ``train`` and 200 per class from ``extra``, drawn by
  ``numpy.random.RandomState(322)`` shuffling each class's indices in turn (classes 1..10, train before extra), so
  6,000 with extra and 4,000 without. Both splits keep file order (train's images before extra's).
- ``cifar10-shape``: seeded random 32x32x3 images (2,000 train / 500 validation / 1,000 test), labels 0..9,
  ``synthetic=True``: for generating and costing CIFAR-sized hardware without the data; accuracies on it mean nothing.

Your own data: ``load_dataset(path)`` with an ``.npz`` holding ``x_train, y_train, x_test, y_test`` (images ``uint8``
``(N, H, W)`` or ``(N, H, W, C)``, integer labels ``0..K-1``; optional ``x_val, y_val``, else the last 10% of train),
or a folder of IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``; images 3-D or 4-D ``(N, H, W, C)``; validation the last 10% of
train). ``classes`` is the largest label + 1 over all splits. Anything malformed is a one-line :class:`TrainError`
naming the file (and the key).

Every download goes through one helper that checks the published checksum before writing the file atomically into
``$XDG_CACHE_HOME/lutmac/<name>`` (default ``~/.cache/lutmac/<name>``); offline, it fails with one line naming the
environment variable that points at local copies.
"""

import hashlib
import http.client
import importlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from common.files import atomic_write_bytes
from common.idx import IDXError, read_idx, write_idx

from . import TrainError

__all__ = [
    "IDXError",
    "read_idx",
    "write_idx",
    "Dataset",
    "Splits",
    "DATASETS",
    "load_dataset",
    "split_validation",
]


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # uint8, (N, H, W, C): channels last
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
    synthetic: bool = False  # random stand-in images (shape only): accuracies on it mean nothing

    @property
    def shape(self):
        """The input shape ``(C, H, W)``."""
        h, w, c = self.test.images.shape[1:]
        return (c, h, w)


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
# Only MD5s are published for these (the CIFAR-10 page; torchvision's copy of the SVHN ones).
_CIFAR10_FILE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_CIFAR10_VAL = 5_000
_SVHN_FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
_SVHN_VAL_PER_CLASS = {"train": 400, "extra": 200}  # pylearn2's split, as the BinaryConnect authors used it
_SVHN_VAL_SEED = 322
_MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
    "svhn": ["http://ufldl.stanford.edu/housenumbers/"],
}
_SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")], "mnist": []}
_ENV_DIRS = {"mnist": "MNIST_DIR", "fashion-mnist": "FASHION_MNIST_DIR", "cifar10": "CIFAR10_DIR", "svhn": "SVHN_DIR"}
# What the offline error suggests instead, after naming the environment variable.
_OFFLINE_HINTS = {
    "mnist": "put the IDX files in ${env}, or use an offline data set: DATASET=digits or DATASET=fashion-mnist "
    "(apt-get install dataset-fashion-mnist)",
    "fashion-mnist": "put the IDX files in ${env}, or use an offline data set: DATASET=digits or "
    "DATASET=fashion-mnist (apt-get install dataset-fashion-mnist)",
    "cifar10": "put cifar-10-python.tar.gz (or its extracted cifar-10-batches-py folder) in ${env}, or cost the "
    "hardware without the data: DATASET=cifar10-shape",
    "svhn": "put train_32x32.mat and test_32x32.mat (and optionally extra_32x32.mat) in ${env}, or cost the "
    "hardware without the data: DATASET=cifar10-shape",
}


def _cache_dir(name):
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lutmac" / name


def _hash_name(digest):
    """The algorithm a published digest was made with, from its length: SHA-256 where published, else MD5."""
    return {64: "sha256", 32: "md5"}[len(digest)]


def _label(algo):
    return {"sha256": "SHA-256", "md5": "MD5"}[algo]


def _file_digest(path, algo):
    h = hashlib.new(algo, usedforsecurity=False)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise TrainError(f"{path}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def _sha256(path):
    return _file_digest(path, "sha256")


def _verify(name, path, digest):
    """Refuse ``path`` unless its digest is the published one (a partial download, a different release, tampering)."""
    algo = _hash_name(digest)
    got = _file_digest(path, algo)
    if got != digest:
        raise TrainError(
            f"{path}: {_label(algo)} {got} does not match the published {name} file ({digest}); delete or replace it"
        )
    return path


def _download(name, fname, digest, dest):
    """The one way files come from the network: each mirror in turn, checksum checked, written atomically."""
    algo = _hash_name(digest)
    errors = []
    for base in _MIRRORS[name]:
        try:
            with urllib.request.urlopen(base + fname, timeout=30) as r:
                data = r.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            errors.append(f"{base}: {getattr(e, 'reason', e)}")
            continue
        if hashlib.new(algo, data, usedforsecurity=False).hexdigest() != digest:
            errors.append(f"{base}{fname}: {_label(algo)} mismatch")
            continue
        atomic_write_bytes(dest, data)
        return dest
    hint = _OFFLINE_HINTS[name].replace("${env}", "$" + _ENV_DIRS[name])
    raise TrainError(f"{name}: {fname} not found locally and download failed ({'; '.join(errors)}); {hint}")


def _search_dirs(name):
    dirs = []
    if os.environ.get(_ENV_DIRS[name]):
        dirs.append(Path(os.environ[_ENV_DIRS[name]]))
    return dirs + _SYSTEM_DIRS.get(name, []) + [_cache_dir(name)]


# --- MNIST and Fashion-MNIST ---------------------------------------------------------------------------------------


def _locate(name, files):
    """Directory-by-directory search: $ENV, system package, cache; download into the cache as a last resort."""
    dirs = _search_dirs(name)
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
    train = Dataset(
        read_idx(p["train_images"], ndim=3, dtype_code=0x08)[..., None],
        read_idx(p["train_labels"], ndim=1, dtype_code=0x08).astype(np.int64),
    )
    test = Dataset(
        read_idx(p["test_images"], ndim=3, dtype_code=0x08)[..., None],
        read_idx(p["test_labels"], ndim=1, dtype_code=0x08).astype(np.int64),
    )
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
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr_idx, te_idx = train_test_split(idx, test_size=360, stratify=labels, random_state=0)
    train = Dataset(images[tr_idx], labels[tr_idx])
    tr, val = split_validation(train, 240)
    return Splits("digits", tr, val, Dataset(images[te_idx], labels[te_idx]))


# --- CIFAR-10 ------------------------------------------------------------------------------------------------------


def _numpy_private(submodule, attr):
    for mod in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{attr}")


class _ArrayUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays only: the globals numpy's own array pickles name, and
    ``_codecs.encode`` (how Python 3 writes bytes at protocol 2). Anything else (``os.system`` ...) is refused."""

    _NUMPY = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module, name):
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        for prefix in ("numpy._core.", "numpy.core."):
            sub = module.removeprefix(prefix)
            if sub != module and (sub, name) in self._NUMPY:
                return _numpy_private(sub, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_batch(raw, where):
    """One pickled batch -> (N, 32, 32, 3) uint8 images, (N,) labels; ``where`` names it in errors."""
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 -- any failure to parse a pickle is a bad file
        raise TrainError(f"{where}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise TrainError(f"{where}: not a CIFAR-10 batch (no b'data' and b'labels')")
    data, labels = d[b"data"], np.asarray(d[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise TrainError(f"{where}: b'data' is not uint8 (N, 3072)")
    if (
        labels.shape != (len(data),)
        or labels.dtype.kind not in "iu"
        or (len(labels) and (labels.min() < 0 or labels.max() > 9))
    ):
        raise TrainError(f"{where}: b'labels' is not {len(data)} integers 0..9")
    # each row: the 1,024 red values, then green, then blue, each plane in raster order
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def _cifar_from_tar(path):
    want = {f"{_CIFAR10_FOLDER}/{b}": b for b in _CIFAR10_BATCHES}
    raw = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf:  # one pass in archive order: no seeking back in the gzip stream
                key = str(PurePosixPath(m.name.removeprefix("./")))
                if key in want and m.isfile():
                    raw[want[key]] = tf.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise TrainError(f"{path}: cannot read the archive ({e})") from None
    missing = [b for b in _CIFAR10_BATCHES if b not in raw]
    if missing:
        raise TrainError(f"{path}: lacks {_CIFAR10_FOLDER}/{missing[0]}")
    return {b: _cifar_batch(raw[b], f"{path}:{_CIFAR10_FOLDER}/{b}") for b in _CIFAR10_BATCHES}


def _cifar_from_folder(folder):
    out = {}
    for b in _CIFAR10_BATCHES:
        p = folder / b
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise TrainError(f"{p}: cannot read ({e.strerror or e})") from None
        out[b] = _cifar_batch(raw, p)
    return out


def _cifar_source():
    """The first of $CIFAR10_DIR and the cache that holds the tarball (MD5 checked) or the extracted folder."""
    fname, md5 = _CIFAR10_FILE
    for d in _search_dirs("cifar10"):
        if d.is_file():
            return "tar", _verify("CIFAR-10", d, md5)
        if (d / fname).is_file():
            return "tar", _verify("CIFAR-10", d / fname, md5)
        for folder in (d, d / _CIFAR10_FOLDER):
            if (folder / _CIFAR10_BATCHES[0]).is_file():
                return "folder", folder
    return "tar", _download("cifar10", fname, md5, _cache_dir("cifar10") / fname)


def _load_cifar10():
    kind, where = _cifar_source()
    batches = _cifar_from_tar(where) if kind == "tar" else _cifar_from_folder(where)
    train = Dataset(
        np.concatenate([batches[b][0] for b in _CIFAR10_BATCHES[:-1]]),
        np.concatenate([batches[b][1] for b in _CIFAR10_BATCHES[:-1]]),
    )
    test = Dataset(*batches["test_batch"])
    tr, val = split_validation(train, _CIFAR10_VAL)  # the paper's 45,000 / 5,000
    return Splits("cifar10", tr, val, test)


def _load_cifar10_shape():
    rng = np.random.default_rng(0)

    def part(n):
        return Dataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.int64))

    return Splits("cifar10-shape", part(2_000), part(500), part(1_000), classes=10, synthetic=True)


# --- SVHN ----------------------------------------------------------------------------------------------------------


def _svhn_paths():
    paths = {}
    dirs = _search_dirs("svhn")
    for key, (fname, md5) in _SVHN_FILES.items():
        found = next((d / fname for d in dirs if (d / fname).is_file()), None)
        if found is None and key != "extra":
            found = _download("svhn", fname, md5, _cache_dir("svhn") / fname)
        if found is not None:
            paths[key] = _verify("SVHN", found, md5)
    return paths


def _svhn_mat(path):
    """One cropped-digits file -> (N, 32, 32, 3) uint8 view, (N,) labels 1..10 as in the file."""
    import scipy.io

    try:
        m = scipy.io.loadmat(path, variable_names=("X", "y"))
    except Exception as e:  # noqa: BLE001 -- scipy raises many kinds for a bad file
        raise TrainError(f"{path}: cannot read as a MATLAB file ({type(e).__name__}: {e})") from None
    for key in ("X", "y"):
        if key not in m:
            raise TrainError(f"{path}: missing variable {key!r}")
    x, y = m["X"], m["y"]
    if y.dtype.kind not in "iuf":
        raise TrainError(f"{path}: 'y' is {y.dtype}, expected numeric labels 1..10")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise TrainError(f"{path}: 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    y = y.reshape(-1)
    if len(y) != x.shape[3] or (len(y) and (y.min() < 1 or y.max() > 10 or np.any(y != np.round(y)))):
        raise TrainError(f"{path}: 'y' is not {x.shape[3]} labels 1..10")
    return np.moveaxis(x, 3, 0), y.astype(np.int64)


def _svhn_val_index(y, per_class, rng):
    """pylearn2's choice: each class 1..10 in turn, shuffle its indices with the shared ``rng``, keep the first few."""
    val = []
    for c in range(1, 11):
        idx = np.nonzero(y == c)[0]
        rng.shuffle(idx)
        val.append(idx[:per_class])
    val = np.sort(np.concatenate(val))
    keep = np.ones(len(y), bool)
    keep[val] = False
    return np.nonzero(keep)[0], val


def _rows(x, index, chunk=8192):
    """``x[index]`` as a C-ordered array (MATLAB's arrays arrive column-major), gathered a chunk at a time so the
    1.6 GB ``extra`` file is never copied whole."""
    out = np.empty((len(index), *x.shape[1:]), x.dtype)
    for i in range(0, len(index), chunk):
        out[i : i + chunk] = x[index[i : i + chunk]]
    return out


def _join(parts):
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _digit(y):
    return np.where(y == 10, 0, y)  # SVHN's label 10 is the digit 0


def _load_svhn():
    paths = _svhn_paths()
    rng = np.random.RandomState(_SVHN_VAL_SEED)
    tr_x, tr_y, va_x, va_y = [], [], [], []
    for key in ("train", "extra"):
        if key not in paths:
            continue
        x, y = _svhn_mat(paths[key])
        tr_i, va_i = _svhn_val_index(y, _SVHN_VAL_PER_CLASS[key], rng)
        tr_x.append(_rows(x, tr_i))
        tr_y.append(y[tr_i])
        va_x.append(_rows(x, va_i))
        va_y.append(y[va_i])
        del x
    x, y = _svhn_mat(paths["test"])
    train = Dataset(_join(tr_x), _digit(_join(tr_y)))
    val = Dataset(_join(va_x), _digit(_join(va_y)))
    if not len(train) or not len(val):
        raise TrainError(f"{paths['train']}: too few images to split off the validation set")
    return Splits("svhn", train, val, Dataset(_rows(x, np.arange(len(y))), _digit(y)))


# --- your own data -------------------------------------------------------------------------------------------------


def _check_part(where_x, where_y, x, y):
    """Validate one split's arrays; returns (N, H, W, C) uint8 images and int64 labels."""
    if x.dtype != np.uint8:
        raise TrainError(f"{where_x}: images are {x.dtype}, expected uint8")
    if x.ndim not in (3, 4):
        raise TrainError(f"{where_x}: images have shape {x.shape}, expected (N, H, W) or (N, H, W, C)")
    if y.dtype.kind not in "iu":
        raise TrainError(f"{where_y}: labels are {y.dtype}, expected integers")
    if y.ndim == 2 and y.shape[1:] == (1,):
        y = y.reshape(-1)
    if y.ndim != 1:
        raise TrainError(f"{where_y}: labels have shape {y.shape}, expected (N,)")
    if len(x) != len(y):
        raise TrainError(f"{where_y}: {len(y)} labels for {len(x)} images in {where_x}")
    if not len(y):
        raise TrainError(f"{where_x}: empty split (no images)")
    if y.min() < 0:
        raise TrainError(f"{where_y}: label {int(y.min())} out of range (labels are 0..K-1)")
    if x.ndim == 3:
        x = x[..., None]
    if 0 in x.shape[1:]:
        raise TrainError(f"{where_x}: images have shape {x.shape[1:]}, which has no pixels")
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64))


def _own_splits(name, parts, val_given):
    """``parts``: split -> (where_x, where_y, images, labels). Validation is the last 10% of train unless given."""
    ds = {k: _check_part(*v) for k, v in parts.items()}
    shape = ds["train"].images.shape[1:]
    for k in ("val", "test"):
        if k in ds and ds[k].images.shape[1:] != shape:
            raise TrainError(
                f"{parts[k][0]}: images are {ds[k].images.shape[1:]}, but the training images "
                f"({parts['train'][0]}) are {shape} (H, W, C)"
            )
    if not val_given:
        n = len(ds["train"])
        if n < 2:
            raise TrainError(f"{parts['train'][0]}: {n} training image, too few to keep 10% for validation")
        ds["train"], ds["val"] = split_validation(ds["train"], max(1, n // 10))
    classes = int(max(d.labels.max() for d in ds.values())) + 1
    return Splits(name, ds["train"], ds["val"], ds["test"], classes=classes)


def _load_npz(path):
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 -- numpy raises OSError, ValueError, BadZipFile, EOFError ...
        raise TrainError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    if not hasattr(f, "files"):
        raise TrainError(f"{path}: a single .npy array, not an .npz archive with x_train, y_train, x_test, y_test")
    with f:
        keys = ["x_train", "y_train", "x_test", "y_test"]
        val_given = "x_val" in f.files or "y_val" in f.files
        if val_given:
            keys += ["x_val", "y_val"]
        arrays = {}
        for k in keys:
            if k not in f.files:
                raise TrainError(
                    f"{path}: missing key {k!r} (an .npz needs x_train, y_train, x_test, y_test"
                    f"{', and x_val with y_val' if val_given else ''})"
                )
            try:
                arrays[k] = f[k]
            except Exception as e:  # noqa: BLE001 -- a corrupt member, or an object array (pickles are refused)
                raise TrainError(f"{path}: key {k!r} cannot be read ({type(e).__name__}: {e})") from None
    parts = {
        s: (f"{path} key 'x_{s}'", f"{path} key 'y_{s}'", arrays[f"x_{s}"], arrays[f"y_{s}"])
        for s in ("train", "test", "val")
        if f"x_{s}" in arrays
    }
    return _own_splits(Path(path).stem, parts, val_given)


_IDX_NAMES = {
    "train_images": ["train-images-idx3-ubyte", "train-images-idx4-ubyte"],
    "train_labels": ["train-labels-idx1-ubyte"],
    "test_images": ["t10k-images-idx3-ubyte", "t10k-images-idx4-ubyte"],
    "test_labels": ["t10k-labels-idx1-ubyte"],
}


def _load_idx_folder(folder):
    arrays, files = {}, {}
    for key, names in _IDX_NAMES.items():
        cands = [folder / (n + s) for n in names for s in (".gz", "")]
        p = next((c for c in cands if c.is_file()), None)
        if p is None:
            raise TrainError(
                f"{folder / names[0]}[.gz]: missing (a folder of IDX files needs "
                f"{', '.join(n[0] for n in _IDX_NAMES.values())})"
            )
        try:
            arrays[key] = read_idx(p)
        except IDXError as e:
            raise TrainError(str(e)) from None
        files[key] = p
    parts = {
        s: (files[f"{s}_images"], files[f"{s}_labels"], arrays[f"{s}_images"], arrays[f"{s}_labels"])
        for s in ("train", "test")
    }
    return _own_splits(folder.resolve().name or "data", parts, False)


def _load_path(name):
    p = Path(name)
    if p.is_dir():
        return _load_idx_folder(p)
    if p.is_file():
        return _load_npz(p)
    raise TrainError(
        f"dataset {name!r}: no such file or folder, and not a named data set; choose one of "
        f"{', '.join(DATASETS)}, or a path to an .npz or a folder of IDX files"
    )


def split_validation(train, n_val):
    """Keep the last ``n_val`` training images as the validation set (as the paper does for MNIST)."""
    n = len(train)
    if not 0 < n_val < n:
        raise TrainError(f"{n} training images cannot spare {n_val} for a validation set")
    return train.take(slice(0, n - n_val)), train.take(slice(n - n_val, n))


DATASETS = {
    "digits": _load_digits,
    "mnist": lambda: _load_idx_set("mnist", _MNIST_FILES),
    "fashion-mnist": lambda: _load_idx_set("fashion-mnist", _FASHION_FILES),
    "cifar10": _load_cifar10,
    "svhn": _load_svhn,
    "cifar10-shape": _load_cifar10_shape,
}


def load_dataset(name):
    """Load a data set as :class:`Splits` (train / validation / test): a name from :data:`DATASETS`, or a path to an
    ``.npz`` or a folder of IDX files (your own data; see the module docstring)."""
    name = os.fspath(name)
    if name in DATASETS:
        return DATASETS[name]()
    return _load_path(name)
