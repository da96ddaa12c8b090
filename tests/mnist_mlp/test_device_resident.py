"""The training loops stay on the device (paper Section 6.2's protocol, ``mnist_mlp.train``): an epoch is one compiled
program whose inputs are already on the device, so no value goes from the host to the device implicitly, and the
number of programs the host starts per epoch is a small constant, whatever the number of batches."""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import tempfile
from collections import Counter

import jax
import numpy as np
import pytest

from mnist_mlp import experiment
from mnist_mlp.config import MATMUL_PRECISIONS, MnistConfig
from mnist_mlp.experiment import Experiment, train_student_stack

PAIRING = np.array([1, 0])  # run 0 imitates run 1's teacher and back: a derangement of 2


def small(root, **kw) -> MnistConfig:
    kw = {"runs": 2, "chunk_size": 2, "hidden": (32,), "epochs": 1, "n_noise": 2048, **kw}
    return MnistConfig(data_dir=str(root), **kw)


@pytest.mark.data
def test_an_epoch_of_teachers_and_students_makes_no_implicit_transfer(mnist_root, tmp_path):
    exp = Experiment(small(mnist_root), tmp_path, progress=False)
    runs = range(2)
    with jax.transfer_guard("disallow"):  # explicit device_put / device_get only
        teachers = exp.train_teachers(runs)
        (res,) = train_student_stack([exp], runs, teachers, PAIRING)
    assert isinstance(res, dict) and len(res["students"]["aux_same"]["accuracy"]) == 2


def executions(fn) -> int:
    """How many compiled programs ``fn`` runs (eager operations included: each is a program too), read from a
    profiler trace: XLA records one ExecutePrepare per program launch."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            jax.block_until_ready(fn())
        (path,) = glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True)
        events = json.load(gzip.open(path))["traceEvents"]
    names = Counter(e.get("name", "") for e in events if e.get("ph") == "X")
    n = sum(c for name, c in names.items() if name.endswith("::ExecutePrepare"))
    assert n > 0, "no ExecutePrepare event in the profile: the profiler's event names changed"
    return n


def phase_executions(root, tmp_path, **kw) -> tuple[int, int]:
    """(teacher phase, student phase) program launches, counted after a first run has compiled everything."""
    exp = Experiment(small(root, **kw), tmp_path, progress=False)
    runs = range(2)
    teachers = exp.train_teachers(runs)
    train_student_stack([exp], runs, teachers, PAIRING)  # compile
    return (executions(lambda: exp.train_teachers(runs)),
            executions(lambda: train_student_stack([exp], runs, teachers, PAIRING)[0]["students"]["aux_same"]
                       ["accuracy"]))


@pytest.mark.data
def test_programs_per_epoch_are_a_small_constant_whatever_the_number_of_batches(mnist_root, tmp_path):
    one = phase_executions(mnist_root, tmp_path, epochs=1)
    three = phase_executions(mnist_root, tmp_path, epochs=3)
    per_epoch = [(b - a) / 2 for a, b in zip(one, three, strict=True)]
    # an epoch: the epoch program and its epoch number's transfer; a loop over batches would add >= 59 (teachers) and
    # >= 2 per batch (students)
    print("program launches (teachers, students): 1 epoch", one, "3 epochs", three)
    assert all(0 < p <= 2 for p in per_epoch), (one, three)
    # 4x the batches (teachers: 59 -> 235 steps; students: 2 -> 8) launch the same programs
    assert phase_executions(mnist_root, tmp_path, epochs=1, batch_size=256) == one


def test_matmul_precision_is_in_the_fingerprint_and_highest_keeps_the_old_one():
    base = MnistConfig()
    assert dataclasses.replace(base, matmul_precision="highest").fingerprint() == base.fingerprint()
    fps = {MnistConfig(matmul_precision=p).fingerprint() for p in MATMUL_PRECISIONS}
    assert len(fps) == len(MATMUL_PRECISIONS)
    # teachers trained at another precision are other teachers
    assert MnistConfig(matmul_precision="bf16").teacher_fingerprint() != base.teacher_fingerprint()
    with pytest.raises(ValueError, match="choose one of highest, tf32, bf16"):
        MnistConfig(matmul_precision="fp8")


def test_automatic_chunks_hold_every_run_when_memory_allows_else_the_fewest_equal_chunks(monkeypatch):
    config = MnistConfig(runs=100)
    per_run = experiment.memory_per_run(config)
    # the paper's network, batch and noise set: about 100 MB per run
    assert 50e6 < per_run < 200e6
    monkeypatch.setattr(experiment, "device_memory_budget", lambda: 1000 * per_run)
    assert experiment.chunk_size(config) == 100 and len(experiment._chunks(config)) == 1
    monkeypatch.setattr(experiment, "device_memory_budget", lambda: 30 * per_run)
    assert [len(c) for c in experiment._chunks(config)] == [25, 25, 25, 25]  # 4 chunks of <= 30: equal, one shape
    monkeypatch.setattr(experiment, "device_memory_budget", lambda: 0)
    assert experiment.chunk_size(config) == 1
    assert experiment.chunk_size(dataclasses.replace(config, chunk_size=7)) == 7  # --chunk-size overrides
