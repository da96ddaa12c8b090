"""The one table of numerical tolerances, keyed by dtype (used by the tests and by ``python -m theory``)."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class Tolerances:
    rtol: float  # two exact computations of the same quantity (matrix-free vs explicit Jacobian)
    atol: float  # absolute floor for quantities that should vanish (e.g. M @ null vector)
    fd_rtol: float  # autodiff vs central finite differences (truncation error O(h^2) + roundoff / h)
    fd_step: float  # finite-difference step h
    roundoff: float  # relative size of rounding noise in one gradient evaluation (about 100 ulp)
    trajectory_rtol: float  # ||a - b|| / ||a - init||: two implementations after a few optimizer steps


TOLERANCES = {
    np.dtype("float64"): Tolerances(rtol=1e-9, atol=1e-12, fd_rtol=1e-6, fd_step=1e-5, roundoff=2e-14,
                                    trajectory_rtol=1e-8),
    np.dtype("float32"): Tolerances(rtol=1e-4, atol=1e-6, fd_rtol=3e-2, fd_step=3e-3, roundoff=1e-5,
                                    trajectory_rtol=1e-3),
    # bfloat16 keeps 8 significand bits (unit roundoff 2^-8 = 3.9e-3): rtol is ~2.5 roundoffs, for a float32
    # quantity (a loss) computed from bf16 matmuls with float32 accumulation (the LLM's opt-in autocast)
    np.dtype(ml_dtypes.bfloat16): Tolerances(rtol=1e-2, atol=1e-3, fd_rtol=3e-1, fd_step=1e-1, roundoff=4e-3,
                                             trajectory_rtol=1e-1),
}


def tolerances(dtype) -> Tolerances:
    dtype = np.dtype(dtype)
    if dtype not in TOLERANCES:
        raise ValueError(f"no tolerances for dtype {dtype}; known: {', '.join(map(str, TOLERANCES))}")
    return TOLERANCES[dtype]
