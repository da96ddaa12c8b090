"""Throughput of the MNIST experiment (paper Section 6.2) on this machine.

Prints the time of one run (teacher + 4 students), of N runs batched with vmap, model-epochs/s, and the achieved
GFLOP/s next to this machine's matmul peak. Run: ``python -m benchmarks.mnist_train [N ...]`` (needs MNIST, see
README). The whole 100-run protocol's time is printed by ``python -m mnist_mlp --preset paper``.
"""

from __future__ import annotations

import os
import sys
import time

import jax

from benchmarks.common import matmul_peak_gflops, peak_rss_mb, save_results
from mnist_mlp.config import MnistConfig
from mnist_mlp.data import ensure_mnist
from mnist_mlp.experiment import run


def flops_per_example(sizes=(784, 256, 256, 13)) -> tuple[float, float]:
    """(training FLOPs of one example through one model, forward FLOPs): forward 2*MACs; backward computes weight
    gradients (2*MACs) and input gradients for every layer but the first (no gradient w.r.t. the pixels)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    fwd = 2 * sum(macs)
    return fwd + 2 * sum(macs) + 2 * sum(macs[1:]), fwd


def main(counts=(1, 4, 16)) -> None:
    root = ensure_mnist(download=False)
    peak = matmul_peak_gflops()
    print(f"backend {jax.default_backend()} ({jax.devices()[0]}); matmul peak {peak:.0f} GFLOP/s (2048^2 float32); "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}\n")
    train, fwd = flops_per_example()
    out = {"matmul_peak_gflops": peak, "glibc_tunables": os.environ.get("GLIBC_TUNABLES"), "runs": []}
    for n in counts:
        cfg = MnistConfig(runs=max(n, 2), chunk_size=max(n, 2), data_dir=str(root))
        t0 = time.perf_counter()
        res = run(cfg, f"/tmp/subliminal-bench-{time.time_ns()}", progress=False)
        wall = time.perf_counter() - t0
        steps = cfg.epochs * (-(-60_000 // cfg.batch_size)) * cfg.batch_size  # padded examples per model
        # teachers: train; students: 4 x train, plus 2 teacher forwards per image in the first epoch only (kept after)
        flops = cfg.runs * steps * (5 * train + 2 * fwd / cfg.epochs)
        t = res["timings"]
        print(f"{cfg.runs:4d} runs batched: {wall:6.1f} s wall (teachers {t['teachers_s']:.1f} s, students "
              f"{t['students_s']:.1f} s, incl. compile); {wall / cfg.runs:5.1f} s/run; "
              f"{5 * cfg.runs * cfg.epochs / wall:5.2f} model-epochs/s; {flops / wall / 1e9:5.0f} GFLOP/s "
              f"({flops / wall / 1e9 / peak:.0%} of peak); peak RSS {peak_rss_mb():.0f} MB")
        out["runs"].append({"runs": cfg.runs, "wall_s": wall, "teachers_s": t["teachers_s"],
                            "students_s": t["students_s"], "gflops": flops / wall / 1e9,
                            "fraction_of_peak": flops / wall / 1e9 / peak})
    save_results("mnist_train", out, jax=jax.__version__, backend=jax.default_backend(), device=str(jax.devices()[0]))


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (2, 4, 16))
