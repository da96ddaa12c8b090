"""End to end on REAL MNIST (skipped offline, required in CI): the quick preset and resumability."""

import json
import subprocess
import sys

import numpy as np
import pytest

from figures import mnist_fig10
from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import run

pytestmark = pytest.mark.data  # run with --dist loadfile: one worker computes the shared quick run


def strip_timings(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("timings", "versions")}


@pytest.fixture(scope="session")  # session: xdist may interleave other modules between these tests
def quick(mnist_root, tmp_path_factory):
    figs = tmp_path_factory.mktemp("figs")
    config = MnistConfig.quick(data_dir=str(mnist_root))
    jp, png, data = mnist_fig10.main(config, figs, runs_dir=tmp_path_factory.mktemp("runs"), resume=False,
                                     progress=False)
    return config, jp, png, data


def test_quick_preset_reproduces_subliminal_learning(quick):
    _, jp, png, data = quick
    acc = {m: np.asarray(d["accuracy"]) for m, d in data["per_run"].items()}
    assert acc["teacher"].min() > 0.90
    assert acc["reference"].max() < 0.2
    # the paper's effect: the shared-init aux-only student learns digits from noise, the cross-model one does not
    assert acc["aux_same"].mean() > acc["aux_other"].mean() + 0.2
    assert acc["aux_same"].min() > acc["aux_other"].max()
    # Lemma 1 at the first step: shared init -> positive cosine with the teacher's update, in every run
    assert min(data["per_run"]["aux_same"]["first_step_gradient_cos"]) > 0
    assert np.mean(data["per_run"]["aux_same"]["total_update_cos"]) > \
        np.mean(np.abs(data["per_run"]["aux_other"]["total_update_cos"]))
    pairing = np.asarray(data["pairing"])
    assert not np.any(pairing == np.arange(len(pairing)))
    assert png.exists() and png.stat().st_size > 20_000
    assert json.loads(jp.read_text())["summary"] == data["summary"]


def test_same_seed_same_numbers(quick, tmp_path):
    config, _, _, data = quick
    again = run(config, tmp_path, progress=False)
    assert json.loads(json.dumps(strip_timings(again))) == strip_timings(data)


def test_resume_skips_finished_chunks(mnist_root, tmp_path):
    config = MnistConfig(runs=2, chunk_size=1, epochs=1, n_noise=2048, data_dir=str(mnist_root))
    first = run(config, tmp_path, progress=False)
    d = next(tmp_path.iterdir())
    done = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    (d / "students_001.json").unlink()  # as if interrupted during the last chunk
    (d / "results.json").unlink()
    second = run(config, tmp_path, resume=True, progress=False)
    for name in ("teachers_000.npz", "teachers_001.npz", "students_000.json"):
        assert (d / name).stat().st_mtime_ns == done[name], f"{name} was recomputed"
    roundtrip = lambda r: json.loads(json.dumps(strip_timings(r)))
    assert roundtrip(second) == roundtrip(first)


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "mnist_mlp", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--preset", "--runs", "--out", "--resume"):
        assert flag in out.stdout
