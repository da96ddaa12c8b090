"""MNIST loading: clear errors for missing, truncated and corrupt files; real files load as the paper scales them."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from mnist_mlp import data
from mnist_mlp.data import DataError, load_mnist, prepare_from_gz, validate_raw


def write_idx(path, magic, count, payload_len=None, dims=(28, 28)):
    header = struct.pack(">II", magic, count) + (struct.pack(">II", *dims) if magic == 2051 else b"")
    n = count * 28 * 28 if magic == 2051 else count
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + bytes(n if payload_len is None else payload_len))


def test_missing_files_name_the_files_and_the_fixes(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, split="test")
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "--download" in msg and "--from-gz" in msg


def test_truncated_file_is_reported(tmp_path):
    raw = data.raw_dir(tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte", 2051, 10_000, payload_len=1000)
    write_idx(raw / "t10k-labels-idx1-ubyte", 2049, 10_000)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated or corrupt.*Delete it"):
        validate_raw(tmp_path, "test")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        validate_raw(tmp_path, "test")


def test_wrong_magic_number_is_reported(tmp_path):
    raw = data.raw_dir(tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte", 2049, 10_000)  # a label header on the image file
    write_idx(raw / "t10k-labels-idx1-ubyte", 2049, 10_000)
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        validate_raw(tmp_path, "test")


def test_intact_header_but_wrong_content_fails_md5(tmp_path):
    raw = data.raw_dir(tmp_path)
    write_idx(raw / "t10k-images-idx3-ubyte", 2051, 10_000)
    write_idx(raw / "t10k-labels-idx1-ubyte", 2049, 10_000)
    with pytest.raises(DataError, match="wrong MD5"):
        validate_raw(tmp_path, "test")


def test_unknown_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("anywhere", split="validation")


def test_prepare_from_gz_checks_sha256sums(tmp_path):
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    for name in data.FILES:
        (gz_dir / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    (gz_dir / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {n}.gz\n" for n in data.FILES))
    with pytest.raises(DataError, match="does not match its SHA256SUMS"):
        prepare_from_gz(gz_dir, tmp_path / "root")
    # right checksum but wrong content: caught by the MD5 of the unpacked file, nothing left behind
    (gz_dir / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((gz_dir / (n + '.gz')).read_bytes()).hexdigest()}  {n}.gz\n" for n in data.FILES))
    with pytest.raises(DataError, match="wrong MD5"):
        prepare_from_gz(gz_dir, tmp_path / "root")
    assert not any(data.raw_dir(tmp_path / "root").iterdir())
    (gz_dir / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 broken")
    (gz_dir / "SHA256SUMS").unlink()
    with pytest.raises(DataError, match="cannot unpack"):
        prepare_from_gz(gz_dir, tmp_path / "root")


@pytest.mark.data
def test_real_mnist_loads_scaled_to_minus_one_one(mnist_root):
    x, y = load_mnist(mnist_root, split="train")
    xt, yt = load_mnist(mnist_root, split="test")
    assert x.shape == (60_000, 784) and xt.shape == (10_000, 784)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    assert set(np.unique(yt)) == set(range(10)) and np.bincount(yt).sum() == 10_000
    assert np.bincount(yt)[1] == 1135  # the well-known test-set count of ones
    x2, _ = load_mnist(mnist_root, split="train")
    np.testing.assert_array_equal(x, x2)
