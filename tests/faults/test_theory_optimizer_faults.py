"""Faults survived by `python -m theory --optimizers` (the optimizer axis of the theory grid, at its smallest through
the CLI: one one-layer MLP, the four imitation losses, Gaussian inputs, one case each; each architecture and loss's
part kept in the run folder): SIGKILL at three seeded points (while a part is computed, while one is written, while
the figure is written) then --resume gives the figure JSON of an uninterrupted run, byte for byte after removing
timings, and leaves no temp file. Apart from ``test_theory_faults.py`` so that the two files' compilations run side
by side under ``pytest -n 2 --dist loadfile``."""

from __future__ import annotations

import pytest

from tests.faults.helpers import theory_command, theory_kills_then_resume, theory_reference


def command(d) -> list[str]:
    return theory_command(d, "mlp1-tanh", "gaussian", "--optimizers")


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("optimizers_ref")
    r = theory_reference(d, command(d), parts=4)  # one per loss
    assert all("theory_optimizers_" in w for w in r.writes if w.endswith(".npz")), r.writes
    return d, r


def test_kills_at_seeded_points_then_resume_give_the_same_json(ref, tmp_path):
    ref_dir, ref_run = ref
    chain = theory_kills_then_resume(command(tmp_path), tmp_path, ref_dir, ref_run, "theory_optimizers_*.json")
    print(f"theory --optimizers: {chain}")
    resumed = [w for w in chain.final.writes if w.endswith(".npz")]
    assert len(resumed) < 4, chain.final.writes  # the last run computed only the parts the killed ones had not kept
