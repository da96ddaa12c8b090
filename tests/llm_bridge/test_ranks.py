"""The LLM grids split over processes (llm_bridge.ranks): 2 local CPU processes launched by torchrun (gloo) on the tiny
model each train their share of the ladder's students and of the study's seeds, and rank 0's merged ladder.json and
study.json equal a single process's, number for number; the rank arithmetic and the merge's checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_bridge import ladder, study
from llm_bridge.config import LadderConfig, StudyConfig
from llm_bridge.ranks import Ranks, collect

ROOT = Path(__file__).resolve().parents[2]
# 2 seeds, one rung, 3 arms, a perturbed base and the mismatched null on one seed: 8 students, both kinds of cell
LADDER = dict(rungs=("digits",), extra_rungs=("digits",), sigmas=(0.1,))
# the smallest study: one cell, one seed per rank
STUDY = dict(strengths=(4,), sizes=(3,), main_size=3)
CHILD = f"""
import sys
import torch
torch.set_num_threads(1)  # as the test process (conftest): the same float sums, the same numbers
from llm_bridge import ladder, study
from llm_bridge.config import LadderConfig, StudyConfig
out = sys.argv[1]
ladder.run(LadderConfig.tiny(**{LADDER!r}), out + "/ladder", progress=False)
study.run(StudyConfig.tiny(**{STUDY!r}), out + "/study", progress=False)
"""


def without_timings(obj):
    """``obj`` without what differs between two runs of the same numbers: wall times and per-artifact seconds."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in ("timings", "seconds")}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The ladder, then the study, run by 2 processes under torchrun; their output folder."""
    out = tmp_path_factory.mktemp("two_ranks")
    script = out / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), str(out)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return out


def test_two_ranks_ladder_equals_one_process(two_ranks, tmp_path):
    """Each rank trained every other student of the plan (rank 0 also the teachers and targets, and the merge), and
    the merged ladder.json equals one process's in every number: the tiny model on one CPU thread is deterministic."""
    c = LadderConfig.tiny(**LADDER)
    merged = json.loads((two_ranks / "ladder" / "ladder.json").read_text())
    ladder.run(c, tmp_path, progress=False, ranks=Ranks())
    one = json.loads((tmp_path / "ladder.json").read_text())
    assert without_timings(merged) == without_timings(one)
    plan = [(x["inputs"], x["rung"], x["arm"], x["seed"]) for x in merged["cells"]]  # in plan order
    assert len(plan) == len(set(plan)) == 8
    shares = merged["timings"]["ranks"]
    assert [(s["rank"], s["world"], s["cells"]) for s in shares] == [(0, 2, [0, 2, 4, 6]), (1, 2, [1, 3, 5, 7])]
    assert all(s["students_s"] > 0 for s in shares) and "ranks" not in one["timings"]
    for kind, rung, arm, seed in plan:  # every student's adapter, beside its cell
        d = two_ranks / "ladder" / "students" / kind / rung / arm / f"seed{seed}"
        assert (d / "cell.json").exists() and (d / "adapter_model.safetensors").exists()


def test_two_ranks_study_equals_one_process(two_ranks, tmp_path):
    """One seed per rank, the base's trait on rank 0; the merged study.json equals one process's."""
    c = StudyConfig.tiny(**STUDY)
    merged = json.loads((two_ranks / "study" / "study.json").read_text())
    study.run(c, tmp_path, progress=False, ranks=Ranks())
    one = json.loads((tmp_path / "study.json").read_text())
    assert without_timings(merged) == without_timings(one)
    assert [(s["rank"], s["seeds"]) for s in merged["timings"]["ranks"]] == [(0, [0]), (1, [1])]


def test_each_rank_takes_every_worlds_item():
    items = list(range(10))
    shares = [Ranks(r, 3).share(items) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(shares, [])) == items  # a partition: every item once
    assert [Ranks(r, 3).mine(7) for r in range(3)] == [False, True, False]
    assert Ranks().share(items) == items and Ranks().main and not Ranks(2, 3).main
    Ranks().barrier()  # one process: nothing to wait for
    with pytest.raises(ValueError, match="rank must be in"):
        Ranks(3, 3)


def test_without_torchrun_one_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert Ranks.from_env() == Ranks(0, 1)


def test_merge_refuses_a_missing_or_foreign_cell(tmp_path):
    from results import save_json

    with pytest.raises(RuntimeError, match="rank 1's student: .* is missing; do all ranks see one output folder"):
        collect(tmp_path / "cell.json", "abc", what="rank 1's student")
    save_json(tmp_path / "cell.json", {"fingerprint": "xyz", "p": 1})
    with pytest.raises(RuntimeError, match="fingerprint 'xyz', this run 'abc'"):
        collect(tmp_path / "cell.json", "abc", what="rank 1's student")
    assert collect(tmp_path / "cell.json", "xyz", what="rank 1's student") == {"fingerprint": "xyz", "p": 1}
