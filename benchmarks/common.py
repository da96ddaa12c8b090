"""Helpers for the benchmark scripts: wall-clock timing after compilation, memory peak, CPU matmul peak."""

from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from results import environment, peak_rss_mb, save_json

__all__ = ["RESULTS_DIR", "matmul_peak_gflops", "peak_rss_mb", "save_results", "time_it", "torch_matmul_gflops"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def save_results(name: str, numbers: dict, *, variant: str | None = None, **libraries) -> Path:
    """Write what a benchmark printed as ``benchmarks/results/<name>.json`` (with the command, the date, the peak
    memory and the machine), so that every timing quoted in README or paper_notes has an artifact. ``variant``: a
    partial run of the benchmark (``<name>_<variant>.json``), which leaves the full run's artifact as it is."""
    path = save_json(RESULTS_DIR / (f"{name}_{variant}.json" if variant else f"{name}.json"), {
        "benchmark": name, "command": " ".join(["python -m", f"benchmarks.{name}", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "numbers": numbers, "peak_rss_mb": peak_rss_mb(), "environment": environment(**libraries)})
    print(f"wrote {path}")
    return path


def time_it(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """(compile + first call seconds, median seconds of ``repeats`` further calls); blocks on the results."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def matmul_peak_gflops(n: int = 2048, dtype=jnp.float32) -> float:
    """Achieved GFLOP/s of one large matmul: the practical peak this machine gives XLA."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    _, t = time_it(f, a, repeats=5)
    return 2 * n**3 / t / 1e9


def torch_matmul_gflops(n: int = 1024, dtype: str = "float32", *, kernel: str = "linear", repeats: int = 3) -> float:
    """Achieved GFLOP/s of one n x n torch matmul in ``dtype`` on the CPU, median of ``repeats`` after one warm-up:
    ``kernel`` "linear" (``F.linear``, what nn.Linear and its autocast run) or "matmul" (``a @ b``). The practical
    peak a torch step in that dtype can reach (without native bf16 the two kernels differ several-fold)."""
    import torch

    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0)).to(getattr(torch, dtype))
    f = {"linear": lambda: torch.nn.functional.linear(a, a), "matmul": lambda: a @ a}[kernel]
    _, t = time_it(f, repeats=repeats)  # (torch's CPU ops are synchronous: blocking on a tensor is a no-op)
    return 2 * n**3 / t / 1e9
