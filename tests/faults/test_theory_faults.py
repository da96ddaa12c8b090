"""Faults survived by `python -m theory` (3 one-layer MLPs, 8 cases each, on Gaussian and uniform inputs; each
architecture's part of the grid kept in the run folder): SIGKILL at three seeded points (while a part is computed,
while one is written, while the figure is written) then --resume gives the figure JSON of an uninterrupted run, byte
for byte after removing timings; a half-written part is a one-line error, a part made with other settings is
recomputed, and a second process on the same run folder refuses at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from results import load_arrays, save_arrays
from tests.faults.helpers import (
    ROOT,
    canonical,
    cli_env,
    run_cli,
    theory_command,
    theory_kills_then_resume,
    theory_reference,
)


def command(d) -> list[str]:
    return theory_command(d, "mlp1-tanh,mlp1-relu,mlp1-gelu", "gaussian,uniform")


def figure_json(d):
    [p] = (d / "fig").glob("*.json")
    return p


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("theory_ref")
    return d, theory_reference(d, command(d), parts=3)


def test_kills_at_seeded_points_then_resume_give_the_same_json(ref, tmp_path):
    ref_dir, ref_run = ref
    chain = theory_kills_then_resume(command(tmp_path), tmp_path, ref_dir, ref_run, "*.json")
    print(f"theory: {chain}")


def copy_parts(ref_dir, d):
    shutil.copytree(ref_dir / "runs", d / "runs")
    return next((d / "runs").iterdir())


def test_a_half_written_part_is_a_one_line_error(ref, tmp_path):
    run = copy_parts(ref[0], tmp_path)
    part = run / "mlp1-relu.npz"
    part.write_bytes(part.read_bytes()[:1000])
    line = run_cli(command(tmp_path), tmp_path).one_line_error()
    assert str(part) in line and "not a readable array file" in line and "delete it and rerun" in line, line


def test_a_part_made_with_other_settings_is_recomputed(ref, tmp_path):
    """A part stamped with another fingerprint (and other numbers) is computed again, never reused; the others are
    reused."""
    ref_dir, _ = ref
    run = copy_parts(ref_dir, tmp_path)
    part = run / "mlp1-relu.npz"
    arrays, meta = load_arrays(part)
    save_arrays(part, {k: np.zeros_like(v) for k, v in arrays.items()}, {**meta, "fingerprint": "0123456789"})
    r = run_cli(command(tmp_path), tmp_path)
    assert r.rc == 0, r.stderr[-3000:]
    assert [w for w in r.writes if w.endswith(".npz")] == [str(part.relative_to(tmp_path))], r.writes
    assert canonical(figure_json(tmp_path)) == canonical(figure_json(ref_dir))


def test_a_second_process_on_the_same_run_folder_refuses_at_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", *command(tmp_path)], cwd=ROOT, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    t0 = time.monotonic()
    while all(p.poll() is None for p in procs) and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    loser = next(p for p in procs if p.poll() is not None)
    err = loser.stderr.read()
    for p in procs:  # the winner need not finish: stop it (the kernel frees its lock)
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert loser.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert "is in use by another process (pid" in err and "runs/theory_projection_" in err, err[-3000:]
