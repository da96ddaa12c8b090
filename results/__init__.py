"""Results I/O shared by the experiments (layer 2, above ``theory``, below ``mnist_mlp`` / ``llm_bridge``).

Atomic writes (a crash never leaves half a file), strict JSON (NaN -> null), arrays with metadata, config
fingerprints, run folders whose artifacts are reused on ``--resume`` only when their fingerprint matches, and the run
metadata every experiment records (peak memory, environment). Imports nothing of ours.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["UMASK", "RunDir", "atomic_dir", "atomic_write", "environment", "fingerprint", "json_ready",
           "keep_freed_memory", "load_arrays", "load_json", "peak_rss_mb", "save_arrays", "save_json"]

UMASK = os.umask(0)
os.umask(UMASK)


def atomic_write(path, write: Callable) -> Path:
    """Write ``path`` through ``write(binary file)`` into a temp file beside it, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_dir(path, fill: Callable[[Path], None]) -> Path:
    """Build a folder through ``fill(temp folder)`` beside ``path``, then move it into place (replacing ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp creates 0700
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def json_ready(obj):
    """JSON-ready copy: numpy -> python, NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def save_json(path, obj, *, compact: bool = False) -> Path:
    """Write ``obj`` as strict JSON atomically. ``compact`` drops the indentation (files of long per-case curves)."""
    text = json.dumps(json_ready(obj), indent=None if compact else 1, separators=(",", ":") if compact else None,
                      allow_nan=False)
    return atomic_write(path, lambda f: f.write(text.encode()))


def load_json(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the step that writes it first (see README)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}); delete it and rerun the step that "
                         "writes it") from e


def save_arrays(path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Arrays plus a JSON metadata dict in one ``.npz``, written atomically."""
    payload = {**{k: np.asarray(v) for k, v in arrays.items()},
               "__meta__": np.frombuffer(json.dumps(json_ready(meta)).encode(), dtype=np.uint8)}
    return atomic_write(path, lambda f: np.savez(f, **payload))


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) of a file written by ``save_arrays``."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}, _meta(z)


def load_meta(path) -> dict:
    """Only the metadata of a file written by ``save_arrays`` (the arrays are not read)."""
    with np.load(path) as z:
        return _meta(z)


def _meta(z) -> dict:
    return json.loads(bytes(z["__meta__"]).decode())


def fingerprint(settings, length: int = 10) -> str:
    """Short sha256 of the settings as sorted JSON: equal settings, equal fingerprint, on every machine."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:length]


class RunDir:
    """A run folder whose JSON artifacts carry the fingerprint of the settings that made them.

    ``json(path, compute)`` returns the file when ``resume`` is on and its fingerprint matches, else computes, stamps
    (fingerprint, seconds) and writes it atomically. Artifacts written by this process are reused without a read."""

    def __init__(self, root, fp: str, *, resume: bool = False):
        self.root, self.fp, self.resume = Path(root), fp, resume
        self.done: set[Path] = set()

    def fresh(self, meta_path, fp: str | None = None) -> bool:
        """Is the artifact whose metadata JSON is ``meta_path`` reusable (written now, or resumed with our fp)?"""
        meta_path = Path(meta_path)
        if meta_path in self.done:
            return True
        if not (self.resume and meta_path.exists()):
            return False
        try:
            return json.loads(meta_path.read_text()).get("fingerprint") == (fp or self.fp)
        except json.JSONDecodeError:
            return False

    def mark(self, meta_path) -> None:
        self.done.add(Path(meta_path))

    def json(self, path, compute: Callable[[], dict], *, fp: str | None = None) -> dict:
        """``fp``: a fingerprint of more settings than the run's (an artifact that also depends on the caller's)."""
        path = Path(path)
        if self.fresh(path, fp):
            return load_json(path)
        t0 = time.perf_counter()
        data = compute()
        data.update(fingerprint=fp or self.fp, seconds=time.perf_counter() - t0)
        save_json(path, data)
        self.mark(path)
        return data


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8


def keep_freed_memory() -> bool:
    """Let this process keep the memory it frees, for the next allocation, instead of giving it back to the kernel.

    XLA and torch allocate every step's buffers afresh on CPU (tens of MB each for a chunk of runs). By default glibc
    serves each such buffer with its own ``mmap`` and unmaps it on free, so every step faults its pages in again: on
    a 25-run MNIST chunk the kernel's page-fault time equals the compute (issue 16). With ``mmap`` off, one heap for
    all threads (threads' own heaps cap at 64 MB and fall back to ``mmap``) and no trimming, a freed buffer stays in
    the heap and the next step reuses it. The numbers do not change; the resident memory stays at its peak until
    the process ends. A no-op (False) where the C library has no ``mallopt`` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(p, v) == 1 for p, v in settings)


def environment(**libraries) -> dict:
    """Python and machine, plus the caller's library versions and devices (each experiment names its own)."""
    return {"python": platform.python_version(), "machine": platform.machine(), **libraries}
