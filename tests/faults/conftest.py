"""The fault suite's subprocesses share one JAX compilation cache per test session (``helpers.cli_env``)."""

from __future__ import annotations

import pytest

from tests.faults.helpers import JAX_CACHE


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    JAX_CACHE["dir"] = tmp_path_factory.mktemp("jax_cache")
    yield
    JAX_CACHE["dir"] = None
