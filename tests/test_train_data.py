"""IDX reader round trips and rejection of corrupt files; the digits split."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from train.data import IDXError, load_dataset, read_idx, write_idx


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


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:-1], "data bytes"),
    (lambda b: b + b"\0", "data bytes"),
    (lambda b: b[:6], "truncated header"),
    (lambda b: b[:2], "truncated header"),
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
    (lambda b: b[:3] + b"\x02" + b[4:], "dimensions"),
])
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
    assert s.test.images.dtype == np.uint8 and s.test.images.max() == 255 and s.shape == (8, 8)
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


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_offline():
    s = load_dataset("fashion-mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (50_000, 10_000, 10_000)
    assert s.shape == (28, 28)
