"""Shared plumbing for figure scripts: settings-bearing file names, save-then-plot, atomic PNG writes, re-plot CLI.

JSON and atomic writes come from ``results`` (the layer below the experiments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from results import atomic_write, load_json, save_json

FIGURES_DIR = Path(__file__).resolve().parent


def stem(name: str, **settings) -> str:
    """File stem that carries the settings, e.g. ``theory_projection_quick_float64_seed0``."""
    parts = [name] + [f"{k}{v}" if k in ("seed", "runs") else str(v) for k, v in settings.items()]
    return "_".join(parts)


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
        return atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=130, bbox_inches="tight"))
    finally:
        plt.close(fig)


def nan_array(values) -> np.ndarray:
    """A float array from JSON lists in which None stood for NaN."""
    return np.array([[np.nan if v is None else v for v in row] if isinstance(row, list) else
                     (np.nan if row is None else row) for row in values], dtype=float)
