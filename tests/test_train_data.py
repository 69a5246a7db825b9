"""IDX reader round trips and rejection of corrupt files; every data set loader, on small files written in the real
formats (these machines cannot download CIFAR-10, SVHN or MNIST); your own data (.npz, IDX folder) and its errors."""

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

import train.data as data
from common.idx import IDXError, read_idx, write_idx
from train import TrainError
from train.data import load_dataset

_REAL_MIRRORS = dict(data._MIRRORS)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 3, 7)) * 50).astype(dtype)
    write_idx(tmp_path / name, a)
    b = read_idx(tmp_path / name)
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def _mnist_like(tmp_path):
    a = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    write_idx(tmp_path / "x.idx", a)
    return (tmp_path / "x.idx").read_bytes()


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b[:-1], "data bytes"),
        (lambda b: b + b"\0", "data bytes"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b[:2], "truncated header"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
        (lambda b: b[:3] + b"\x02" + b[4:], "dimensions"),
    ],
)
def test_idx_rejects_corrupt(tmp_path, mutate, reason):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(mutate(_mnist_like(tmp_path)))
    with pytest.raises(IDXError, match=reason) as e:
        read_idx(bad, ndim=3, dtype_code=0x08)
    assert str(bad) in str(e.value)


def test_idx_rejects_corrupt_gzip_and_wrong_type(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(_mnist_like(tmp_path))[:-9])
    with pytest.raises(IDXError, match="gzip"):
        read_idx(p)
    write_idx(tmp_path / "f.idx", np.zeros((2, 2), np.float32))
    with pytest.raises(IDXError, match="type"):
        read_idx(tmp_path / "f.idx", dtype_code=0x08)
    with pytest.raises(IDXError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")


def test_digits_split_is_fixed_and_stratified():
    s = load_dataset("digits")
    assert len(s.train) + len(s.val) == 1437 and len(s.test) == 360 and len(s.val) == 240
    assert s.test.images.dtype == np.uint8 and s.test.images.max() == 255 and s.shape == (1, 8, 8)
    assert s.test.images.shape == (360, 8, 8, 1) and s.test.labels.dtype == np.int64 and not s.synthetic
    counts = np.bincount(s.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: 36 +- 1 per class
    again = load_dataset("digits")
    assert np.array_equal(s.test.images, again.test.images) and np.array_equal(s.train.labels, again.train.labels)


def test_mnist_offline_error_names_env_and_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import train.data as data

    monkeypatch.setattr(data, "_MIRRORS", {**data._MIRRORS, "mnist": ["http://127.0.0.1:9/"]})
    with pytest.raises(data.TrainError, match="MNIST_DIR.*digits.*fashion-mnist"):
        load_dataset("mnist")


def test_mnist_found_in_env_dir_and_hash_checked(tmp_path, monkeypatch):
    import train.data as data

    for fname, _ in data._MNIST_FILES.values():
        (tmp_path / fname).write_bytes(b"not mnist")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    with pytest.raises(IDXError, match="SHA-256"):
        load_dataset("mnist")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_offline():
    s = load_dataset("fashion-mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (50_000, 10_000, 10_000)
    assert s.shape == (1, 28, 28) and s.test.images.shape == (10_000, 28, 28, 1)


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def _md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_mnist_layout_on_idx_files_in_env_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (10_010, 2, 3), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 10_010).astype(np.uint8),
        "test_images": rng.integers(0, 256, (7, 2, 3), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 7).astype(np.uint8),
    }
    files = {}
    for key, (fname, _) in data._MNIST_FILES.items():
        write_idx(tmp_path / fname, arrays[key])
        files[key] = (fname, hashlib.sha256((tmp_path / fname).read_bytes()).hexdigest())
    monkeypatch.setattr(data, "_MNIST_FILES", files)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    s = load_dataset("mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (10, 10_000, 7) and s.shape == (1, 2, 3)
    assert s.test.images.shape == (7, 2, 3, 1) and np.array_equal(s.test.images[..., 0], arrays["test_images"])
    assert np.array_equal(s.val.labels, arrays["train_labels"][10:]) and s.val.labels.dtype == np.int64


# --- CIFAR-10 --------------------------------------------------------------------------------------------------------


def _cifar_batches(n=20):
    """Tiny batches in the real layout; image i of batch b has pixel (0, 0) = (b, i, 7) and label (b + i) % 10."""
    out = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        rows = np.random.default_rng(b).integers(0, 256, (n, 3072), dtype=np.uint8)
        rows[:, 0], rows[:, 1024], rows[:, 2048] = b, np.arange(n), 7  # pixel (0,0): R plane, G plane, B plane
        out[name] = {
            b"batch_label": name.encode(),
            b"labels": [(b + i) % 10 for i in range(n)],
            b"data": rows,
            b"filenames": [b"x.png"] * n,
        }
    # a pure red pixel at (row 5, column 9) of test image 3: only the R plane's byte 5*32+9 is set
    out["test_batch"][b"data"][3, [5 * 32 + 9, 1024 + 5 * 32 + 9, 2048 + 5 * 32 + 9]] = (255, 0, 0)
    return out


class _Py2Pickler(pickle._Pickler):
    """What Python 2's cPickle wrote (the real batches): every str and bytes as a byte STRING, numpy as numpy.core."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        obj = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_bytes

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def _pickle(obj, protocol):
    if protocol != "py2":
        return pickle.dumps(obj, protocol=protocol)
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def _cifar_tarball(path, protocol="py2", batches=None):
    batches = batches or _cifar_batches()
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        for name, d in batches.items():
            raw = _pickle(d, protocol)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def cifar_env(tmp_path, monkeypatch):
    """No network, an empty cache, and a 10-image validation split for the tiny batches."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(data, "_MIRRORS", {**data._MIRRORS, "cifar10": ["http://127.0.0.1:9/"]})
    monkeypatch.setattr(data, "_CIFAR10_VAL", 10)
    return tmp_path


def _use_md5(monkeypatch, path):
    monkeypatch.setattr(data, "_CIFAR10_FILE", (data._CIFAR10_FILE[0], _md5(path)))


def _check_cifar(s):
    assert s.name == "cifar10" and s.classes == 10 and not s.synthetic and s.shape == (3, 32, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 20)
    for part in (s.train, s.val, s.test):
        assert part.images.dtype == np.uint8 and part.labels.dtype == np.int64 and part.images.flags.c_contiguous
    # raster order within a batch, batches 1..5 in order, the last 10 training images are the validation set
    assert list(s.train.images[:25, 0, 0, 0]) == [0] * 20 + [1] * 5
    assert list(s.train.images[:25, 0, 0, 1]) == list(range(20)) + list(range(5))
    assert set(s.train.images[:, 0, 0, 2]) == {7}
    assert list(s.val.images[:, 0, 0, 0]) == [4] * 10 and list(s.val.images[:, 0, 0, 1]) == list(range(10, 20))
    assert list(s.test.labels) == [(5 + i) % 10 for i in range(20)]
    # the red pixel lands in channel 0, at (row 5, column 9)
    assert tuple(s.test.images[3, 5, 9]) == (255, 0, 0)
    rows = _cifar_batches()["test_batch"][b"data"]
    assert np.array_equal(s.test.images, rows.reshape(20, 3, 32, 32).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar10_from_cached_tarball(cifar_env, monkeypatch, protocol):
    tar = _cifar_tarball(cifar_env / "x.tar.gz", protocol)
    (cifar_env / "cache" / "lutmac" / "cifar10").mkdir(parents=True)
    tar.rename(cifar_env / "cache" / "lutmac" / "cifar10" / "cifar-10-python.tar.gz")
    _use_md5(monkeypatch, cifar_env / "cache" / "lutmac" / "cifar10" / "cifar-10-python.tar.gz")
    _check_cifar(load_dataset("cifar10"))


def test_cifar10_corrupt_cached_tarball_refused(cifar_env, monkeypatch):
    cached = cifar_env / "cache" / "lutmac" / "cifar10" / "cifar-10-python.tar.gz"
    cached.parent.mkdir(parents=True)
    _cifar_tarball(cached)
    _use_md5(monkeypatch, cached)
    good = cached.read_bytes()
    cached.write_bytes(good[:-100] + bytes(100))  # damaged: would still open as far as gzip goes
    with pytest.raises(TrainError, match="MD5") as e:
        load_dataset("cifar10")
    assert str(cached) in _one_line(e)
    # the real published checksum is what is checked by default: the tiny tarball is refused too
    cached.write_bytes(good)
    monkeypatch.setattr(data, "_CIFAR10_FILE", ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"))
    with pytest.raises(TrainError, match="c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10")


def test_cifar10_env_dir_tarball_file_folder_and_extracted(cifar_env, monkeypatch):
    tar = _cifar_tarball(cifar_env / "cifar-10-python.tar.gz")
    _use_md5(monkeypatch, tar)
    monkeypatch.setenv("CIFAR10_DIR", str(tar))  # the tarball itself
    _check_cifar(load_dataset("cifar10"))
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_env))  # a folder holding it
    _check_cifar(load_dataset("cifar10"))
    ext = cifar_env / "ext"
    with tarfile.open(tar) as tf:
        tf.extractall(ext, filter="data")
    tar.unlink()
    monkeypatch.setenv("CIFAR10_DIR", str(ext))  # a folder holding cifar-10-batches-py
    _check_cifar(load_dataset("cifar10"))
    monkeypatch.setenv("CIFAR10_DIR", str(ext / "cifar-10-batches-py"))  # the extracted folder itself
    _check_cifar(load_dataset("cifar10"))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar10_pickles_cannot_run_code(cifar_env, monkeypatch, capsys):
    batches = _cifar_batches()
    batches["data_batch_2"][b"labels"] = _Evil()
    ext = cifar_env / "ext"
    _cifar_tarball(cifar_env / "t.tar.gz", batches=batches)
    with tarfile.open(cifar_env / "t.tar.gz") as tf:
        tf.extractall(ext, filter="data")
    monkeypatch.setenv("CIFAR10_DIR", str(ext / "cifar-10-batches-py"))
    with pytest.raises(TrainError, match=r"data_batch_2: not a CIFAR-10 batch .*refusing to load \w+\.print") as e:
        load_dataset("cifar10")
    _one_line(e)
    assert "pwned" not in capsys.readouterr().out


def test_cifar10_bad_batches(cifar_env, monkeypatch):
    batches = _cifar_batches()
    batches["data_batch_3"][b"data"] = batches["data_batch_3"][b"data"][:, :100]
    _use_md5(monkeypatch, _cifar_tarball(cifar_env / "cifar-10-python.tar.gz", batches=batches))
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_env))
    with pytest.raises(TrainError, match=r"data_batch_3: b'data' is not uint8 \(N, 3072\)") as e:
        load_dataset("cifar10")
    _one_line(e)
    del batches["test_batch"]
    batches["data_batch_3"] = _cifar_batches()["data_batch_3"]
    _use_md5(monkeypatch, _cifar_tarball(cifar_env / "cifar-10-python.tar.gz", batches=batches))
    with pytest.raises(TrainError, match="lacks cifar-10-batches-py/test_batch"):
        load_dataset("cifar10")


def test_cifar10_offline_names_env_variable(cifar_env):
    with pytest.raises(TrainError, match=r"cifar-10-python.tar.gz.*download failed.*\$CIFAR10_DIR.*cifar10-shape") as e:
        load_dataset("cifar10")
    _one_line(e)
    assert not (cifar_env / "cache" / "lutmac" / "cifar10" / "cifar-10-python.tar.gz").exists()


def test_cifar10_download_checks_md5_and_writes_the_cache(cifar_env, monkeypatch):
    served = _cifar_tarball(cifar_env / "served.tar.gz").read_bytes()

    class _Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    urls = []
    monkeypatch.setattr(data, "_MIRRORS", _REAL_MIRRORS)  # nothing leaves the machine: urlopen is replaced
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: urls.append(url) or _Resp(served))
    with pytest.raises(TrainError, match="MD5 mismatch"):  # the real checksum: our tiny file is refused
        load_dataset("cifar10")
    cached = cifar_env / "cache" / "lutmac" / "cifar10" / "cifar-10-python.tar.gz"
    assert not cached.exists() and urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    monkeypatch.setattr(data, "_CIFAR10_FILE", ("cifar-10-python.tar.gz", hashlib.md5(served).hexdigest()))
    _check_cifar(load_dataset("cifar10"))
    assert cached.read_bytes() == served


def test_cifar10_shape_is_synthetic_and_seeded():
    s = load_dataset("cifar10-shape")
    assert s.synthetic and s.classes == 10 and s.shape == (3, 32, 32) and s.name == "cifar10-shape"
    assert (len(s.train), len(s.val), len(s.test)) == (2_000, 500, 1_000)
    assert s.test.images.dtype == np.uint8 and s.test.images.shape == (1_000, 32, 32, 3)
    assert s.train.labels.dtype == np.int64 and set(s.train.labels) == set(range(10))
    again = load_dataset("cifar10-shape")
    assert np.array_equal(s.test.images, again.test.images) and np.array_equal(s.val.labels, again.val.labels)


# --- SVHN ------------------------------------------------------------------------------------------------------------


def _svhn_mat(path, n, seed):
    """(32, 32, 3, n) uint8 with image i's pixel (0, 0) = (i, seed, 0); labels 1..10 cycling (10 = digit 0)."""
    import scipy.io

    x = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    x[0, 0, 0, :], x[0, 0, 1, :], x[0, 0, 2, :] = np.arange(n), seed, 0
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y[:, 0]


@pytest.fixture
def svhn_dir(tmp_path, monkeypatch):
    d = tmp_path / "svhn"
    d.mkdir()
    files = {
        "train": _svhn_mat(d / "train_32x32.mat", 60, 1),
        "test": _svhn_mat(d / "test_32x32.mat", 20, 2),
        "extra": _svhn_mat(d / "extra_32x32.mat", 40, 3),
    }
    monkeypatch.setattr(data, "_SVHN_FILES", {k: (f"{k}_32x32.mat", _md5(d / f"{k}_32x32.mat")) for k in files})
    monkeypatch.setattr(data, "_SVHN_VAL_PER_CLASS", {"train": 2, "extra": 1})
    monkeypatch.setattr(data, "_MIRRORS", {**data._MIRRORS, "svhn": ["http://127.0.0.1:9/"]})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SVHN_DIR", str(d))
    return d, files


def _pylearn2_val(y, per_class, rng):
    val = []
    for c in range(1, 11):
        idx = np.nonzero(y == c)[0]
        rng.shuffle(idx)
        val += list(idx[:per_class])
    return sorted(val)


def test_svhn_layout_labels_and_paper_split(svhn_dir):
    d, files = svhn_dir
    s = load_dataset("svhn")
    assert s.name == "svhn" and s.classes == 10 and s.shape == (3, 32, 32) and not s.synthetic
    assert (len(s.train), len(s.val), len(s.test)) == (60 + 40 - 30, 30, 20)
    x, y = files["test"]
    assert np.array_equal(s.test.images, x.transpose(3, 0, 1, 2))
    assert s.test.images[4, 7, 11, 2] == x[7, 11, 2, 4]  # (H, W, C, N) -> (N, H, W, C) on a known pixel
    assert list(s.test.labels) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] * 2  # 10 -> 0
    for part in (s.train, s.val, s.test):
        assert part.images.dtype == np.uint8 and part.labels.dtype == np.int64 and part.images.flags.c_contiguous
        assert part.labels.min() >= 0 and part.labels.max() <= 9
    # validation: pylearn2's 2 (here) per class from train then 1 per class from extra, one RandomState(322)
    rng = np.random.RandomState(322)
    want_tr, want_ex = _pylearn2_val(files["train"][1], 2, rng), _pylearn2_val(files["extra"][1], 1, rng)
    got = list(zip(s.val.images[:, 0, 0, 1], s.val.images[:, 0, 0, 0]))  # (file seed, index)
    assert got == [(1, i) for i in want_tr] + [(3, i) for i in want_ex]
    assert list(np.bincount(s.val.labels)) == [3] * 10
    # training: everything else, train's images before extra's, in file order
    got = list(zip(s.train.images[:, 0, 0, 1], s.train.images[:, 0, 0, 0]))
    assert got == [(1, i) for i in range(60) if i not in want_tr] + [(3, i) for i in range(40) if i not in want_ex]
    for (seed, i), img, label in zip(got, s.train.images, s.train.labels):
        fx, fy = files["train" if seed == 1 else "extra"]
        assert np.array_equal(img, fx[..., i]) and label == fy[i] % 10


def test_svhn_without_extra_uses_train_only(svhn_dir, capsys):
    d, files = svhn_dir
    (d / "extra_32x32.mat").unlink()
    s = load_dataset("svhn")
    assert (len(s.train), len(s.val), len(s.test)) == (40, 20, 20)
    assert set(s.train.images[:, 0, 0, 1]) == {1} and set(s.val.images[:, 0, 0, 1]) == {1}
    assert capsys.readouterr().out == ""


def test_svhn_md5_checked_and_bad_files(svhn_dir):
    d, files = svhn_dir
    (d / "extra_32x32.mat").write_bytes((d / "extra_32x32.mat").read_bytes()[:-1] + b"\0")
    with pytest.raises(TrainError, match="extra_32x32.mat: MD5") as e:
        load_dataset("svhn")
    _one_line(e)
    (d / "extra_32x32.mat").unlink()
    import scipy.io

    scipy.io.savemat(d / "test_32x32.mat", {"X": files["test"][0].astype(np.float64), "y": files["test"][1]})
    data._SVHN_FILES["test"] = ("test_32x32.mat", _md5(d / "test_32x32.mat"))
    with pytest.raises(TrainError, match=r"test_32x32.mat: 'X' is float64"):
        load_dataset("svhn")
    scipy.io.savemat(d / "test_32x32.mat", {"X": files["test"][0], "y": files["test"][1] - 1})
    data._SVHN_FILES["test"] = ("test_32x32.mat", _md5(d / "test_32x32.mat"))
    with pytest.raises(TrainError, match=r"test_32x32.mat: 'y' is not 20 labels 1..10"):
        load_dataset("svhn")
    (d / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage")
    data._SVHN_FILES["test"] = ("test_32x32.mat", _md5(d / "test_32x32.mat"))
    with pytest.raises(TrainError, match="test_32x32.mat: cannot read") as e:
        load_dataset("svhn")
    _one_line(e)


def test_svhn_offline_names_env_variable(svhn_dir, monkeypatch):
    d, _ = svhn_dir
    (d / "test_32x32.mat").unlink()
    with pytest.raises(TrainError, match=r"test_32x32.mat not found locally.*\$SVHN_DIR") as e:
        load_dataset("svhn")
    _one_line(e)


# --- your own data ---------------------------------------------------------------------------------------------------


def _own_arrays(rgb=True, val=False):
    rng = np.random.default_rng(5)
    shape = (5, 6, 3) if rgb else (5, 6)
    a = {
        "x_train": rng.integers(0, 256, (30, *shape), dtype=np.uint8),
        "y_train": np.arange(30) % 4,
        "x_test": rng.integers(0, 256, (8, *shape), dtype=np.uint8),
        "y_test": np.arange(8, dtype=np.uint8) % 6,
    }
    if val:
        a["x_val"], a["y_val"] = rng.integers(0, 256, (4, *shape), dtype=np.uint8), np.array([0, 1, 2, 7])
    return a


def test_own_npz(tmp_path):
    a = _own_arrays()
    np.savez(tmp_path / "mine.npz", **a)
    s = load_dataset(tmp_path / "mine.npz")
    assert s.name == "mine" and s.classes == 6 and s.shape == (3, 5, 6) and not s.synthetic
    assert (len(s.train), len(s.val), len(s.test)) == (27, 3, 8)  # last 10% of train for validation
    assert np.array_equal(s.val.images, a["x_train"][27:]) and np.array_equal(s.test.images, a["x_test"])
    assert s.train.labels.dtype == np.int64 and s.test.labels.dtype == np.int64
    a = _own_arrays(rgb=False, val=True)
    np.savez_compressed(tmp_path / "grey.npz", **a)
    s = load_dataset(str(tmp_path / "grey.npz"))
    assert s.classes == 8 and s.shape == (1, 5, 6) and (len(s.train), len(s.val)) == (30, 4)
    assert s.val.images.shape == (4, 5, 6, 1) and np.array_equal(s.val.images[..., 0], a["x_val"])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.pop("y_test"), "missing key 'y_test'"),
        (lambda a: a.pop("y_val"), "missing key 'y_val'"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "key 'x_train'.*float32, expected uint8"),
        (lambda a: a.update(y_test=a["y_test"].astype(np.float64)), "key 'y_test'.*float64, expected integers"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "key 'y_train'.*29 labels for 30 images"),
        (lambda a: a.update(x_test=a["x_test"][:, :4]), "key 'x_test'.*images are \\(4, 6, 3\\).*\\(5, 6, 3\\)"),
        (lambda a: a.update(x_val=a["x_val"][..., :1]), "key 'x_val'.*images are \\(5, 6, 1\\)"),
        (lambda a: a.update(y_val=np.array([0, -1, 2, 3])), "key 'y_val'.*label -1 out of range"),
        (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "key 'x_test'.*empty split"),
        (
            lambda a: a.update(x_train=a["x_train"][:, 0, 0]),
            "key 'x_train'.*expected \\(N, H, W\\) or \\(N, H, W, C\\)",
        ),
        (lambda a: a.update(y_train=np.array(["a"] * 30)), "key 'y_train'.*expected integers"),
    ],
)
def test_own_npz_errors(tmp_path, change, match):
    a = _own_arrays(val=True)
    change(a)
    p = tmp_path / "bad.npz"
    np.savez(p, **a)
    with pytest.raises(TrainError, match=match) as e:
        load_dataset(p)
    assert str(p) in _one_line(e)


def test_own_npz_unreadable(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK\3\4 not really a zip")
    with pytest.raises(TrainError, match="cannot read") as e:
        load_dataset(p)
    assert str(p) in _one_line(e)
    p = tmp_path / "obj.npz"
    a = _own_arrays()
    a["y_train"] = np.array([object()] * 30)
    np.savez(p, **a)
    with pytest.raises(TrainError, match="key 'y_train' cannot be read") as e:
        load_dataset(p)
    assert str(p) in _one_line(e)
    with pytest.raises(TrainError, match="no such file or folder.*digits.*npz") as e:
        load_dataset(tmp_path / "absent.npz")
    _one_line(e)


def _idx_folder(d, a, gz=True):
    d.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(d / f"train-images-idx3-ubyte{ext}", a["x_train"])
    write_idx(d / f"train-labels-idx1-ubyte{ext}", a["y_train"])
    write_idx(d / f"t10k-images-idx3-ubyte{ext}", a["x_test"])
    write_idx(d / f"t10k-labels-idx1-ubyte{ext}", a["y_test"])
    return d


def test_own_idx_folder(tmp_path):
    a = _own_arrays(rgb=False)
    a["y_train"] = a["y_train"].astype(np.uint8)
    s = load_dataset(_idx_folder(tmp_path / "grey", a))
    assert s.name == "grey" and s.shape == (1, 5, 6) and s.classes == 6 and (len(s.train), len(s.val)) == (27, 3)
    assert np.array_equal(s.test.images[..., 0], a["x_test"]) and s.test.labels.dtype == np.int64
    a = _own_arrays(rgb=True)  # 4-D IDX images (N, H, W, C), int32 labels
    a["y_train"] = a["y_train"].astype(np.int32)
    s = load_dataset(_idx_folder(tmp_path / "rgb", a, gz=False))
    assert s.shape == (3, 5, 6) and np.array_equal(s.test.images, a["x_test"]) and s.classes == 6


@pytest.mark.parametrize(
    "change, bad, match",
    [
        ("missing", "t10k-labels-idx1-ubyte", "missing"),
        ("float_images", "train-images-idx3-ubyte", "float32, expected uint8"),
        ("float_labels", "t10k-labels-idx1-ubyte", "float64, expected integers"),
        ("count", "train-labels-idx1-ubyte", "29 labels for 30 images"),
        ("shape", "t10k-images-idx3-ubyte", "images are \\(5, 4, 1\\).*\\(5, 6, 1\\)"),
        ("negative", "train-labels-idx1-ubyte", "label -3 out of range"),
        ("empty", "t10k-images-idx3-ubyte", "empty split"),
        ("corrupt", "train-images-idx3-ubyte", "data bytes"),
    ],
)
def test_own_idx_folder_errors(tmp_path, change, bad, match):
    a = _own_arrays(rgb=False)
    a["y_train"] = a["y_train"].astype(np.uint8)
    d = _idx_folder(tmp_path / "d", a, gz=False)
    p = d / bad
    if change == "missing":
        p.unlink()
    elif change == "float_images":
        write_idx(p, a["x_train"].astype(np.float32))
    elif change == "float_labels":
        write_idx(p, a["y_test"].astype(np.float64))
    elif change == "count":
        write_idx(p, a["y_train"][:-1])
    elif change == "shape":
        write_idx(p, a["x_test"][:, :, :4])
    elif change == "negative":
        write_idx(p, np.where(np.arange(30) == 4, -3, a["y_train"]).astype(np.int8))
    elif change == "empty":
        write_idx(p, a["x_test"][:0])
        write_idx(d / "t10k-labels-idx1-ubyte", a["y_test"][:0])
    elif change == "corrupt":
        p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(TrainError, match=match) as e:
        load_dataset(d)
    assert str(p) in _one_line(e)
