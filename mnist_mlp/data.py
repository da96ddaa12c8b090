"""MNIST through torchvision's real loader, with checks that turn a missing or corrupt file into a clear error.

Pixels are scaled to [-1, 1] as (x - 0.5) / 0.5, as in the authors' script (paper Section 6.2).

torchvision's ``MNIST`` reads the uncompressed IDX files from ``<root>/MNIST/raw/``. Online, ``download=True`` fetches
them. Offline, ``prepare_from_gz`` (CLI: ``python -m mnist_mlp.data --from-gz DIR``) unpacks the four original .gz
files (e.g. ``../shared/data/mnist``) there, after checking them against ``SHA256SUMS`` and the well-known MD5s.

Environment: ``SUBLIMINAL_DATA_DIR`` (root, default ``./data``); ``SUBLIMINAL_MNIST_GZ`` (folder of .gz files used by
the tests and CI).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

# name -> (md5 of the uncompressed file, IDX magic number, item count)
FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 2051, 60_000),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 2049, 60_000),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 2051, 10_000),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 2049, 10_000),
}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
REPO_ROOT = Path(__file__).resolve().parent.parent


class DataError(RuntimeError):
    """A dataset problem, with a message that says how to fix it."""


def _fixes(data_dir) -> str:
    return (f"Fix: online, pass --download (download=True) to let torchvision fetch MNIST into {data_dir}; offline, "
            f"unpack the four original .gz files with `python -m mnist_mlp.data --from-gz DIR --data-dir {data_dir}`.")


def default_data_dir() -> Path:
    return Path(os.environ.get("SUBLIMINAL_DATA_DIR", "data"))


def raw_dir(data_dir) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_idx(path: Path, magic: int, count: int, data_dir) -> None:
    """Header (magic, count, 28x28) and exact size of one IDX file."""
    size = path.stat().st_size
    header = 16 if magic == 2051 else 8
    with open(path, "rb") as f:
        head = f.read(header)
    if len(head) < header:
        raise DataError(f"{path} is truncated ({size} bytes, shorter than its header): delete it and re-download or "
                        f"re-unpack. {_fixes(data_dir)}")
    got_magic, got_count = struct.unpack(">II", head[:8])
    if got_magic != magic:
        raise DataError(f"{path} has magic number {got_magic}, expected {magic}: not an MNIST "
                        f"{'image' if magic == 2051 else 'label'} IDX file (still gzip-compressed?). {_fixes(data_dir)}")
    if got_count != count:
        raise DataError(f"{path} holds {got_count} items, expected {count}. {_fixes(data_dir)}")
    payload = count * 28 * 28 if magic == 2051 else count
    if magic == 2051 and struct.unpack(">II", head[8:16]) != (28, 28):
        raise DataError(f"{path} has images of shape {struct.unpack('>II', head[8:16])}, expected 28x28.")
    if size != header + payload:
        raise DataError(f"{path} is truncated or corrupt: {size} bytes, expected {header + payload}. Delete it and "
                        f"re-download or re-unpack. {_fixes(data_dir)}")


def validate_raw(data_dir, split: str) -> None:
    """Check that both files of ``split`` exist under ``<data_dir>/MNIST/raw`` and are intact (header, size, MD5)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    raw = raw_dir(data_dir)
    missing = [str(raw / n) for n in SPLITS[split] if not (raw / n).is_file()]
    if missing:
        raise DataError(f"MNIST {split} files not found: {', '.join(missing)}. {_fixes(data_dir)}")
    for name in SPLITS[split]:
        md5, magic, count = FILES[name]
        _check_idx(raw / name, magic, count, data_dir)
        if _md5(raw / name) != md5:
            raise DataError(f"{raw / name} has the right size but the wrong MD5 (expected {md5}): the file is "
                            f"corrupt. Delete it and re-download or re-unpack. {_fixes(data_dir)}")


def _sha256sums(gz_dir: Path) -> dict[str, str]:
    sums = gz_dir / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*").strip()] = digest.lower()
    return out


def prepare_from_gz(gz_dir, data_dir) -> Path:
    """Unpack the four MNIST .gz files of ``gz_dir`` into ``<data_dir>/MNIST/raw`` (atomic; skips intact files)."""
    gz_dir, raw = Path(gz_dir), raw_dir(data_dir)
    sums = _sha256sums(gz_dir)
    raw.mkdir(parents=True, exist_ok=True)
    for name, (md5, magic, count) in FILES.items():
        target = raw / name
        if target.is_file() and _md5(target) == md5:
            continue
        src = gz_dir / f"{name}.gz"
        if not src.is_file():
            raise DataError(f"{src} not found: {gz_dir} must hold {', '.join(n + '.gz' for n in FILES)}.")
        if f"{name}.gz" in sums:
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            if digest != sums[f"{name}.gz"]:
                raise DataError(f"{src} does not match its SHA256SUMS entry ({digest} != {sums[name + '.gz']}): the "
                                "download is corrupt; fetch it again.")
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as f:
                shutil.copyfileobj(f, out)
            if _md5(Path(tmp)) != md5:
                raise DataError(f"{src} unpacks to a file with the wrong MD5 (expected {md5}): corrupt archive.")
            os.replace(tmp, target)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"cannot unpack {src}: {e}. The archive is truncated or corrupt; fetch it again.") from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return raw


@functools.lru_cache(maxsize=4)
def _load(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    ds = MNIST(root=root, train=split == "train", download=False)
    images = ds.data.numpy().reshape(len(ds), -1).astype(np.float32) / 255.0
    return (images - 0.5) / 0.5, ds.targets.numpy().astype(np.int32)


def load_mnist(data_dir=None, *, split: str = "train", download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images_NxD float32 in [-1, 1] with D = 784, labels_N int32) of the ``train`` or ``test`` split.

    Results are cached per (resolved root, split); the arrays are shared, so do not modify them in place.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if download:
        from torchvision.datasets import MNIST

        try:
            MNIST(root=str(data_dir), train=split == "train", download=True)
        except Exception as e:  # network errors come in many types
            raise DataError(f"downloading MNIST into {data_dir} failed ({e}). Offline, unpack the original .gz "
                            f"files with `python -m mnist_mlp.data --from-gz DIR --data-dir {data_dir}`.") from e
    validate_raw(data_dir, split)
    images, labels = _load(str(data_dir.resolve()), split)
    return images, labels


def gz_source() -> Path | None:
    """A folder with the four original .gz files: ``SUBLIMINAL_MNIST_GZ`` or ``<repo>/../shared/data/mnist``."""
    gz = Path(os.environ.get("SUBLIMINAL_MNIST_GZ", REPO_ROOT.parent / "shared" / "data" / "mnist"))
    return gz if all((gz / f"{n}.gz").is_file() for n in FILES) else None


def _valid(root) -> bool:
    try:
        for split in SPLITS:
            validate_raw(root, split)
        return True
    except DataError:
        return False


def ensure_mnist(data_dir=None, *, download: bool = True) -> Path:
    """Make MNIST available under ``data_dir``: keep valid files, else unpack local .gz files (``gz_source``), else
    (if ``download``) let torchvision download. Raises DataError saying what to do when all fail."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if _valid(root):
        return root
    gz = gz_source()
    if gz is not None:
        prepare_from_gz(gz, root)
    elif download:
        for split in SPLITS:
            load_mnist(root, split=split, download=True)
    for split in SPLITS:
        validate_raw(root, split)  # raises the precise DataError
    return root


def resolve_test_data_dir() -> Path | None:
    """Where tests find real MNIST: ``SUBLIMINAL_DATA_DIR`` (or ``<repo>/data``), unpacked from ``gz_source()`` if
    needed; None when neither has it (tests never download)."""
    root = Path(os.environ.get("SUBLIMINAL_DATA_DIR", REPO_ROOT / "data"))
    if _valid(root):
        return root
    if gz_source() is None:
        return None
    return ensure_mnist(root, download=False)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m mnist_mlp.data", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="torchvision root (default: %(default)s)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--from-gz", type=Path, metavar="DIR", help="unpack the original MNIST .gz files from DIR")
    g.add_argument("--download", action="store_true", help="let torchvision download MNIST (needs internet)")
    args = p.parse_args(argv)
    try:
        if args.from_gz:
            print(f"unpacked into {prepare_from_gz(args.from_gz, args.data_dir)}")
        for split in SPLITS:
            x, y = load_mnist(args.data_dir, split=split, download=args.download)
            print(f"{split}: {x.shape[0]} images OK in {raw_dir(args.data_dir)}")
    except DataError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
