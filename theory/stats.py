"""Confidence intervals for the reported means (used by every experiment package, one implementation)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (fixed seed: same data, same interval); NaN for fewer than 2 values."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(v, (n_boot, v.size)).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
