"""MNIST and Fashion-MNIST in torchvision's layout, with checks that turn a missing or corrupt file into a clear error.

Pixels are scaled to [-1, 1] as (x - 0.5) / 0.5, as in the authors' setup (paper Section 6.2).

Both datasets (``DATASETS``: ``mnist``, the default everywhere, and ``fashion``) come as the same four IDX files
(same names, headers and counts; different content, hence MD5s). torchvision's ``MNIST`` reads them from
``<root>/MNIST/raw/``, its ``FashionMNIST`` from ``<root>/FashionMNIST/raw/``, so one root holds both. Online,
``download=True`` (``--download``) lets torchvision fetch them. Once they are there and pass their checks (header,
size, MD5), ``load_dataset`` reads them with numpy, the same bytes torchvision reads (``tests/mnist_mlp/test_data.py``
and ``python -m mnist_mlp.data`` check that both give the same arrays), without importing torch: seconds of each
process that trains on MNIST. Offline, ``prepare_from_gz`` (``python -m
mnist_mlp.data [--dataset fashion] --from-gz DIR --data-dir ROOT``) unpacks the four original .gz files there, after
checking them against ``SHA256SUMS`` (when DIR has one) and the well-known MD5s of the uncompressed files.

Environment:
  ``SUBLIMINAL_DATA_DIR``     torchvision root of both datasets (default ``./data``; for the tests ``<repo>/data``).
  ``SUBLIMINAL_MNIST_GZ``     folder with the four original MNIST .gz files, unpacked into the root when the root
                              lacks them (unset: none; CI sets it in ``.ci/run``).
  ``SUBLIMINAL_FASHION_GZ``   the same for Fashion-MNIST.
  ``SUBLIMINAL_REQUIRE_DATA`` ``1`` (CI): tests that need real MNIST or Fashion-MNIST fail instead of skipping when
                              it is not found.
"""

from __future__ import annotations

import argparse
import dataclasses
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
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One MNIST-format dataset: where torchvision looks for it, what its files must be, where the tests find it."""

    title: str  # for messages
    folder: str  # torchvision's subfolder of the root (its class name): files are in <root>/<folder>/raw/
    files: dict[str, tuple[str, int, int]]  # name (uncompressed) -> (MD5 of the uncompressed file, magic, item count)
    gz_env: str  # env var naming the folder with the four original .gz files (unset: there is none)
    tv_class: str  # the torchvision.datasets class that reads it


# The one table of datasets. Both use the same file names, headers and counts; only the content (MD5s) differs.
DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        title="MNIST", folder="MNIST", tv_class="MNIST",
        files={
            "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", IMAGE_MAGIC, 60_000),
            "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", LABEL_MAGIC, 60_000),
            "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", IMAGE_MAGIC, 10_000),
            "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", LABEL_MAGIC, 10_000),
        },
        gz_env="SUBLIMINAL_MNIST_GZ"),
    "fashion": Dataset(
        title="Fashion-MNIST", folder="FashionMNIST", tv_class="FashionMNIST",
        files={
            "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", IMAGE_MAGIC, 60_000),
            "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", LABEL_MAGIC, 60_000),
            "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", IMAGE_MAGIC, 10_000),
            "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", LABEL_MAGIC, 10_000),
        },
        gz_env="SUBLIMINAL_FASHION_GZ"),
}
# MNIST's expected files, under the name callers have always used: name -> (MD5, IDX magic number, item count).
FILES: dict[str, tuple[str, int, int]] = DATASETS["mnist"].files
# split -> (images file, labels file); the same for every dataset
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(RuntimeError):
    """A dataset problem; the message names the file(s) and says how to fix it."""


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(map(repr, DATASETS))}")
    return DATASETS[name]


def _cli(dataset: str) -> str:
    # MNIST is the CLI's default, so its command stays the one the README shows.
    return "python -m mnist_mlp.data" + ("" if dataset == "mnist" else f" --dataset {dataset}")


def _fixes(data_dir: PathLike, dataset: str = "mnist") -> str:
    ds = _dataset(dataset)
    return (f"Fix: online, pass --download (download=True) to let torchvision fetch {ds.title} into {data_dir}; "
            f"offline, unpack the four original .gz files ({', '.join(n + '.gz' for n in ds.files)}) with "
            f"`{_cli(dataset)} --from-gz DIR --data-dir {data_dir}`.")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def default_data_dir() -> Path:
    """``$SUBLIMINAL_DATA_DIR`` if set (and non-empty), else ``./data`` relative to the working directory."""
    return Path(os.environ.get("SUBLIMINAL_DATA_DIR") or "data")


def raw_dir(data_dir: PathLike, *, dataset: str = "mnist") -> Path:
    """Where torchvision (``MNIST(root=data_dir)``, ``FashionMNIST(...)``) looks for the uncompressed files."""
    return Path(data_dir) / _dataset(dataset).folder / "raw"


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_idx(path: Path, magic: int, count: int, data_dir: PathLike, dataset: str = "mnist") -> None:
    """Header (magic, count, 28x28) and exact size of one IDX file: catches wrong, compressed and truncated files."""
    redo = f"Delete it and re-download or re-unpack. {_fixes(data_dir, dataset)}"
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
        raise DataError(f"{path} has magic number {got_magic}, expected {magic}: not the {_dataset(dataset).title} "
                        f"{kind} IDX file{hint}. {redo}")
    if got_count != count:
        raise DataError(f"{path} holds {got_count} items, expected {count}. {redo}")
    if magic == IMAGE_MAGIC and struct.unpack(">II", head[8:16]) != (SIDE, SIDE):
        raise DataError(f"{path} has images of shape {struct.unpack('>II', head[8:16])}, expected "
                        f"({SIDE}, {SIDE}). {redo}")
    expected = header + (count * SIDE * SIDE if magic == IMAGE_MAGIC else count)
    if size != expected:
        raise DataError(f"{path} is truncated or corrupt: {size} bytes, expected {expected}. {redo}")


def validate_raw(data_dir: PathLike, split: str, *, dataset: str = "mnist") -> None:
    """Check that both files of ``split`` exist in ``raw_dir(data_dir, dataset=dataset)`` and are intact (header,
    size, MD5).

    Raises DataError naming the bad or missing files and the fixes; ValueError for an unknown split or dataset.
    """
    _check_split(split)
    ds, raw = _dataset(dataset), raw_dir(data_dir, dataset=dataset)
    missing = [str(raw / n) for n in SPLITS[split] if not (raw / n).is_file()]
    if missing:
        raise DataError(f"{ds.title} {split} files not found in {raw}: missing {', '.join(missing)}. "
                        f"{_fixes(data_dir, dataset)}")
    for name in SPLITS[split]:  # structure of both files first: its errors say more than a bare MD5 mismatch
        _, magic, count = ds.files[name]
        _check_idx(raw / name, magic, count, data_dir, dataset)
    for name in SPLITS[split]:
        md5 = ds.files[name][0]
        # The header check misses flipped bytes; MD5 of ~47 MB costs ~0.1 s and pins the exact canonical content.
        if _digest(raw / name, "md5") != md5:
            raise DataError(f"{raw / name} has a valid header and size but the wrong MD5 (expected {md5}): the file "
                            f"is corrupt. Delete it and re-download or re-unpack. {_fixes(data_dir, dataset)}")


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


def prepare_from_gz(gz_dir: PathLike, data_dir: PathLike, *, dataset: str = "mnist") -> Path:
    """Unpack the four original .gz files of ``dataset`` in ``gz_dir`` into ``raw_dir(data_dir, dataset=dataset)``
    (``<data_dir>/MNIST/raw``, ``<data_dir>/FashionMNIST/raw``); return that folder.

    Each .gz is checked against ``gz_dir/SHA256SUMS`` when present, and each unpacked file against its MD5 (which
    also catches the other dataset's archives: same names, different content). Files already present and valid are
    kept. Writes are atomic (temp file in the same folder, then ``os.replace``), so an interrupted or concurrent run
    never leaves a partial file under the final name.
    """
    ds = _dataset(dataset)
    gz_dir, raw = Path(gz_dir), raw_dir(data_dir, dataset=dataset)
    sums = _sha256sums(gz_dir)
    raw.mkdir(parents=True, exist_ok=True)
    for name, (md5, _, _) in ds.files.items():
        target = raw / name
        if target.is_file() and _digest(target, "md5") == md5:
            continue
        src = gz_dir / f"{name}.gz"
        if not src.is_file():
            raise DataError(f"{src} not found: {gz_dir} must hold the four original {ds.title} archives "
                            f"{', '.join(n + '.gz' for n in ds.files)}. Online, use --download instead.")
        if src.name in sums and (digest := _digest(src, "sha256")) != sums[src.name]:
            raise DataError(f"{src} does not match its SHA256SUMS entry (got {digest}, expected {sums[src.name]}): "
                            f"the {ds.title} archive is corrupt; fetch it again.")
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            if _digest(Path(tmp), "md5") != md5:
                raise DataError(f"{src} unpacks to a file with the wrong MD5 (expected {md5}): the archive is not the "
                                f"original {ds.title} file; fetch it again.")
            os.replace(tmp, target)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"cannot unpack {src}: {e}. The archive is truncated or corrupt; fetch it again.") from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return raw


def _torchvision_class(dataset: str) -> type:
    import torchvision.datasets

    return getattr(torchvision.datasets, _dataset(dataset).tv_class)  # looked up per call, so tests can patch it


def _scaled(pixels_NxD_u8: np.ndarray, labels_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images_NxD float32 in [-1, 1], labels_N int32), read-only, from the raw uint8 pixels and integer labels."""
    images = pixels_NxD_u8.reshape(len(labels_N), -1).astype(np.float32) / 255.0
    images = (images - 0.5) / 0.5
    labels = labels_N.astype(np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


# Cached per (resolved root, split, dataset). Safe against stale data because load_dataset runs validate_raw (MD5)
# before every lookup, so the files on disk are byte-identical to what was cached. The arrays are shared, hence
# read-only.
@functools.lru_cache(maxsize=4)
def _load(root: str, split: str, dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """The split's two IDX files (validated by the caller) read with numpy: the bytes after each header are the
    uint8 pixels (row-major, SIDE x SIDE per image) and the uint8 labels, as torchvision reads them."""
    raw = raw_dir(root, dataset=dataset)
    images_file, labels_file = SPLITS[split]
    pixels = np.fromfile(raw / images_file, np.uint8, offset=16)
    labels = np.fromfile(raw / labels_file, np.uint8, offset=8)
    return _scaled(pixels, labels)


def _load_torchvision(root: str, split: str, dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """The same arrays as ``_load``, read by torchvision's dataset class (what ``_load`` is checked against)."""
    ds = _torchvision_class(dataset)(root=root, train=split == "train", download=False)
    return _scaled(ds.data.numpy(), ds.targets.numpy())


def load_dataset(name: str, data_dir: PathLike | None = None, *, split: str = "train",
                 download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images_NxD float32 in [-1, 1] with D = 784, labels_N int32) of the ``train`` or ``test`` split of dataset
    ``name`` (a key of ``DATASETS``: ``"mnist"`` or ``"fashion"``).

    ``data_dir`` defaults to ``default_data_dir()``. With ``download``, torchvision fetches missing files first
    (network failures become DataError). The files are always validated before loading. Results are cached per
    (resolved root, split, dataset) and returned read-only; copy them before modifying.
    """
    _check_split(split)
    ds = _dataset(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if download:
        try:
            _torchvision_class(name)(root=str(root), train=split == "train", download=True)
        except Exception as e:  # torchvision wraps network failures in RuntimeError/URLError/OSError, among others
            raise DataError(f"downloading {ds.title} into {raw_dir(root, dataset=name)} failed ({e}). Offline, unpack "
                            f"the original .gz files with `{_cli(name)} --from-gz DIR --data-dir {root}`.") from e
    validate_raw(root, split, dataset=name)
    # torchvision refuses to load either split unless all four files exist (it checks presence only), so name the
    # other split's missing files here rather than let it fail with a bare "Dataset not found".
    raw = raw_dir(root, dataset=name)
    missing = [str(raw / n) for n in ds.files if not (raw / n).is_file()]
    if missing:
        raise DataError(f"torchvision's {ds.tv_class} needs all four {ds.title} files to load even one split: missing "
                        f"{', '.join(missing)}. {_fixes(root, name)}")
    return _load(str(root.resolve()), split, name)


def load_mnist(data_dir: PathLike | None = None, *, split: str = "train",
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``load_dataset("mnist", ...)``: MNIST's (images_NxD float32 in [-1, 1], labels_N int32), cached, read-only."""
    return load_dataset("mnist", data_dir, split=split, download=download)


def data_required() -> bool:
    """True where real data must be found (CI sets ``SUBLIMINAL_REQUIRE_DATA=1``): no skipping, no dropping."""
    return os.environ.get("SUBLIMINAL_REQUIRE_DATA") == "1"


def gz_source(*, dataset: str = "mnist") -> Path | None:
    """The folder named by ``dataset``'s env var (``$SUBLIMINAL_MNIST_GZ``, ``$SUBLIMINAL_FASHION_GZ``) when it holds
    the four original .gz files; None when the variable is unset or the folder lacks any of them."""
    ds = _dataset(dataset)
    gz = os.environ.get(ds.gz_env)
    if not gz:
        return None
    gz = Path(gz)
    return gz if all((gz / f"{n}.gz").is_file() for n in ds.files) else None


def _valid(root: PathLike, dataset: str = "mnist") -> bool:
    try:
        for split in SPLITS:
            validate_raw(root, split, dataset=dataset)
    except DataError:
        return False
    return True


def ensure_dataset(name: str, data_dir: PathLike | None = None, *, download: bool = True) -> Path:
    """Make both splits of dataset ``name`` available under ``data_dir`` (default ``default_data_dir()``) and return
    it: keep valid files, else unpack ``gz_source(dataset=name)``, else (if ``download``) let torchvision download.
    DataError when all fail."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if _valid(root, name):
        return root
    gz = gz_source(dataset=name)
    if gz is not None:
        prepare_from_gz(gz, root, dataset=name)
    elif download:
        for split in SPLITS:
            load_dataset(name, root, split=split, download=True)
    for split in SPLITS:
        validate_raw(root, split, dataset=name)  # raises the precise DataError
    return root


def ensure_mnist(data_dir: PathLike | None = None, *, download: bool = True) -> Path:
    """``ensure_dataset("mnist", ...)``: make both MNIST splits available under ``data_dir`` and return it."""
    return ensure_dataset("mnist", data_dir, download=download)


def resolve_test_data_dir(*, dataset: str = "mnist") -> Path | None:
    """Root with real ``dataset`` (default MNIST) for tests/CI, never downloading: ``$SUBLIMINAL_DATA_DIR`` (default
    ``<repo>/data``) if both splits validate there, else that root after unpacking ``gz_source(dataset=dataset)``
    into it, else None.

    Callers skip on None, unless ``SUBLIMINAL_REQUIRE_DATA=1`` (CI), where they fail. A corrupt .gz source raises
    DataError rather than returning None, so a broken CI cache is not mistaken for "no data".
    """
    _dataset(dataset)  # an unknown name is a ValueError, not "no data"
    root = Path(os.environ.get("SUBLIMINAL_DATA_DIR") or REPO_ROOT / "data")
    if _valid(root, dataset):
        return root
    gz = gz_source(dataset=dataset)
    if gz is None:
        return None
    prepare_from_gz(gz, root, dataset=dataset)
    for split in SPLITS:
        validate_raw(root, split, dataset=dataset)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m mnist_mlp.data [--dataset mnist|fashion] (--from-gz DIR | --download) [--data-dir ROOT]``."""
    p = argparse.ArgumentParser(prog="python -m mnist_mlp.data", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist", help="which dataset (default: mnist)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="torchvision root (default: $SUBLIMINAL_DATA_DIR or ./data)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--from-gz", type=Path, metavar="DIR", help="unpack the dataset's four original .gz files from DIR")
    g.add_argument("--download", action="store_true", help="let torchvision download the dataset (needs internet)")
    args = p.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else default_data_dir()
    try:
        if args.from_gz is not None:
            print(f"unpacked {args.from_gz} into {prepare_from_gz(args.from_gz, root, dataset=args.dataset)}")
        for split in SPLITS:
            x, y = load_dataset(args.dataset, root, split=split, download=args.download)
            # also proves torchvision reads them, to the same arrays
            xt, yt = _load_torchvision(str(Path(root).resolve()), split, args.dataset)
            if not (np.array_equal(x, xt) and np.array_equal(y, yt)):
                raise DataError(f"torchvision reads {raw_dir(root, dataset=args.dataset)}'s {split} files to other "
                                "arrays than numpy does: report this (it is a bug of this module)")
            print(f"{split}: {x.shape[0]} images OK in {raw_dir(root, dataset=args.dataset)}")
    except DataError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
