"""Shared fixtures: float64 + strict dtype promotion for the math, and the real MNIST and Fashion-MNIST locations."""

from __future__ import annotations

import jax
import pytest

from tests.real_data import unavailable


@pytest.fixture
def x64():
    """float64 and strict promotion (an accidental float32/float64 mix raises instead of silently rounding)."""
    with jax.enable_x64(True), jax.numpy_dtype_promotion("strict"):
        yield


def _real_root(dataset: str, msg: str):
    from mnist_mlp.data import resolve_test_data_dir

    root = resolve_test_data_dir(dataset=dataset)
    if root is None:
        unavailable(msg)
    return root


@pytest.fixture(scope="session")
def mnist_root():
    """Root folder with real MNIST in torchvision's layout. Skips offline; fails in CI (SUBLIMINAL_REQUIRE_DATA=1)."""
    return _real_root("mnist", "real MNIST not found: set SUBLIMINAL_DATA_DIR to a torchvision MNIST root, or "
                      "SUBLIMINAL_MNIST_GZ to a folder with the four original .gz files")


@pytest.fixture(scope="session")
def fashion_root():
    """Root folder with real Fashion-MNIST in torchvision's layout (``<root>/FashionMNIST/raw``). Skips offline; fails
    in CI (SUBLIMINAL_REQUIRE_DATA=1)."""
    return _real_root("fashion", "real Fashion-MNIST not found: set SUBLIMINAL_DATA_DIR to a torchvision root holding "
                      "FashionMNIST/raw, or SUBLIMINAL_FASHION_GZ to a folder with the four original Fashion-MNIST "
                      ".gz files")
