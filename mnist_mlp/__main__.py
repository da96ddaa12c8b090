"""The MNIST auxiliary-logit experiment (paper Fig. 10) with the projection diagnostic: teachers, students on noise
images, their test accuracy with 95% CIs; writes the runs' checkpoints under OUT and the figure's JSON and PNG.

`python -m mnist_mlp sweep NAME` runs a sweep of the same protocol (see `python -m mnist_mlp sweep --help`).

This is the CLI layer (the outermost): it runs the experiment and draws its figure through `figures`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from results.cli import (
    OLD_PRESET_NAMES,
    figures_dir_option,
    make_app,
    out_option,
    preset_option,
    resume_option,
    seed_option,
)

# a multi-process run's options, shared by the Fig. 10 experiment and `sweep`
DISTRIBUTED = typer.Option(False, "--distributed", help="one process of a multi-process run (jax.distributed; each "
                           "trains its share of the chunks, process 0 writes the results): the cluster is detected "
                           "under SLURM, Open MPI, Kubernetes; elsewhere give --coordinator, --num-processes and "
                           "--process-id")
COORDINATOR = typer.Option(None, help="HOST:PORT of process 0 (implies --distributed)")
NUM_PROCESSES = typer.Option(None, help="processes of a --distributed run")
PROCESS_ID = typer.Option(None, help="this process's id, 0 to --num-processes - 1")

app = make_app(__doc__)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    preset: str = preset_option(choices=("tiny", "quick", "paper"), help="tiny (2 runs of 1 epoch on 2,048 noise "
                                "images, for tests), quick (4 runs of 5 epochs) or paper (100 runs, "
                                "the paper protocol)"),
    runs: int | None = typer.Option(None, min=2, help="override the preset's number of runs (a cross-model student "
                                    "needs another run's teacher: at least 2)"),
    seed: int = seed_option(),
    epochs: int | None = typer.Option(None, min=1, help="override the epochs of teachers and students"),
    chunk_size: int | None = typer.Option(None, min=1, help="runs trained at once (default: all the runs the device "
                                          "memory holds, in equal chunks)"),
    matmul_precision: str = typer.Option("highest", help="matmul precision: highest (float32, the protocol), tf32 or "
                                         "bf16 (GPU tensor cores; part of the fingerprint)"),
    out: Path = out_option(Path("runs"), help="the run folder: per-chunk checkpoints and results.json"),
    figures_dir: Path = figures_dir_option(),
    resume: bool = resume_option("reuse the finished chunks of an interrupted run"),
    data_dir: Path | None = typer.Option(None, help="torchvision MNIST root (default: $SUBLIMINAL_DATA_DIR or "
                                            "./data); offline: python -m mnist_mlp.data --from-gz DIR"),
    download: bool = typer.Option(True, help="let torchvision download MNIST when it is neither in --data-dir nor "
                                  "in the folder $SUBLIMINAL_MNIST_GZ names"),
    progress: bool = typer.Option(True, help="show progress bars"),
    distributed: bool = DISTRIBUTED,
    coordinator: str | None = COORDINATOR,
    num_processes: int | None = NUM_PROCESSES,
    process_id: int | None = PROCESS_ID,
):
    if ctx.invoked_subcommand is not None:  # `sweep`: its own options; none of these may be set before it
        given = [p.name for p in ctx.command.params
                 if getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
        if given:
            which = ", ".join("--" + g.replace("_", "-") for g in given)
            raise typer.BadParameter(f"{which} {'is an option' if len(given) == 1 else 'are options'} of the Fig. 10 "
                                     f"experiment; give the {ctx.invoked_subcommand} command its own options after "
                                     "its name")
        return
    import dataclasses

    from figures import mnist_fig10
    from mnist_mlp.config import MATMUL_PRECISIONS, MnistConfig
    from mnist_mlp.data import DataError, ensure_mnist
    from mnist_mlp.experiment import run

    presets = {"tiny": MnistConfig.tiny, "quick": MnistConfig.quick, "paper": MnistConfig.paper}
    if matmul_precision not in MATMUL_PRECISIONS:
        raise typer.BadParameter(f"unknown precision {matmul_precision!r}; choose one of "
                                 f"{', '.join(MATMUL_PRECISIONS)}", param_hint="--matmul-precision")
    kw = {k: v for k, v in {"runs": runs, "epochs": epochs, "chunk_size": chunk_size}.items() if v is not None}
    kw["matmul_precision"] = matmul_precision
    try:  # the settings are checked before any work (the data's unpacking included)
        config = presets[preset](seed=seed, **kw)
    except ValueError as e:
        raise typer.BadParameter(str(e))
    try:
        main_process = _join(distributed, coordinator, num_processes, process_id)
        root = ensure_mnist(data_dir, download=download)
        config = dataclasses.replace(config, data_dir=str(root))
        if not main_process:  # its share of the chunks; process 0 draws the figure
            run(config, out, resume=resume, progress=progress)
            return
        jp, png, data = mnist_fig10.main(config, figures_dir, runs_dir=out, resume=resume, progress=progress)
    except (DataError, ValueError, FloatingPointError) as e:
        raise SystemExit(f"error: {e}")
    for line in summary_lines(data):
        print(line)
    print(f"\nwrote {jp}\nwrote {png}")


@app.command()
def sweep(
    name: str = typer.Argument(..., help="a sweep of mnist_mlp.sweeps.SWEEPS (init, width, aux, loss, optimizer, "
                               "student_epochs, teacher_epochs, inputs, fashion, ablation, liminal, heads, "
                               "alignment), or all"),
    preset: str = preset_option(choices=("tiny", "quick", "paper"), old_names=OLD_PRESET_NAMES,
                                help="tiny (2 runs per cell of 1 epoch on 2,048 noise images; for tests), quick (2 "
                                "runs per cell, 10,240 noise images) or paper (25 runs "
                                "per cell, the paper protocol; resumable; its files are named full, paper's old name "
                                "here, which is still accepted)"),
    seed: int = seed_option(help="root seed of every cell"),
    out: Path = out_option(Path("runs"), help="the run folder: the cells' checkpoints (OUT/sweeps)"),
    figures_dir: Path = figures_dir_option(help="the figure folder: each sweep's JSON and PNG, and the map"),
    resume: bool = resume_option("reuse finished chunks (of interrupted cells, and of cells that other sweeps share: "
                                 "the Fig. 10 baseline)"),
    chunk_size: int | None = typer.Option(None, min=1, help="runs trained at once (default: all runs of a cell); with "
                                          "several devices, a multiple of their count shards the runs over them"),
    data_dir: Path | None = typer.Option(None, help="torchvision root holding MNIST (and Fashion-MNIST)"),
    download: bool = typer.Option(True, help="let torchvision download missing datasets"),
    progress: bool = typer.Option(True, help="show progress bars"),
    distributed: bool = DISTRIBUTED,
    coordinator: str | None = COORDINATOR,
    num_processes: int | None = NUM_PROCESSES,
    process_id: int | None = PROCESS_ID,
):
    """A sweep of the Fig. 10 protocol (one figure; JSON + PNG), then the transfer map of every finished sweep."""
    from figures import mnist_sweeps
    from mnist_mlp.data import DataError, ensure_dataset
    from mnist_mlp.sweeps import SWEEPS, run_sweep

    names = list(SWEEPS) if name == "all" else [name]
    if not set(names) <= set(SWEEPS):
        raise typer.BadParameter(f"unknown sweep {name!r}; choose one of {', '.join(SWEEPS)} or all",
                                 param_hint="NAME")
    preset = SWEEP_PRESETS[preset]
    try:
        main_process = _join(distributed, coordinator, num_processes, process_id)
        root = ensure_dataset("mnist", data_dir, download=download)
        if any(_needs_fashion(n) for n in names):
            ensure_dataset("fashion", root, download=download)
        for n in names:
            extra = {} if chunk_size is None else {"chunk_size": chunk_size}
            if not main_process:  # its share of every cell's chunks; process 0 draws the figures
                run_sweep(n, preset, out_dir=out, resume=resume, progress=progress, seed=seed, data_dir=str(root),
                          **extra)
                continue
            t0 = time.perf_counter()
            jp, png, data = mnist_sweeps.main(n, preset, figures_dir, runs_dir=out, resume=resume,
                                              progress=progress, seed=seed, data_dir=str(root), **extra)
            for c in data["cells"]:
                if "diverged" in c:
                    print(f"{n:>15} {c['label']:>14}: diverged")
                    continue
                s = c["students"]
                print(f"{n:>15} {c['label']:>14}: aux same {s['aux_same']['accuracy']['mean']:6.1%}  aux other "
                      f"{s['aux_other']['accuracy']['mean']:6.1%}  first-step proj "
                      f"{s['aux_same']['first_step_projection']['mean']:+.2e}  "
                      f"({_seconds(c.get('compute_s'))} compute)")
            print(f"{n}: {_seconds(data['compute_s'])} of compute in its cells, "
                  f"{time.perf_counter() - t0:.0f} s in this process\nwrote {jp}\nwrote {png}")
    except (DataError, ValueError, FloatingPointError) as e:
        raise SystemExit(f"error: {e}")


# the CLI's preset -> mnist_mlp.sweeps' own name (file names carry it: mnist_sweep_init_full_seed0.json)
SWEEP_PRESETS = {"tiny": "tiny", "quick": "quick", "paper": "full"}


def _seconds(s) -> str:
    """A compute time as printed; None (a chunk file from older code carries no time) is unknown, not 0 s."""
    return "unknown" if s is None else f"{s:.0f} s"


def _join(distributed: bool, coordinator, num_processes, process_id) -> bool:
    """Join a multi-process run when asked; is this process the one that writes results and draws figures?"""
    if not (distributed or coordinator is not None):
        return True
    import jax

    from mnist_mlp.experiment import initialize_distributed

    initialize_distributed(coordinator, num_processes, process_id)
    return jax.process_index() == 0


def _needs_fashion(name: str) -> bool:
    from mnist_mlp.sweeps import SWEEPS

    return any("fashion" in dict(over).values() for _, over in SWEEPS[name].cells)


def summary_lines(data: dict) -> list[str]:
    s = data["summary"]
    rows = [f"{'model':<12}{'test acc':>10}{'95% CI':>20}{'cos first step':>16}{'cos total':>11}{'L_T first':>11}"]
    for name, d in s.items():
        a = d["accuracy"]
        ci = "n/a" if a["ci95"][0] is None else f"[{a['ci95'][0]:.2%}, {a['ci95'][1]:.2%}]"
        c1 = d.get("first_step_gradient_cos", {}).get("mean")
        ct = d.get("total_update_cos", {}).get("mean")
        lt = d.get("teacher_loss_first_step_change", {}).get("fraction_negative")
        rows.append(f"{name:<12}{a['mean']:>10.2%}{ci:>20}{'' if c1 is None else f'{c1:.3f}':>16}"
                    f"{'' if ct is None else f'{ct:.3f}':>11}{'' if lt is None else f'{lt:.0%} fall':>11}")
    t = data["timings"]
    rows.append(f"\n{data['config']['runs']} runs in {t['total_s']:.0f} s "
                f"({t['model_epochs_per_s']:.2f} model-epochs/s on {data['versions']['device']})")
    return rows


if __name__ == "__main__":
    app()
