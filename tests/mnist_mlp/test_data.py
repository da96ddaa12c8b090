"""MNIST and Fashion-MNIST loading: clear errors for missing, truncated and corrupt files; real files load as the
paper scales them.

Error paths use small synthetic IDX files. The happy path runs on a "tiny MNIST" / "tiny Fashion-MNIST" (a few items
per file, with the dataset's entry in ``data.DATASETS`` patched to their MD5s and counts) and on the real files:
MNIST unpacked once per test session from ``$SUBLIMINAL_MNIST_GZ``, Fashion-MNIST through the ``fashion_root``
fixture (``$SUBLIMINAL_FASHION_GZ``; ``.ci/run`` sets both); both skipped when absent, failed when
``SUBLIMINAL_REQUIRE_DATA=1``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import shutil
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

from mnist_mlp import data
from mnist_mlp.data import (
    DataError,
    ensure_dataset,
    load_dataset,
    load_mnist,
    prepare_from_gz,
    resolve_test_data_dir,
    validate_raw,
)
from tests.real_data import unavailable

TEST_FILES = data.SPLITS["test"]


def idx_bytes(magic: int, count: int, *, payload: bytes | None = None, dims: tuple[int, int] = (28, 28)) -> bytes:
    header = struct.pack(">II", magic, count) + (struct.pack(">II", *dims) if magic == data.IMAGE_MAGIC else b"")
    n = count * dims[0] * dims[1] if magic == data.IMAGE_MAGIC else count
    return header + (bytes(n) if payload is None else payload)


def write_raw(root: Path, name: str, content: bytes, dataset: str = "mnist") -> Path:
    path = data.raw_dir(root, dataset=dataset) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write_valid_headers(root: Path, dataset: str = "mnist") -> None:
    """Both test-split files with correct headers and sizes (all-zero payload, so the MD5 is wrong)."""
    for name in TEST_FILES:
        _, magic, count = data.DATASETS[dataset].files[name]
        write_raw(root, name, idx_bytes(magic, count), dataset)


def assert_says_what_to_do(msg: str, root: Path, dataset: str = "mnist") -> None:
    assert "--download" in msg and "--from-gz" in msg and str(root) in msg
    if dataset == "fashion":  # the fix must be Fashion's, not MNIST's
        assert "Fashion-MNIST" in msg and "python -m mnist_mlp.data --dataset fashion --from-gz DIR" in msg


# ---- synthetic error paths ----------------------------------------------------------------------------------------

def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SUBLIMINAL_DATA_DIR", raising=False)
    assert data.default_data_dir() == Path("data")
    monkeypatch.setenv("SUBLIMINAL_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path


def test_missing_files_name_the_files_the_folder_and_the_fixes(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, split="test")
    msg = str(e.value)
    assert all(str(data.raw_dir(tmp_path) / n) in msg for n in TEST_FILES)
    assert_says_what_to_do(msg, tmp_path)


def test_truncated_file_says_delete_and_redo(tmp_path):
    write_valid_headers(tmp_path)
    images = write_raw(tmp_path, TEST_FILES[0], idx_bytes(2051, 10_000, payload=bytes(1000)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated or corrupt.*Delete it") as e:
        validate_raw(tmp_path, "test")
    assert_says_what_to_do(str(e.value), tmp_path)
    images.write_bytes(b"\x00\x00")  # shorter than the header
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        validate_raw(tmp_path, "test")


def test_wrong_magic_number_is_reported(tmp_path):
    write_valid_headers(tmp_path)
    write_raw(tmp_path, TEST_FILES[0], idx_bytes(2049, 10_000))  # a label header on the image file
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has magic number 2049, expected 2051") as e:
        validate_raw(tmp_path, "test")
    assert_says_what_to_do(str(e.value), tmp_path)


def test_still_compressed_file_is_recognised(tmp_path):
    write_valid_headers(tmp_path)
    write_raw(tmp_path, TEST_FILES[1], gzip.compress(idx_bytes(2049, 10_000)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte has magic number .*gzip-compressed"):
        validate_raw(tmp_path, "test")


def test_wrong_count_or_image_size_is_reported(tmp_path):
    write_valid_headers(tmp_path)
    write_raw(tmp_path, TEST_FILES[0], idx_bytes(2051, 10_000, dims=(32, 32)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte has images of shape \(32, 32\)"):
        validate_raw(tmp_path, "test")
    write_raw(tmp_path, TEST_FILES[0], idx_bytes(2051, 60_000))  # the train file under the test name
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte holds 60000 items, expected 10000"):
        validate_raw(tmp_path, "test")


def test_valid_header_but_wrong_content_fails_md5(tmp_path):
    write_valid_headers(tmp_path)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has a valid header and size but the wrong MD5") as e:
        validate_raw(tmp_path, "test")
    assert_says_what_to_do(str(e.value), tmp_path)


def test_unknown_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("anywhere", split="validation")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        validate_raw("anywhere", "val")


def fake_gz_dir(tmp_path: Path, content: bytes = b"not mnist") -> Path:
    gz_dir = tmp_path / "gz"  # the same file names serve both datasets
    gz_dir.mkdir()
    for name in data.FILES:
        (gz_dir / f"{name}.gz").write_bytes(gzip.compress(content))
    return gz_dir


def write_sums(gz_dir: Path, digests: dict[str, str] | None = None) -> None:
    digests = digests or {f"{n}.gz": hashlib.sha256((gz_dir / f"{n}.gz").read_bytes()).hexdigest() for n in data.FILES}
    (gz_dir / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in digests.items()))


def test_prepare_from_gz_sha256_mismatch_names_the_file(tmp_path):
    gz_dir = fake_gz_dir(tmp_path)
    write_sums(gz_dir, {f"{n}.gz": "0" * 64 for n in data.FILES})
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz does not match its SHA256SUMS.*fetch it again"):
        prepare_from_gz(gz_dir, tmp_path / "root")
    assert not any(data.raw_dir(tmp_path / "root").iterdir())  # nothing unpacked from an unverified archive


def test_prepare_from_gz_wrong_content_leaves_nothing_behind(tmp_path):
    gz_dir = fake_gz_dir(tmp_path)
    write_sums(gz_dir)  # checksums match, but the content is not MNIST: the MD5 of the unpacked file catches it
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz unpacks to a file with the wrong MD5"):
        prepare_from_gz(gz_dir, tmp_path / "root")
    assert not any(data.raw_dir(tmp_path / "root").iterdir())  # no temp file, no partial target


def test_prepare_from_gz_broken_archive_and_missing_archive(tmp_path):
    gz_dir = fake_gz_dir(tmp_path)
    (gz_dir / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 broken")  # no SHA256SUMS: gzip fails
    with pytest.raises(DataError, match=r"cannot unpack .*train-images-idx3-ubyte\.gz.*truncated or corrupt"):
        prepare_from_gz(gz_dir, tmp_path / "root")
    assert not any(data.raw_dir(tmp_path / "root").iterdir())
    (gz_dir / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz not found.*t10k-labels-idx1-ubyte\.gz"):
        prepare_from_gz(gz_dir, tmp_path / "root")


def test_download_failure_points_to_the_offline_path(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError(f"Error downloading train-images-idx3-ubyte.gz: {URLError('no network')}")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match=r"downloading MNIST into .* failed.*--from-gz DIR --data-dir"):
        load_mnist(tmp_path, split="train", download=True)


def test_resolve_test_data_dir_is_none_without_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("SUBLIMINAL_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.setenv("SUBLIMINAL_MNIST_GZ", str(tmp_path / "no-gz-here"))
    assert resolve_test_data_dir() is None


def test_cli_reports_errors_without_traceback(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: .*not found"):
        data.main(["--from-gz", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "root")])


# ---- happy path on a tiny synthetic MNIST (same code path, a few items per file) -----------------------------------

def make_tiny_gz(monkeypatch, tmp_path: Path, dataset: str, seed: int) -> Path:
    """A gz folder with 5 train / 3 test items and SHA256SUMS; ``data.DATASETS[dataset]`` patched to match."""
    rng = np.random.default_rng(seed)
    gz_dir = tmp_path / f"tiny-{dataset}-gz"
    gz_dir.mkdir()
    files = {}
    for name, (_, magic, _) in data.DATASETS[dataset].files.items():
        count = 5 if name.startswith("train") else 3
        if magic == data.IMAGE_MAGIC:
            payload = rng.integers(0, 256, count * 784)
            payload[:2] = (0, 255)  # both ends of the pixel range, to check the scaling
        else:
            payload = np.arange(count)
        raw = idx_bytes(magic, count, payload=payload.astype(np.uint8).tobytes())
        (gz_dir / f"{name}.gz").write_bytes(gzip.compress(raw))
        files[name] = (hashlib.md5(raw).hexdigest(), magic, count)
    write_sums(gz_dir)
    monkeypatch.setitem(data.DATASETS, dataset, dataclasses.replace(data.DATASETS[dataset], files=files))
    return gz_dir


@pytest.fixture
def tiny_gz(monkeypatch, tmp_path) -> Path:
    return make_tiny_gz(monkeypatch, tmp_path, "mnist", seed=0)


@pytest.fixture
def tiny_fashion_gz(monkeypatch, tmp_path) -> Path:
    return make_tiny_gz(monkeypatch, tmp_path, "fashion", seed=1)  # another seed: content differs from tiny MNIST's


def test_prepare_from_gz_unpacks_validates_and_skips_valid_files(tiny_gz, tmp_path):
    root = tmp_path / "root"
    raw = prepare_from_gz(tiny_gz, root)
    assert raw == data.raw_dir(root) and sorted(p.name for p in raw.iterdir()) == sorted(data.FILES)
    for split in data.SPLITS:
        validate_raw(root, split)
    inodes = {p.name: p.stat().st_ino for p in raw.iterdir()}
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"corrupt")
    prepare_from_gz(tiny_gz, root)  # rewrites only the corrupt file
    after = {p.name: p.stat().st_ino for p in raw.iterdir()}
    assert {n for n in after if after[n] != inodes[n]} == {"t10k-labels-idx1-ubyte"}
    validate_raw(root, "test")


def test_load_mnist_scales_to_minus_one_one_as_torchvision_reads_it(tiny_gz, tmp_path):
    prepare_from_gz(tiny_gz, tmp_path)
    x, y = load_mnist(tmp_path, split="train")
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(y, np.arange(5))
    with pytest.raises(ValueError):
        x[0, 0] = 0.0  # cached arrays are shared, hence read-only
    for split in data.SPLITS:  # numpy's read of the IDX files is torchvision's, bit for bit
        got, want = load_mnist(tmp_path, split=split), data._load_torchvision(str(tmp_path.resolve()), split)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_loading_mnist_imports_no_torch(tiny_gz, tmp_path):
    """load_dataset reads validated files with numpy: a training process does not pay torch's import."""
    import subprocess
    import sys

    prepare_from_gz(tiny_gz, tmp_path)
    files = json.dumps(data.DATASETS["mnist"].files)  # the tiny files' MD5s (patched by tiny_gz)
    code = ("import json, sys; from mnist_mlp import data; "
            "data.DATASETS['mnist'].files.update((k, tuple(v)) for k, v in json.loads(sys.argv[1]).items()); "
            "x, y = data.load_mnist(sys.argv[2], split='test'); assert x.shape == (3, 784), x.shape; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code, files, str(tmp_path)], cwd=data.REPO_ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_resolve_test_data_dir_unpacks_from_gz(tiny_gz, monkeypatch, tmp_path):
    root = tmp_path / "root"
    monkeypatch.setenv("SUBLIMINAL_DATA_DIR", str(root))
    monkeypatch.setenv("SUBLIMINAL_MNIST_GZ", str(tiny_gz))
    assert resolve_test_data_dir() == root
    validate_raw(root, "train")
    monkeypatch.setenv("SUBLIMINAL_MNIST_GZ", str(tmp_path / "gone"))
    assert resolve_test_data_dir() == root  # already valid: no gz needed


def test_cli_from_gz(tiny_gz, tmp_path, capsys):
    data.main(["--from-gz", str(tiny_gz), "--data-dir", str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert "unpacked" in out and "train: 5 images OK" in out and "test: 3 images OK" in out


# ---- real MNIST --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def real_root(tmp_path_factory) -> Path:
    """Real MNIST unpacked once per session into a temp root. Skips offline; fails with SUBLIMINAL_REQUIRE_DATA=1."""
    gz = data.gz_source()
    if gz is None:
        msg = ("real MNIST .gz files not found: set SUBLIMINAL_MNIST_GZ to a folder with "
               f"{', '.join(n + '.gz' for n in data.FILES)}")
        unavailable(msg)
    root = tmp_path_factory.mktemp("mnist")
    prepare_from_gz(gz, root)
    return root


@pytest.mark.data
def test_real_gz_unpack_is_valid_and_idempotent(real_root):
    for split in data.SPLITS:
        validate_raw(real_root, split)
    raw = data.raw_dir(real_root)
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    prepare_from_gz(data.gz_source(), real_root)  # all valid: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


@pytest.mark.data
def test_real_train_split(real_root):
    x, y = load_mnist(real_root, split="train")
    assert x.shape == (60_000, 784) and x.dtype == np.float32
    assert y.shape == (60_000,) and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


@pytest.mark.data
def test_real_test_split(real_root):
    x, y = load_mnist(real_root, split="test")
    assert x.shape == (10_000, 784) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.min() > 0 and counts.sum() == 10_000
    assert counts[1] == 1135  # the well-known number of ones in the test set


@pytest.mark.data
def test_real_numpy_read_equals_torchvisions(real_root):
    for split in data.SPLITS:
        got, want = load_mnist(real_root, split=split), data._load_torchvision(str(real_root.resolve()), split)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.data
def test_real_second_load_is_identical(real_root):
    x1, y1 = load_mnist(real_root, split="test")
    x2, y2 = load_mnist(real_root, split="test")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    data._load.cache_clear()  # a fresh read from disk gives the same arrays too
    x3, y3 = load_mnist(real_root, split="test")
    np.testing.assert_array_equal(x1, x3)
    np.testing.assert_array_equal(y1, y3)


# ---- Fashion-MNIST: same files, checks and offline path, in its own folder ------------------------------------------

def test_unknown_dataset_lists_the_known_ones(tmp_path):
    calls = [lambda: load_dataset("kmnist", tmp_path), lambda: validate_raw(tmp_path, "test", dataset="kmnist"),
             lambda: prepare_from_gz(tmp_path, tmp_path, dataset="kmnist"), lambda: data.raw_dir(tmp_path, dataset="x"),
             lambda: data.gz_source(dataset="kmnist"), lambda: resolve_test_data_dir(dataset="kmnist"),
             lambda: ensure_dataset("kmnist", tmp_path, download=False)]
    for call in calls:
        with pytest.raises(ValueError, match=r"unknown dataset .*known datasets: 'mnist', 'fashion'"):
            call()
    with pytest.raises(SystemExit):  # argparse rejects it before anything runs
        data.main(["--dataset", "kmnist", "--download"])


def test_fashion_missing_files_name_the_fashion_folder_and_fix(tmp_path):
    with pytest.raises(DataError, match="Fashion-MNIST test files not found") as e:
        load_dataset("fashion", tmp_path, split="test")
    msg = str(e.value)
    assert all(str(tmp_path / "FashionMNIST" / "raw" / n) in msg for n in TEST_FILES)
    assert str(tmp_path / "MNIST" / "raw") not in msg
    assert_says_what_to_do(msg, tmp_path, "fashion")


def test_fashion_ignores_mnist_files_in_the_same_root(tiny_gz, tmp_path):
    prepare_from_gz(tiny_gz, tmp_path)  # MNIST present and valid under <root>/MNIST/raw ...
    with pytest.raises(DataError, match="Fashion-MNIST train files not found"):  # ... is not Fashion-MNIST
        load_dataset("fashion", tmp_path, split="train")


def test_fashion_truncated_file_says_delete_and_redo(tmp_path):
    write_valid_headers(tmp_path, "fashion")
    images = write_raw(tmp_path, TEST_FILES[0], idx_bytes(2051, 10_000, payload=bytes(1000)), "fashion")
    with pytest.raises(DataError, match=r"FashionMNIST/raw/t10k-images-idx3-ubyte is truncated or corrupt.*Delete it"
                       ) as e:
        load_dataset("fashion", tmp_path, split="test")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")
    images.write_bytes(b"\x00\x00")  # shorter than the header
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        validate_raw(tmp_path, "test", dataset="fashion")


def test_fashion_wrong_magic_names_the_dataset(tmp_path):
    write_valid_headers(tmp_path, "fashion")
    write_raw(tmp_path, TEST_FILES[0], idx_bytes(2049, 10_000), "fashion")
    with pytest.raises(DataError, match="expected 2051: not the Fashion-MNIST image IDX file") as e:
        validate_raw(tmp_path, "test", dataset="fashion")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")


def test_fashion_valid_header_but_wrong_content_fails_md5(tmp_path):
    write_valid_headers(tmp_path, "fashion")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has a valid header and size but the wrong MD5") as e:
        load_dataset("fashion", tmp_path, split="test")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")


def test_fashion_gz_sha256_mismatch_names_the_file(tmp_path):
    gz_dir = fake_gz_dir(tmp_path)
    write_sums(gz_dir, {f"{n}.gz": "0" * 64 for n in data.FILES})
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz does not match its SHA256SUMS.*Fashion-MNIST "
                                        r"archive is corrupt; fetch it again"):
        prepare_from_gz(gz_dir, tmp_path / "root", dataset="fashion")
    assert not any(data.raw_dir(tmp_path / "root", dataset="fashion").iterdir())


def test_fashion_rejects_archives_of_the_wrong_dataset(tiny_gz, tmp_path):
    # Same file names, checksums in order: only the MD5 of the unpacked file tells MNIST's archives from Fashion's.
    with pytest.raises(DataError, match=r"unpacks to a file with the wrong MD5.*not the original Fashion-MNIST file"):
        prepare_from_gz(tiny_gz, tmp_path / "root", dataset="fashion")
    assert not any(data.raw_dir(tmp_path / "root", dataset="fashion").iterdir())


def test_fashion_missing_archive_names_the_dataset(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz not found.*original Fashion-MNIST archives"):
        prepare_from_gz(tmp_path / "nowhere", tmp_path / "root", dataset="fashion")


def test_fashion_download_failure_points_to_the_fashion_offline_path(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError(f"Error downloading train-images-idx3-ubyte.gz: {URLError('no network')}")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match=r"downloading Fashion-MNIST into .*FashionMNIST/raw failed.*"
                                        r"--dataset fashion --from-gz DIR --data-dir"):
        load_dataset("fashion", tmp_path, split="train", download=True)


def test_fashion_loads_through_torchvision_from_its_own_folder(tiny_fashion_gz, tmp_path):
    raw = prepare_from_gz(tiny_fashion_gz, tmp_path, dataset="fashion")
    assert raw == tmp_path / "FashionMNIST" / "raw" and not (tmp_path / "MNIST").exists()
    x, y = load_dataset("fashion", tmp_path, split="train")
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(y, np.arange(5))
    with pytest.raises(ValueError):
        x[0, 0] = 0.0  # cached arrays are shared, hence read-only
    xt, _ = load_dataset("fashion", tmp_path, split="test")
    assert xt.shape == (3, 784)


def test_fashion_load_needs_the_other_split_too(tiny_fashion_gz, tmp_path):
    raw = prepare_from_gz(tiny_fashion_gz, tmp_path, dataset="fashion")
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"FashionMNIST needs all four Fashion-MNIST files.*train-labels") as e:
        load_dataset("fashion", tmp_path, split="test")  # torchvision would say only "Dataset not found"
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")


def test_fashion_corrupt_byte_fails_md5(tiny_fashion_gz, tmp_path):
    raw = prepare_from_gz(tiny_fashion_gz, tmp_path, dataset="fashion")
    images = raw / TEST_FILES[0]
    content = bytearray(images.read_bytes())
    content[16 + 100] ^= 0xFF  # one pixel, after the header: header and size stay valid
    images.write_bytes(bytes(content))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has a valid header and size but the wrong MD5") as e:
        load_dataset("fashion", tmp_path, split="test")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")


def test_mnist_and_fashion_share_a_root_without_mixing(tiny_gz, tiny_fashion_gz, tmp_path):
    prepare_from_gz(tiny_gz, tmp_path)
    prepare_from_gz(tiny_fashion_gz, tmp_path, dataset="fashion")
    xm, _ = load_mnist(tmp_path, split="train")
    xf, _ = load_dataset("fashion", tmp_path, split="train")
    assert xm.shape == xf.shape and not np.array_equal(xm, xf)
    np.testing.assert_array_equal(load_dataset("mnist", tmp_path, split="train")[0], xm)


def test_resolve_and_ensure_fashion_use_their_own_gz_variable(tiny_gz, tiny_fashion_gz, monkeypatch, tmp_path):
    root = tmp_path / "root"
    monkeypatch.setenv("SUBLIMINAL_DATA_DIR", str(root))
    monkeypatch.setenv("SUBLIMINAL_MNIST_GZ", str(tiny_gz))
    monkeypatch.setenv("SUBLIMINAL_FASHION_GZ", str(tmp_path / "no-gz-here"))
    assert resolve_test_data_dir(dataset="fashion") is None  # MNIST's archives are no source for Fashion-MNIST
    with pytest.raises(DataError, match="Fashion-MNIST train files not found"):
        ensure_dataset("fashion", root, download=False)
    monkeypatch.setenv("SUBLIMINAL_FASHION_GZ", str(tiny_fashion_gz))
    assert data.gz_source(dataset="fashion") == tiny_fashion_gz and data.gz_source() == tiny_gz
    assert resolve_test_data_dir(dataset="fashion") == root
    validate_raw(root, "train", dataset="fashion")
    assert ensure_dataset("fashion", root, download=False) == root


def test_cli_fashion_from_gz(tiny_fashion_gz, tmp_path, capsys):
    data.main(["--dataset", "fashion", "--from-gz", str(tiny_fashion_gz), "--data-dir", str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert "unpacked" in out and "train: 5 images OK" in out and "test: 3 images OK" in out
    assert str(tmp_path / "root" / "FashionMNIST" / "raw") in out


def test_cli_fashion_reports_errors_without_traceback(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: .*not found.*original Fashion-MNIST archives"):
        data.main(["--dataset", "fashion", "--from-gz", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)])


# ---- real Fashion-MNIST (the fashion_root fixture of tests/conftest.py; copies in tmp_path, shared files untouched) -

def real_fashion_gz_dir() -> Path:
    """The real Fashion-MNIST archives. Skips offline; fails with SUBLIMINAL_REQUIRE_DATA=1."""
    gz = data.gz_source(dataset="fashion")
    if gz is None:
        msg = ("real Fashion-MNIST .gz files not found: set SUBLIMINAL_FASHION_GZ to a folder with "
               f"{', '.join(n + '.gz' for n in data.DATASETS['fashion'].files)}")
        unavailable(msg)
    return gz


@pytest.mark.data
def test_real_fashion_splits(fashion_root):
    for split, n in (("train", 60_000), ("test", 10_000)):
        x, y = load_dataset("fashion", fashion_root, split=split)
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int32
        assert x.min() == -1.0 and x.max() == 1.0
        np.testing.assert_array_equal(np.bincount(y, minlength=10), [n // 10] * 10)  # balanced classes 0..9


@pytest.mark.data
def test_real_fashion_differs_from_mnist(fashion_root, mnist_root):
    xf, yf = load_dataset("fashion", fashion_root, split="test")
    xm, ym = load_mnist(mnist_root, split="test")
    assert xf.shape == xm.shape and not np.array_equal(xf, xm)
    # Known signatures, so reading the other dataset's folder fails: mean pixel 0.286 (clothes) vs 0.131 (digits),
    # i.e. about -0.43 vs -0.74 after scaling; 1000 items per class vs MNIST's 1135 ones.
    assert xf.mean() > -0.6 > xm.mean()
    assert np.bincount(yf)[1] == 1000 and np.bincount(ym)[1] == 1135


@pytest.mark.data
def test_real_fashion_missing_truncated_or_corrupt_copy_fails(fashion_root, tmp_path):
    src, dst = data.raw_dir(fashion_root, dataset="fashion"), data.raw_dir(tmp_path, dataset="fashion")
    dst.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copyfile(src / name, dst / name)  # copyfile, not copy: the copies must be writable
    validate_raw(tmp_path, "test", dataset="fashion")  # the intact copy is valid
    with pytest.raises(DataError, match=r"needs all four Fashion-MNIST files.*train-images-idx3-ubyte") as e:
        load_dataset("fashion", tmp_path, split="test")  # but torchvision also wants the train files
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")
    images, labels = dst / TEST_FILES[0], dst / TEST_FILES[1]
    content = bytearray(images.read_bytes())
    content[16 + 5_000] ^= 0xFF  # one pixel: header and size stay valid
    images.write_bytes(bytes(content))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has a valid header and size but the wrong MD5") as e:
        load_dataset("fashion", tmp_path, split="test")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is truncated or corrupt: 10007 bytes, expected 10008"):
        load_dataset("fashion", tmp_path, split="test")
    images.unlink()
    with pytest.raises(DataError, match=r"Fashion-MNIST test files not found.*t10k-images-idx3-ubyte") as e:
        load_dataset("fashion", tmp_path, split="test")
    assert_says_what_to_do(str(e.value), tmp_path, "fashion")


@pytest.mark.data
def test_real_fashion_gz_not_matching_sha256sums_fails(tmp_path):
    gz, copy = real_fashion_gz_dir(), tmp_path / "gz"
    copy.mkdir()
    for name in [f"{n}.gz" for n in data.DATASETS["fashion"].files] + ["SHA256SUMS"]:
        shutil.copyfile(gz / name, copy / name)
    archive = copy / "train-images-idx3-ubyte.gz"
    content = bytearray(archive.read_bytes())
    content[len(content) // 2] ^= 0xFF
    archive.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz does not match its SHA256SUMS entry.*"
                                        r"Fashion-MNIST archive is corrupt; fetch it again"):
        prepare_from_gz(copy, tmp_path / "root", dataset="fashion")
    assert not any(data.raw_dir(tmp_path / "root", dataset="fashion").iterdir())  # nothing unpacked from it
