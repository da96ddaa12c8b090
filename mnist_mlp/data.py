"""MNIST through torchvision's real loader, with checks that turn a missing or corrupt file into a clear error.

Pixels are scaled to [-1, 1] as (x - 0.5) / 0.5, as in the authors' setup (paper Section 6.2).

torchvision's ``MNIST`` reads the uncompressed IDX files from ``<root>/MNIST/raw/``. Online, ``download=True``
(``--download``) lets it fetch them. Offline, ``prepare_from_gz`` (``python -m mnist_mlp.data --from-gz DIR
--data-dir ROOT``) unpacks the four original .gz files there, after checking them against ``SHA256SUMS`` (when DIR
has one) and the well-known MD5s of the uncompressed files.

Environment:
  ``SUBLIMINAL_DATA_DIR``     torchvision root (default ``./data``; for the tests ``<repo>/data``).
  ``SUBLIMINAL_MNIST_GZ``     folder with the four .gz files the tests unpack (default ``<repo>/../shared/data/mnist``).
  ``SUBLIMINAL_REQUIRE_DATA`` ``1`` (CI): tests that need real MNIST fail instead of skipping when it is not found.
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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SIDE = 28  # images are SIDE x SIDE

# The one table of expected files: name (uncompressed) -> (MD5 of the uncompressed file, IDX magic number, item count).
FILES: dict[str, tuple[str, int, int]] = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", IMAGE_MAGIC, 60_000),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", LABEL_MAGIC, 60_000),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", IMAGE_MAGIC, 10_000),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", LABEL_MAGIC, 10_000),
}
# split -> (images file, labels file)
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
REPO_ROOT = Path(__file__).resolve().parent.parent


class DataError(RuntimeError):
    """A dataset problem; the message names the file(s) and says how to fix it."""


def _fixes(data_dir: PathLike) -> str:
    return (f"Fix: online, pass --download (download=True) to let torchvision fetch MNIST into {data_dir}; offline, "
            f"unpack the four original .gz files ({', '.join(n + '.gz' for n in FILES)}) with "
            f"`python -m mnist_mlp.data --from-gz DIR --data-dir {data_dir}`.")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def default_data_dir() -> Path:
    """``$SUBLIMINAL_DATA_DIR`` if set (and non-empty), else ``./data`` relative to the working directory."""
    return Path(os.environ.get("SUBLIMINAL_DATA_DIR") or "data")


def raw_dir(data_dir: PathLike) -> Path:
    """Where torchvision's ``MNIST(root=data_dir)`` looks for the uncompressed files."""
    return Path(data_dir) / "MNIST" / "raw"


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_idx(path: Path, magic: int, count: int, data_dir: PathLike) -> None:
    """Header (magic, count, 28x28) and exact size of one IDX file: catches wrong, compressed and truncated files."""
    redo = f"Delete it and re-download or re-unpack. {_fixes(data_dir)}"
    header = 16 if magic == IMAGE_MAGIC else 8
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(header)
    if len(head) < header:
        raise DataError(f"{path} is truncated or corrupt: {size} bytes, shorter than its {header}-byte header. {redo}")
    got_magic, got_count = struct.unpack(">II", head[:8])
    if got_magic != magic:
        hint = " (it is still gzip-compressed)" if head[:2] == b"\x1f\x8b" else ""
        kind = "image" if magic == IMAGE_MAGIC else "label"
        raise DataError(f"{path} has magic number {got_magic}, expected {magic}: not an MNIST {kind} IDX file{hint}. "
                        f"{redo}")
    if got_count != count:
        raise DataError(f"{path} holds {got_count} items, expected {count}. {redo}")
    if magic == IMAGE_MAGIC and struct.unpack(">II", head[8:16]) != (SIDE, SIDE):
        raise DataError(f"{path} has images of shape {struct.unpack('>II', head[8:16])}, expected "
                        f"({SIDE}, {SIDE}). {redo}")
    expected = header + (count * SIDE * SIDE if magic == IMAGE_MAGIC else count)
    if size != expected:
        raise DataError(f"{path} is truncated or corrupt: {size} bytes, expected {expected}. {redo}")


def validate_raw(data_dir: PathLike, split: str) -> None:
    """Check that both files of ``split`` exist in ``<data_dir>/MNIST/raw`` and are intact (header, size, MD5).

    Raises DataError naming the bad or missing files and the fixes; ValueError for an unknown split.
    """
    _check_split(split)
    raw = raw_dir(data_dir)
    missing = [str(raw / n) for n in SPLITS[split] if not (raw / n).is_file()]
    if missing:
        raise DataError(f"MNIST {split} files not found in {raw}: missing {', '.join(missing)}. {_fixes(data_dir)}")
    for name in SPLITS[split]:  # structure of both files first: its errors say more than a bare MD5 mismatch
        _, magic, count = FILES[name]
        _check_idx(raw / name, magic, count, data_dir)
    for name in SPLITS[split]:
        md5 = FILES[name][0]
        # The header check misses flipped bytes; MD5 of ~47 MB costs ~0.1 s and pins the exact canonical content.
        if _digest(raw / name, "md5") != md5:
            raise DataError(f"{raw / name} has a valid header and size but the wrong MD5 (expected {md5}): the file "
                            f"is corrupt. Delete it and re-download or re-unpack. {_fixes(data_dir)}")


def _sha256sums(gz_dir: Path) -> dict[str, str]:
    """``SHA256SUMS`` of ``gz_dir`` (sha256sum format) as file name -> digest; empty when the file is absent."""
    sums = gz_dir / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{sums} has a malformed line {line!r}; expected '<sha256>  <file name>'.")
        out[parts[1].strip().lstrip("*")] = parts[0].lower()  # '*' marks binary mode in sha256sum's format
    return out


def prepare_from_gz(gz_dir: PathLike, data_dir: PathLike) -> Path:
    """Unpack the four original MNIST .gz files of ``gz_dir`` into ``<data_dir>/MNIST/raw``; return that folder.

    Each .gz is checked against ``gz_dir/SHA256SUMS`` when present, and each unpacked file against its MD5. Files
    already present and valid are kept. Writes are atomic (temp file in the same folder, then ``os.replace``), so an
    interrupted or concurrent run never leaves a partial file under the final name.
    """
    gz_dir, raw = Path(gz_dir), raw_dir(data_dir)
    sums = _sha256sums(gz_dir)
    raw.mkdir(parents=True, exist_ok=True)
    for name, (md5, _, _) in FILES.items():
        target = raw / name
        if target.is_file() and _digest(target, "md5") == md5:
            continue
        src = gz_dir / f"{name}.gz"
        if not src.is_file():
            raise DataError(f"{src} not found: {gz_dir} must hold the four original MNIST archives "
                            f"{', '.join(n + '.gz' for n in FILES)}. Online, use --download instead.")
        if src.name in sums and (digest := _digest(src, "sha256")) != sums[src.name]:
            raise DataError(f"{src} does not match its SHA256SUMS entry (got {digest}, expected {sums[src.name]}): "
                            "the archive is corrupt; fetch it again.")
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            if _digest(Path(tmp), "md5") != md5:
                raise DataError(f"{src} unpacks to a file with the wrong MD5 (expected {md5}): the archive is not the "
                                "original MNIST file; fetch it again.")
            os.replace(tmp, target)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"cannot unpack {src}: {e}. The archive is truncated or corrupt; fetch it again.") from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return raw


# Cached per (resolved root, split). Safe against stale data because load_mnist runs validate_raw (MD5) before every
# lookup, so the files on disk are byte-identical to what was cached. The arrays are shared, hence read-only.
@functools.lru_cache(maxsize=4)
def _load(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    ds = MNIST(root=root, train=split == "train", download=False)
    images = ds.data.numpy().reshape(len(ds), -1).astype(np.float32) / 255.0
    images = (images - 0.5) / 0.5
    labels = ds.targets.numpy().astype(np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist(data_dir: PathLike | None = None, *, split: str = "train",
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images_NxD float32 in [-1, 1] with D = 784, labels_N int32) of the ``train`` or ``test`` split.

    ``data_dir`` defaults to ``default_data_dir()``. With ``download``, torchvision fetches missing files first
    (network failures become DataError). The files are always validated before loading. Results are cached per
    (resolved root, split) and returned read-only; copy them before modifying.
    """
    _check_split(split)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if download:
        from torchvision.datasets import MNIST

        try:
            MNIST(root=str(root), train=split == "train", download=True)
        except Exception as e:  # torchvision wraps network failures in RuntimeError/URLError/OSError, among others
            raise DataError(f"downloading MNIST into {raw_dir(root)} failed ({e}). Offline, unpack the original .gz "
                            f"files with `python -m mnist_mlp.data --from-gz DIR --data-dir {root}`.") from e
    validate_raw(root, split)
    return _load(str(root.resolve()), split)


def data_required() -> bool:
    """True where real data must be found (CI sets ``SUBLIMINAL_REQUIRE_DATA=1``): no skipping, no dropping."""
    return os.environ.get("SUBLIMINAL_REQUIRE_DATA") == "1"


def gz_source() -> Path | None:
    """A folder holding the four original .gz files: ``$SUBLIMINAL_MNIST_GZ`` if set, else
    ``<repo>/../shared/data/mnist``; None when that folder lacks any of them."""
    gz = Path(os.environ.get("SUBLIMINAL_MNIST_GZ") or REPO_ROOT.parent / "shared" / "data" / "mnist")
    return gz if all((gz / f"{n}.gz").is_file() for n in FILES) else None


def _valid(root: PathLike) -> bool:
    try:
        for split in SPLITS:
            validate_raw(root, split)
    except DataError:
        return False
    return True


def ensure_mnist(data_dir: PathLike | None = None, *, download: bool = True) -> Path:
    """Make both splits available under ``data_dir`` (default ``default_data_dir()``) and return it: keep valid
    files, else unpack ``gz_source()``, else (if ``download``) let torchvision download. DataError when all fail."""
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
    """Root with real MNIST for tests/CI, never downloading: ``$SUBLIMINAL_DATA_DIR`` (default ``<repo>/data``) if
    both splits validate there, else that root after unpacking ``gz_source()`` into it, else None.

    Callers skip on None, unless ``SUBLIMINAL_REQUIRE_DATA=1`` (CI), where they fail. A corrupt .gz source raises
    DataError rather than returning None, so a broken CI cache is not mistaken for "no data".
    """
    root = Path(os.environ.get("SUBLIMINAL_DATA_DIR") or REPO_ROOT / "data")
    if _valid(root):
        return root
    gz = gz_source()
    if gz is None:
        return None
    prepare_from_gz(gz, root)
    for split in SPLITS:
        validate_raw(root, split)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m mnist_mlp.data (--from-gz DIR | --download) [--data-dir ROOT]``."""
    p = argparse.ArgumentParser(prog="python -m mnist_mlp.data", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=None,
                   help="torchvision root (default: $SUBLIMINAL_DATA_DIR or ./data)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--from-gz", type=Path, metavar="DIR", help="unpack the four original MNIST .gz files from DIR")
    g.add_argument("--download", action="store_true", help="let torchvision download MNIST (needs internet)")
    args = p.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else default_data_dir()
    try:
        if args.from_gz is not None:
            print(f"unpacked {args.from_gz} into {prepare_from_gz(args.from_gz, root)}")
        for split in SPLITS:
            x, _ = load_mnist(root, split=split, download=args.download)  # also proves torchvision reads them
            print(f"{split}: {x.shape[0]} images OK in {raw_dir(root)}")
    except DataError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
