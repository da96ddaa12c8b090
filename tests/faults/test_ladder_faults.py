"""Faults survived by `python -m llm_bridge ladder --preset tiny` (the tiny Llama, with a record): SIGKILL at five
points (during training; a student, a seal or a record copy drawn from the seed; a student's cell and a seal's
record copy; the final JSON or figure) then --resume, corrupt and missing artifacts, two processes on one folder.
The final ladder.json, the figure's JSON and every record file equal an uninterrupted run's to the float32
tolerances of ``theory.tolerances`` (timings removed)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.faults.helpers import ROOT, assert_clean, cli_env, kill_chain, run_cli, strip_timings
from theory import tolerances

TOL = tolerances(np.float32)


def command(d) -> list[str]:
    return ["llm_bridge", "ladder", "--preset", "tiny", "--out", f"{d}/out", "--figures-dir", f"{d}/fig",
            "--teachers-dir", f"{d}/teachers", "--record", f"{d}/record", "--resume", "--no-progress"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("ladder_ref")
    r = run_cli(command(d), d)
    assert r.rc == 0, r.stderr[-3000:]
    return d, r


def close(a, b, where: str = "") -> None:
    """JSON values equal up to TOL (numbers), exactly (the rest)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            close(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=TOL.rtol, abs_tol=TOL.atol), \
            f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def results_of(d) -> dict:
    """Every final and record JSON of a run folder, by relative path, timings removed. The teachers' sketch keeps,
    after a resume, how far the teachers made then lie from the first ones ("agreement"): rounding, here 0."""
    files = [d / "out" / "ladder.json", *sorted((d / "fig").glob("*.json")), *sorted((d / "record").rglob("*.json"))]
    out = {str(p.relative_to(d)): strip_timings(json.loads(p.read_text())) for p in files}
    for k, v in out.items():
        if k.endswith("teachers.json"):
            assert all(rel <= TOL.rtol for rel in v.pop("agreement").values()), v
    return out


def assert_same(d, ref_dir) -> None:
    got, want = results_of(d), results_of(ref_dir)
    assert sorted(got) == sorted(want)
    close(got, want)


# a student's cell, and a seal's record copy: a run killed while writing them left the record without them (fixed)
FIXED = ("out/students/random/digits/student/seed0/cell.json", "record/geometry/random/full/seed1.json")


def test_kills_at_seeded_points_then_resume_give_the_same_json(ref, tmp_path):
    """SIGKILL during training, halfway through a student, seal or record write drawn from the seed, through the
    two FIXED writes, and through the final JSON or figure; the resumed run's record holds every student and seal
    as the uninterrupted run's."""
    ref_dir, ref_run = ref
    middle = [w for w in ref_run.writes if w.startswith(("out/students/", "out/geometry/", "out/first_step/",
                                                          "record/"))]
    last = [w for w in ref_run.writes if w in ("out/ladder.json",) or w.startswith("fig/")]
    chain = kill_chain(command(tmp_path), tmp_path, ref_run, middle=middle, last=last, fixed=FIXED)
    print(f"ladder: {chain}")
    assert chain.kills == 5 and all(a.landed for a in chain.attempts), str(chain)
    assert_same(tmp_path, ref_dir)
    assert_clean(tmp_path)


def test_corrupt_stale_and_missing_artifacts_are_recomputed(ref, tmp_path):
    """A half-written seal, a student cell with another fingerprint (and other numbers) and a deleted teacher are
    recomputed, to the uninterrupted run's numbers; none is reused."""
    ref_dir, _ = ref
    for part in ("out", "teachers", "record"):
        shutil.copytree(ref_dir / part, tmp_path / part)
    seal = tmp_path / "out/geometry/random/digits/seed0.json"
    seal.write_bytes(seal.read_bytes()[:100])
    cell = tmp_path / "out/students/random/full/student/seed1/cell.json"
    wrong = json.loads(cell.read_text())
    wrong.update(fingerprint="0123456789", loss_last=123.0)
    cell.write_text(json.dumps(wrong))
    shutil.rmtree(next((tmp_path / "teachers/owl/seed0").glob("teacher_k*")))
    r = run_cli(command(tmp_path), tmp_path)
    assert r.rc == 0, r.stderr[-3000:]
    redone = {"out/geometry/random/digits/seed0.json", "out/students/random/full/student/seed1/cell.json"}
    assert redone <= set(r.writes), r.writes
    assert_same(tmp_path, ref_dir)


def test_a_half_written_record_file_is_a_one_line_error(ref, tmp_path):
    ref_dir, _ = ref
    for part in ("out", "teachers", "record"):
        shutil.copytree(ref_dir / part, tmp_path / part)
    bad = tmp_path / "out/teachers.json"
    bad.write_bytes(bad.read_bytes()[:50])
    line = run_cli(command(tmp_path), tmp_path).one_line_error()
    assert str(bad) in line and "not valid JSON" in line and "delete it and rerun" in line, line


def test_a_second_process_on_the_same_folders_refuses_at_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", *command(tmp_path)], cwd=ROOT, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    t0 = time.monotonic()
    while all(p.poll() is None for p in procs) and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    loser = next(p for p in procs if p.poll() is not None)
    err = loser.stderr.read()
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert loser.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "is in use by another process (pid" in err, err[-3000:]
