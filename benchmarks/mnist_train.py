"""Throughput of the MNIST experiment (paper Section 6.2) on this machine's default JAX device.

Prints, for N runs batched with vmap (one chunk), the wall time of the protocol (teachers + 4 students per run),
model-epochs/s, and the achieved GFLOP/s of the training next to the device's measured matmul peak (achieved/peak).
Run: ``python -m benchmarks.mnist_train [N ...] [--matmul-precision highest|tf32|bf16]`` (needs MNIST, see README).
The whole 100-run protocol's time is printed by ``python -m mnist_mlp --preset paper``.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import typer

from results.cli import make_app

app = make_app(__doc__)

N_CLASSES = 10


def flops_per_example(sizes=(784, 256, 256, 13)) -> tuple[float, float]:
    """(training FLOPs of one example through one model, forward FLOPs): forward 2*MACs; backward computes weight
    gradients (2*MACs) and input gradients for every layer but the first (no gradient w.r.t. the pixels)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    fwd = 2 * sum(macs)
    return fwd + 2 * sum(macs) + 2 * sum(macs[1:]), fwd


def protocol_flops(cfg) -> float:
    """Matmul FLOPs of the whole protocol for ``cfg`` (an ``MnistConfig``), padded batches included: per run, the
    teacher's training and the 4 students' training, plus the two teachers' logits on each noise image once (the
    first student epoch stores them)."""
    train, fwd = flops_per_example((784, *cfg.hidden, N_CLASSES + cfg.n_aux))
    steps = -(-60_000 // cfg.batch_size) * cfg.batch_size  # padded teacher examples per epoch
    student = -(-cfg.n_noise // cfg.batch_size) * cfg.batch_size
    per_run = (cfg.epochs_teacher * steps * train + cfg.epochs_student * student * 4 * train + student * 2 * fwd)
    return cfg.runs * per_run


@app.command(help=__doc__)
def main(counts: list[int] = typer.Argument(None, metavar="N", help="numbers of runs to time (default 2 4 16)"),
         matmul_precision: Literal["highest", "tf32", "bf16"] = typer.Option("highest", help="matmul precision of "
                                                                              "the training")) -> None:
    counts = counts or [2, 4, 16]
    if any(n < 2 for n in counts):
        raise typer.BadParameter("each count must be >= 2: a cross-model student needs another run's teacher",
                                 param_hint="N")
    import jax

    from benchmarks.common import matmul_peak_gflops, peak_rss_mb, save_results
    from mnist_mlp import MATMUL_PRECISIONS, MnistConfig, ensure_mnist, run

    root = ensure_mnist(download=False)
    n_peak = 8192 if jax.default_backend() == "gpu" else 2048  # a GPU needs a larger matmul to reach its peak
    with jax.default_matmul_precision(MATMUL_PRECISIONS[matmul_precision]):
        peak = matmul_peak_gflops(n_peak)
    print(f"backend {jax.default_backend()} ({jax.devices()[0]}); matmul peak {peak:.0f} GFLOP/s ({n_peak}^2, "
          f"{matmul_precision}); GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}\n")
    out = {"matmul_peak_gflops": peak, "matmul_precision": matmul_precision, "runs": []}
    for n in counts:
        cfg = MnistConfig(runs=n, chunk_size=n, data_dir=str(root), matmul_precision=matmul_precision)
        t0 = time.perf_counter()
        res = run(cfg, f"/tmp/subliminal-bench-{time.time_ns()}", progress=False)
        wall = time.perf_counter() - t0
        t = res["timings"]
        flops = protocol_flops(cfg)
        achieved = flops / wall / 1e9
        print(f"{cfg.runs:4d} runs batched: {wall:6.1f} s wall (teachers {t['teachers_s']:.1f} s, students "
              f"{t['students_s']:.1f} s, incl. compile); {wall / cfg.runs:5.2f} s/run; "
              f"{5 * cfg.runs * cfg.epochs / wall:5.2f} model-epochs/s; achieved {achieved:5.0f} GFLOP/s = "
              f"{achieved / peak:.0%} of the {peak:.0f} GFLOP/s peak; peak RSS {peak_rss_mb():.0f} MB")
        out["runs"].append({"runs": cfg.runs, "wall_s": wall, "teachers_s": t["teachers_s"],
                            "students_s": t["students_s"], "gflops": achieved, "fraction_of_peak": achieved / peak})
    save_results("mnist_train", out, jax=jax.__version__, backend=jax.default_backend(), device=str(jax.devices()[0]))


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.mnist_train")
