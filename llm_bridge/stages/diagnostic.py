"""Stage 4a, the projection diagnostic (paper Lemma 1 / Theorem 1): geometry of the seed's saved student and control
adapters against the teacher's update, in LoRA and dW space, overall / per layer / per module, through ``theory``."""

from __future__ import annotations

from pathlib import Path

from llm_bridge.diagnostic import diagnose


def diagnostic(seed_dir: Path) -> dict:
    """The diagnostic of the adapters ``teacher``, ``student``, ``control`` and ``init`` under ``seed_dir``."""
    d = Path(seed_dir)
    return diagnose(d / "teacher", d / "student", d / "control", d / "init")
