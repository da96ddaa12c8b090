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


# how each figure's JSON is made, for the re-plot CLI's errors (module -> command)
REGENERATE = {
    "figures.theory_projection": "python -m theory",
    "figures.theory_optimizers": "python -m theory --optimizers",
    "figures.mnist_fig10": "python -m mnist_mlp (or python -m figures --only mnist)",
    "figures.mnist_sweeps": "python -m mnist_mlp sweep NAME (or python -m figures --only sweeps)",
    "figures.llm_bridge_fig": "python -m llm_bridge run (or python -m figures --only llm)",
    "figures.llm_study_fig": "python -m llm_bridge study (or python -m figures --only study)",
    "figures.llm_ladder_fig": "python -m llm_bridge ladder",
    "figures.llm_replication_fig": "python -m llm_bridge replicate",
    "figures.llm_scan_fig": "python -m figures.llm_scan_fig --preset quick",
}


def replot(plot, module: str, figure_json, out_png) -> Path:
    """Redraw ``module``'s figure from its saved JSON. A file that is missing, not JSON, or the JSON of another
    figure raises ``SystemExit`` with one line that names the figure expected and the command that writes it."""
    path = Path(figure_json)
    expected = f"{module} re-plots the JSON written by: {REGENERATE.get(module, 'its experiment')}"
    try:
        data = load_json(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} does not exist; {expected}")
    except (OSError, ValueError) as e:  # a folder, unreadable, not UTF-8, not JSON
        why = str(e.__cause__ or e).splitlines()[0] if isinstance(e.__cause__, ValueError) else type(e).__name__
        raise SystemExit(f"error: {path} is not a JSON file ({why}); {expected}")
    try:
        return plot(data, out_png)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        why = f"it has no {e.args[0]!r}" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"
        raise SystemExit(f"error: {path} is not the JSON of a {module} figure ({why.splitlines()[0]}); {expected}")


def replot_app(plot, module: str):
    """The typer app of ``python -m <module> FIGURE.json OUT.png``; its help opens with the figure's description."""
    import sys

    import typer

    from results.cli import make_app

    doc = (getattr(sys.modules.get(plot.__module__), "__doc__", None) or "").strip()
    help_text = f"Redraw this figure from its saved JSON, without recomputing.\n\n{doc}"
    app = make_app(help_text)

    @app.command(help=help_text)
    def main(figure_json: Path = typer.Argument(..., metavar="FIGURE.json", help="the JSON this figure saved"),
             out_png: Path = typer.Argument(..., metavar="OUT.png", help="where to draw the PNG")):
        print(replot(plot, module, figure_json, out_png))

    return app


def replot_cli(plot, module: str) -> None:
    """``python -m <module> FIGURE.json OUT.png``: redraw a figure from its saved JSON, without recomputing."""
    replot_app(plot, module)(prog_name=f"python -m {module}")


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
