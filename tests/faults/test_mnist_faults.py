"""Faults survived by `python -m mnist_mlp --preset tiny` (2 runs in chunks of 1, 1 epoch, 2,048 noise images; real
MNIST): SIGKILL at three seeded points and a full disk at a fourth, then --resume; corrupt and missing chunk files; NaN
in the teacher loss; two processes on one run folder. Each compares with one uninterrupted reference run (byte for
byte after removing timings)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from results import load_arrays, save_arrays
from tests.faults.helpers import ROOT, assert_clean, canonical, cli_env, kill_chain, run_cli


def command(d, data) -> list[str]:
    return ["mnist_mlp", "--preset", "tiny", "--out", f"{d}/runs", "--figures-dir", f"{d}/fig", "--resume",
            "--no-progress", "--data-dir", str(data), "--no-download"]


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


@pytest.fixture(scope="module")
def chain(ref, tmp_path_factory, mnist_root):
    """One folder taken through the chain of faults (``kill_chain``: SIGKILL during training, while a chunk is
    written, while the results or a figure are written; a full disk while another chunk is written), then resumed to
    the end."""
    ref_dir, ref_run = ref
    d = tmp_path_factory.mktemp("mnist_chain")
    middle = [w for w in ref_run.writes if "/teachers_" in w or "/students_" in w]
    last = [w for w in ref_run.writes if w.endswith("results.json") or w.startswith("fig/")]
    c = kill_chain(command(d, mnist_root), d, ref_run, middle=middle, last=last, enospc=True)
    print(f"mnist_mlp: {c}")
    return d, c


def assert_same(d, ref_dir) -> None:
    got, want = outputs(d), outputs(ref_dir)
    assert [p.relative_to(d) for p in got] == [p.relative_to(ref_dir) for p in want] and len(want) == 2
    for a, b in zip(got, want, strict=True):
        assert canonical(a) == canonical(b), f"{a} differs from the uninterrupted run's"


def copy_run(ref_dir, d):
    shutil.copytree(ref_dir / "runs", d / "runs")
    return next((d / "runs").iterdir())


def test_kills_at_seeded_points_then_resume_give_the_same_json(ref, chain):
    ref_dir, _ = ref
    d, c = chain
    assert c.kills == 3 and all(a.landed for a in c.attempts), str(c)
    assert_same(d, ref_dir)
    assert_clean(d)


def test_a_full_disk_fails_cleanly_and_the_folder_resumes(ref, chain):
    """The run stops on the full disk with one line naming the file; the file is not there, nor any temp file or
    figure; the chain's later runs resume from that folder to the uninterrupted run's numbers."""
    d, c = chain
    full = c.of("full disk")
    line = full.run.one_line_error()
    name = full.target.rsplit("/", 1)[-1]
    assert name in line and "No space left" in line and "rerun with --resume" in line, line
    assert full.target not in full.files_after and full.temps_after == [], (full.files_after, full.temps_after)
    assert not [f for f in full.files_after if f.startswith("fig/")], full.files_after
    assert_same(d, ref[0])


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
    procs = [subprocess.Popen([sys.executable, "-m", *command(tmp_path, mnist_root)], cwd=ROOT, env=cli_env(),
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
