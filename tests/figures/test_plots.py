"""Every committed figure redraws from its JSON alone (the plot half of compute -> JSON -> PNG), so a change to a
plot function that breaks the schema of a published figure fails here, without recomputing anything."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from figures.common import FIGURES_DIR
from results import load_json

# file-name prefix -> the figure script that draws it (module, or module:function when not its ``plot``)
PLOTTERS = {"theory_projection_": "figures.theory_projection", "theory_optimizers_": "figures.theory_optimizers",
            "mnist_fig10_": "figures.mnist_fig10",
            "llm_bridge_": "figures.llm_bridge_fig", "llm_study_": "figures.llm_study_fig",
            "llm_ladder_": "figures.llm_ladder_fig", "llm_scan_": "figures.llm_scan_fig",
            "mnist_sweep_": "figures.mnist_sweeps",
            "mnist_transfer_map_": "figures.mnist_sweeps:plot_map"}
COMMITTED = sorted(FIGURES_DIR.glob("*.json"))


def plotter(path: Path):
    for prefix, module in PLOTTERS.items():
        if path.name.startswith(prefix):
            module, _, function = module.partition(":")
            return getattr(importlib.import_module(module), function or "plot")
    raise AssertionError(f"no figure script draws {path.name}; add it to PLOTTERS")


def test_every_figure_script_has_a_committed_figure():
    def script(m):
        return m.partition(":")[0]

    drawn = {script(m) for p, m in PLOTTERS.items() if any(j.name.startswith(p) for j in COMMITTED)}
    assert drawn == {script(m) for m in PLOTTERS.values()}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_figure_redraws_from_its_json(path, tmp_path):
    png = plotter(path)(load_json(path), tmp_path / "redrawn.png")
    data = Path(png).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000  # a drawn figure, not an empty canvas
    assert path.with_suffix(".png").exists(), f"{path.name} has no committed PNG beside it"
