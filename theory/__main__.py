"""Check Lemma 1 and Theorem 1 of the paper over a grid of random networks (MLPs, a CNN, a transformer block; three
imitation losses; random and real-digit inputs): print the table, write the figure's JSON and PNG. Each
architecture's finished part is kept under OUT, from which an interrupted run resumes.

`python -m theory --optimizers`: the same networks under SGD, momentum, Adam and SignSGD (first step and K steps).

This is the CLI layer (the outermost): it may draw through `figures` and read real MNIST through `mnist_mlp.data`;
the `theory` package itself imports neither."""

from __future__ import annotations

from pathlib import Path

import typer

from results.cli import (
    figures_dir_option,
    make_app,
    note_old,
    old_option,
    out_option,
    preset_option,
    resume_option,
    seed_option,
)
from theory.config import ALL_ARCHS, INPUTS, TheoryConfig

app = make_app(__doc__)


@app.command(help=__doc__)
def main(
    preset: str = preset_option("paper", choices=("quick", "paper"), help="quick (a small grid that still covers "
                                "every family and loss) or paper (the 336-network grid)"),
    json_path: Path | None = typer.Option(None, "--json", help="where to write the results JSON "
                                          "(default: FIGURES_DIR/theory_projection_SETTINGS.json)"),
    out: Path = out_option(Path("runs"), help="the run folder: each part of the grid (an architecture; an "
                           "architecture and loss with --optimizers) as it finishes, under OUT/FIGURE_SETTINGS_FP"),
    figures_dir: Path = figures_dir_option(),
    resume: bool = resume_option("reuse the finished parts of an interrupted grid"),
    seed: int = seed_option(help="root seed (keys are split from it by role)"),
    dtype: str = typer.Option("float64", help="float64 (the acceptance run) or float32"),
    seeds_per_combo: int | None = typer.Option(None, min=1, help="random cases per (architecture, loss, input)"),
    archs: str | None = typer.Option(None, help=f"comma-separated subset of {', '.join(ALL_ARCHS)}"),
    inputs: str | None = typer.Option(None, help=f"comma-separated subset of the input distributions "
                                      f"{', '.join(INPUTS)} (default: all)"),
    data_dir: Path | None = typer.Option(None, help="MNIST root (torchvision layout); real-digit inputs are "
                                         "skipped when absent (an error where SUBLIMINAL_REQUIRE_DATA=1)"),
    optimizers: bool = typer.Option(False, "--optimizers", help="run the optimizer axis (Theorem 1 beyond gradient "
                                    "descent: first steps and K steps of each optimizer) instead of the projection "
                                    "grid; writes theory_optimizers_SETTINGS.{json,png}"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    quick: bool = old_option("--quick", "--preset quick", False),
):
    from figures import theory_optimizers, theory_projection
    from mnist_mlp.data import DataError
    from theory.experiment import table_rows
    from theory.optimizer_grid import table_rows as optimizer_rows

    if quick:
        note_old("--quick", "--preset quick")
        preset = "quick"
    kw = {"seed": seed, "dtype": dtype}
    if seeds_per_combo is not None:
        kw["seeds_per_combo"] = seeds_per_combo
    if archs:
        kw["archs"] = tuple(a.strip() for a in archs.split(","))
    if inputs:
        kw["inputs"] = tuple(i.strip() for i in inputs.split(","))
    try:
        config = (TheoryConfig.quick if preset == "quick" else TheoryConfig.paper)(**kw)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    try:
        figure = theory_optimizers if optimizers else theory_projection
        jp, png, data = figure.main(config, figures_dir, json_path=json_path, data_dir=data_dir, progress=progress,
                                    runs_dir=out, resume=resume)
    except (DataError, ValueError) as e:  # a ResultsError (an unreadable part) is a ValueError
        raise SystemExit(f"error: {e}")
    for line in (optimizer_rows if optimizers else table_rows)(data):
        print(line)
    print(f"\nwrote {jp}\nwrote {png}")


if __name__ == "__main__":
    app()
