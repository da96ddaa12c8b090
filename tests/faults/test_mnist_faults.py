"""Faults survived by `python -m mnist_mlp` (2 runs, 1 epoch, chunks of 1 run; real MNIST): SIGKILL at three seeded
points then --resume, corrupt and missing chunk files, a full disk, NaN in the teacher loss, two processes on one
run folder. Each compares with one uninterrupted reference run (byte for byte after removing timings)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from results import load_arrays, save_arrays
from tests.faults.helpers import ROOT, assert_clean, canonical, kill_chain, run_cli


def command(d, data) -> list[str]:
    return ["mnist_mlp", "--runs", "2", "--epochs", "1", "--chunk-size", "1", "--out", f"{d}/runs", "--figures-dir",
            f"{d}/fig", "--resume", "--no-progress", "--data-dir", str(data), "--no-download"]


def outputs(d) -> list:
    """The run's results.json and the figure's JSON."""
    return sorted((d / "runs").glob("*/results.json")) + sorted((d / "fig").glob("*.json"))


@pytest.fixture(scope="module")
def ref(tmp_path_factory, mnist_root):
    """One uninterrupted run: its folder and its Run (writes, wall time)."""
    d = tmp_path_factory.mktemp("mnist_ref")
    r = run_cli(command(d, mnist_root), d)
    assert r.rc == 0, r.stderr[-3000:]
    return d, r


def assert_same(d, ref_dir) -> None:
    got, want = outputs(d), outputs(ref_dir)
    assert [p.relative_to(d) for p in got] == [p.relative_to(ref_dir) for p in want] and len(want) == 2
    for a, b in zip(got, want, strict=True):
        assert canonical(a) == canonical(b), f"{a} differs from the uninterrupted run's"


def copy_run(ref_dir, d):
    shutil.copytree(ref_dir / "runs", d / "runs")
    return next((d / "runs").iterdir())


def test_kill_at_three_points_then_resume_gives_the_same_json(ref, tmp_path, mnist_root):
    ref_dir, ref_run = ref
    middle = [w for w in ref_run.writes if "/teachers_" in w or "/students_" in w]
    last = [w for w in ref_run.writes if w.endswith("results.json") or w.startswith("fig/")]
    chain = kill_chain(command(tmp_path, mnist_root), tmp_path, ref_run, middle=middle, last=last)
    print(f"mnist_mlp: {chain.attempts}")
    assert chain.kills >= 2, chain.attempts  # the two write kills always land; the timed one may come too late
    assert_same(tmp_path, ref_dir)
    assert_clean(tmp_path)


def test_full_disk_fails_cleanly_and_a_rerun_completes(ref, tmp_path, mnist_root):
    ref_dir, _ = ref
    r = run_cli(command(tmp_path, mnist_root), tmp_path, faults="enospc:*/students_001.json")
    line = r.one_line_error()
    assert "students_001.json" in line and "No space left" in line and "rerun with --resume" in line, line
    run = next((tmp_path / "runs").iterdir())
    assert not (run / "students_001.json").exists() and (run / "students_000.json").exists()
    assert not list((tmp_path / "fig").glob("*.json")) if (tmp_path / "fig").exists() else True
    assert_clean(tmp_path)
    again = run_cli(command(tmp_path, mnist_root), tmp_path)
    assert again.rc == 0, again.stderr[-3000:]
    assert_same(tmp_path, ref_dir)


def test_nan_in_the_teacher_loss_stops_the_run_naming_step_seed_and_quantity(tmp_path, mnist_root):
    r = run_cli(command(tmp_path, mnist_root), tmp_path, faults="nan-image:0")
    line = r.one_line_error()
    assert "teacher loss is nan at step" in line and "of run 0 (seed 0)" in line, line
    assert not [w for w in r.writes if w.endswith((".json", ".npz", ".png"))], r.writes  # nothing written
    assert not list(tmp_path.rglob("*.json"))


def test_a_half_written_or_misshapen_chunk_is_a_one_line_error(ref, tmp_path, mnist_root):
    ref_dir, _ = ref
    run = copy_run(ref_dir, tmp_path)
    students = run / "students_001.json"
    text = students.read_bytes()
    students.write_bytes(text[:len(text) // 2])
    line = run_cli(command(tmp_path, mnist_root), tmp_path).one_line_error()
    assert str(students) in line and "not valid JSON" in line and "delete it and rerun" in line, line
    students.write_bytes(text)

    teachers = run / "teachers_001.npz"
    arrays, meta = load_arrays(teachers)
    save_arrays(teachers, {k: np.zeros((v.shape[0] + 1, *v.shape[1:]), v.dtype) for k, v in arrays.items()}, meta)
    line = run_cli(command(tmp_path, mnist_root), tmp_path).one_line_error()
    assert str(teachers) in line and "does not hold these runs' parameters" in line and "delete it" in line, line
    teachers.write_bytes(b"PK\x03\x04 half a zip")
    line = run_cli(command(tmp_path, mnist_root), tmp_path).one_line_error()
    assert str(teachers) in line and "not a readable array file" in line, line


def test_a_wrong_fingerprint_and_a_missing_teacher_are_recomputed(ref, tmp_path, mnist_root):
    """A chunk made with other settings (another fingerprint, other numbers) is retrained, never reused; a deleted
    teacher chunk is retrained to the same numbers."""
    ref_dir, _ = ref
    run = copy_run(ref_dir, tmp_path)
    students = run / "students_001.json"
    wrong = json.loads(students.read_text())
    wrong["fingerprint"] = "0123456789ab"
    for d in wrong["students"].values():
        d["accuracy"] = [0.5 for _ in d["accuracy"]]
    students.write_text(json.dumps(wrong))
    (run / "teachers_000.npz").unlink()
    r = run_cli(command(tmp_path, mnist_root), tmp_path)
    assert r.rc == 0, r.stderr[-3000:]
    assert any(w.endswith("teachers_000.npz") for w in r.writes) and any(w.endswith("students_001.json")
                                                                         for w in r.writes)
    assert_same(tmp_path, ref_dir)


def test_a_second_process_on_the_same_run_folder_refuses_at_once(tmp_path, mnist_root):
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
           "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", *command(tmp_path, mnist_root)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    t0 = time.monotonic()
    while all(p.poll() is None for p in procs) and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    done = [p for p in procs if p.poll() is not None]
    assert len(done) >= 1
    loser = done[0]
    err = loser.stderr.read()
    for p in procs:  # the winner need not finish: stop it (the kernel frees its lock)
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert loser.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "is in use by another process (pid" in err and "runs/mnist_" in err, err[-3000:]
