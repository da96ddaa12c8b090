"""Results I/O shared by the experiments (layer 2, above ``theory``, below ``mnist_mlp`` / ``llm_bridge``).

Atomic writes (a crash never leaves half a file), strict JSON (NaN -> null), arrays with metadata, config
fingerprints, run folders whose artifacts are reused on ``--resume`` only when their fingerprint matches (and which one
process at a time may use: ``lock_folder``), and the run metadata every experiment records (peak memory, environment).
A file that cannot be read or written as asked raises ``ResultsError``, one line naming the file and the fix.

Fault injection for the tests (``tests/faults``): ``SUBLIMINAL_FAULTS`` holds ``;``-separated ``ACTION:ARG`` entries.
``kill:GLOB`` kills this process (SIGKILL) halfway through writing the first file whose path matches ``GLOB``
(``fnmatch``), ``enospc:GLOB`` fails that write as a full disk would; experiments read their own entries through
``injected`` (e.g. mnist_mlp's ``nan-image:K``). ``SUBLIMINAL_WRITE_LOG=FILE`` appends the path of every atomic write
to FILE. Imports nothing of ours.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import fnmatch
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["LOCK_NAME", "UMASK", "ArrayStore", "ResultsError", "RunDir", "atomic_dir", "atomic_write", "environment",
           "fingerprint",
           "injected", "json_ready", "keep_freed_memory", "load_arrays", "load_json", "load_meta", "lock_folder",
           "peak_rss_mb", "save_arrays", "save_json", "unlock_folder"]

UMASK = os.umask(0)
os.umask(UMASK)
FAULTS_ENV, WRITE_LOG_ENV = "SUBLIMINAL_FAULTS", "SUBLIMINAL_WRITE_LOG"
LOCK_NAME = ".lock"
FIX = "delete it and rerun with --resume (the run's other finished parts are kept)"


class ResultsError(ValueError):
    """A result file or run folder that cannot be read, written or used as asked; the message (one line) names the
    file and what to do. A ValueError, so the CLIs print it as their other one-line errors."""


def injected(action: str) -> list[str]:
    """The arguments of the ``action`` entries of ``$SUBLIMINAL_FAULTS`` (module docstring); [] in normal runs."""
    entries = [e.strip().split(":", 1) for e in os.environ.get(FAULTS_ENV, "").split(";") if ":" in e]
    return [arg for act, arg in entries if act.strip() == action]


def _tmp_prefix(path: Path) -> str:
    """The temp name's prefix beside ``path``: hidden, and carrying the writer's pid (``_clear_stale``)."""
    return f".{path.name}.{os.getpid()}."


def _clear_stale(path: Path) -> None:
    """Remove the temp files (and folders) of ``path`` left by writers that no longer run (a killed process)."""
    for tmp in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        _remove_if_stale(tmp)


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _remove_if_stale(tmp: Path) -> None:
    m = _TMP.match(tmp.name)
    if m is None or _alive(int(m["pid"])):
        return
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _before_rename(path: Path, tmp: str) -> None:
    """The injected faults of a write (module docstring), between writing the temp file and renaming it."""
    name = path.as_posix()
    if log := os.environ.get(WRITE_LOG_ENV):
        with open(log, "a") as f:
            f.write(name + "\n")
    if any(fnmatch.fnmatch(name, g) for g in injected("enospc")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
    if any(fnmatch.fnmatch(name, g) for g in injected("kill")):
        if os.path.isfile(tmp):  # half of the file on disk, as a kill mid-write leaves it
            os.truncate(tmp, os.path.getsize(tmp) // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def _disk_full(path: Path, e: OSError) -> ResultsError:
    return ResultsError(f"{path} could not be written: {e.strerror or e} (errno {e.errno}); nothing of it was kept "
                        "and the files written before it are whole: free some space and rerun with --resume")


def atomic_write(path, write: Callable) -> Path:
    """Write ``path`` through ``write(binary file)`` into a temp file beside it, then rename over it. A full disk (or
    a quota) raises ``ResultsError`` naming the file; the temp file is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file the usual permissions
        _before_rename(path, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, e) from e
        raise
    return path


def atomic_dir(path, fill: Callable[[Path], None]) -> Path:
    """Build a folder through ``fill(temp folder)`` beside ``path``, then move it into place (replacing ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp"))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp creates 0700
        _before_rename(path, str(tmp))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, e) from e
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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"{e.msg}, line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise ResultsError(f"{path} is not valid JSON ({where}); delete it and rerun the step that writes it (with "
                           "--resume, the run's other finished parts are kept)") from e


def save_arrays(path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Arrays plus a JSON metadata dict in one ``.npz``, written atomically."""
    payload = {**{k: np.asarray(v) for k, v in arrays.items()},
               "__meta__": np.frombuffer(json.dumps(json_ready(meta)).encode(), dtype=np.uint8)}
    return atomic_write(path, lambda f: np.savez(f, **payload))


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) of a file written by ``save_arrays``; an unreadable file raises ``ResultsError``."""
    with _npz(path) as z:
        return _read(path, lambda: ({k: z[k] for k in z.files if k != "__meta__"}, _meta(z)))


def load_meta(path) -> dict:
    """Only the metadata of a file written by ``save_arrays`` (the arrays are not read)."""
    with _npz(path) as z:
        return _read(path, lambda: _meta(z))


def _npz(path):
    return _read(path, lambda: np.load(path))


def _read(path, read):
    try:
        return read()
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ResultsError(f"{path} is not a readable array file ({type(e).__name__}: {e}); {FIX}") from e


def _meta(z) -> dict:
    return json.loads(bytes(z["__meta__"]).decode())


def fingerprint(settings, length: int = 10) -> str:
    """Short sha256 of the settings as sorted JSON: equal settings, equal fingerprint, on every machine."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:length]


_LOCKS: dict[Path, int] = {}  # folder -> the open lock file this process holds on it


def lock_folder(root) -> Path:
    """Hold ``root/.lock`` (``fcntl.flock``, exclusive) until this process ends, so that one process at a time uses
    the run folder; a second one stops at once with a ``ResultsError`` naming the holder's pid. Re-entrant within a
    process. The kernel releases the lock when its holder dies, a killed run's included, so a lock is never stale.
    Then the temp files of killed writers under ``root`` are removed. A process of a multi-process run other than
    the first (torchrun's ``RANK`` > 0) takes no lock: the first holds it for all of them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    key = root.resolve()
    if key in _LOCKS or os.environ.get("RANK", "0") != "0":
        return root
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ResultsError(f"{root} is in use by another process (pid {holder}): wait for it to finish, or give "
                           "this run another output folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCKS[key] = fd
    for tmp in root.rglob(".*.tmp"):
        _remove_if_stale(tmp)
    return root


def unlock_folder(root) -> None:
    """Give up this process's lock on ``root`` (it ends with the process anyway)."""
    fd = _LOCKS.pop(Path(root).resolve(), None)
    if fd is not None:
        os.close(fd)


class RunDir:
    """A run folder whose JSON artifacts carry the fingerprint of the settings that made them.

    ``json(path, compute)`` returns the file when ``resume`` is on and its fingerprint matches, else computes, stamps
    (fingerprint, seconds) and writes it atomically. Artifacts written by this process are reused without a read.
    The folder is locked for this process (``lock_folder``) unless ``lock`` is off."""

    def __init__(self, root, fp: str, *, resume: bool = False, lock: bool = True):
        self.root, self.fp, self.resume = Path(root), fp, resume
        self.done: set[Path] = set()
        if lock:
            lock_folder(self.root)

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


class ArrayStore:
    """The finished parts of a computation that runs in parts (the theory grid's), as array files ``ROOT/KEY.npz``
    stamped with the fingerprint of the settings that made them: ``get(key)`` returns a part's arrays when ``resume``
    is on and its fingerprint matches (else None: the part is computed again), ``put(key, arrays)`` writes one
    atomically. The folder is locked for this process (``lock_folder``); an unreadable part is a ``ResultsError``
    naming the file."""

    def __init__(self, root, fp: str, *, resume: bool = True):
        self.root, self.fp, self.resume = Path(root), fp, resume
        lock_folder(self.root)

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", key):
            raise ValueError(f"{key!r} is not a part's name (letters, digits, '.', '_', '-')")
        return self.root / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path(key)
        if not (self.resume and path.exists()):
            return None
        meta = load_meta(path)
        if meta.get("fingerprint") != self.fp or meta.get("key") != key:
            return None
        return load_arrays(path)[0]

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        save_arrays(self.path(key), arrays, {"fingerprint": self.fp, "key": key})


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
