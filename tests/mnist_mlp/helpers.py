"""Helpers shared by the mnist_mlp tests."""

from __future__ import annotations

import numpy as np

import theory


def assert_same_numbers(got: dict, want: dict):
    """Equal up to float32 rounding (XLA blocks a batch of runs differently by its size, as on 1 device against 4,
    or one cell against a stack of cells, so the sums round differently), and the same test-set counts exactly."""
    tol = theory.tolerances(np.float32)
    assert got.keys() == want.keys()
    for model, d in want.items():
        for key, v in d.items():
            a, b = np.asarray(v, float), np.asarray(got[model][key], float)
            if key == "accuracy":
                np.testing.assert_array_equal(np.round(b * 10_000), np.round(a * 10_000))  # correct answers
            else:
                np.testing.assert_allclose(b, a, rtol=tol.rtol, atol=tol.atol, err_msg=f"{model}.{key}")
