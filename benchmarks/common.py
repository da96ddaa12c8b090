"""Helpers for the benchmark scripts: wall-clock timing after compilation, memory peak, CPU matmul peak."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from results import peak_rss_mb

__all__ = ["matmul_peak_gflops", "peak_rss_mb", "time_it"]


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
