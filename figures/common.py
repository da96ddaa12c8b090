"""Shared plumbing for figure scripts: settings-bearing file names, atomic JSON/PNG writes, NaN-safe JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

FIGURES_DIR = Path(__file__).resolve().parent
_UMASK = os.umask(0)
os.umask(_UMASK)


def stem(name: str, **settings) -> str:
    """File stem that carries the settings, e.g. ``theory_projection_quick_float64_seed0``."""
    parts = [name] + [f"{k}{v}" if k in ("seed", "runs") else str(v) for k, v in settings.items()]
    return "_".join(parts)


def _clean(obj):
    """JSON-ready copy: numpy -> python, NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_json(path, obj, *, compact: bool = False) -> Path:
    """Write ``obj`` as strict JSON atomically (temp file + rename: a crash never leaves half a file).

    ``compact`` drops the indentation: for files holding long per-case curves."""
    text = json.dumps(_clean(obj), indent=None if compact else 1, separators=(",", ":") if compact else None,
                      allow_nan=False)
    return _atomic_write(Path(path), lambda f: f.write(text.encode()))


def load_json(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the figure's compute step first (see README)")
    return json.loads(path.read_text())


def save_then_plot(data, json_path, png_path, plot, *, compact: bool = False) -> tuple[Path, Path, dict]:
    """Write a figure's numbers, then draw its PNG from the saved JSON alone (what a later re-plot sees).
    Returns (json path, png path, the data as read back)."""
    jp = save_json(json_path, data, compact=compact)
    saved = load_json(jp)
    return jp, plot(saved, png_path), saved


def replot_cli(plot, module: str) -> None:
    """``python -m <module> FIGURE.json OUT.png``: redraw a figure from its saved JSON, without recomputing."""
    import sys

    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m {module} FIGURE.json OUT.png  (re-plot from saved JSON)")
    print(plot(load_json(sys.argv[1]), sys.argv[2]))


def save_figure(fig, path) -> Path:
    """Lay out, save atomically as PNG and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return _atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=130, bbox_inches="tight"))
    finally:
        plt.close(fig)


def nan_array(values) -> np.ndarray:
    """A float array from JSON lists in which None stood for NaN."""
    return np.array([[np.nan if v is None else v for v in row] if isinstance(row, list) else
                     (np.nan if row is None else row) for row in values], dtype=float)
