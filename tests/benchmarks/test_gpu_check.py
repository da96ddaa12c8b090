"""``benchmarks/gpu_check.sh`` (ours against the authors' approach on one accelerator, paper Section 6.2's protocol)
runs end to end with ``--device cpu`` at tiny sizes, from the checkout, and writes its JSON where it is told."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, **kw)


@pytest.mark.data
def test_gpu_check_runs_on_cpu_and_writes_its_json(mnist_root, tmp_path):
    p = gpu_check("--device", "cpu", "--runs", "2", "--epochs", "1", "--n-noise", "1024", "--precisions", "highest",
                  "--data-dir", str(mnist_root), "--out", str(tmp_path), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    (ours,), (torch_,) = rec["results"]["ours"], rec["results"]["torch"]
    assert "error" not in ours and "error" not in torch_ and "error" not in rec["results"]["peak"]
    assert ours["chunk_size"] == 2 and ours["backend"] == "cpu" and torch_["device"] == "cpu"
    assert set(ours["accuracy"]) == {"reference", "teacher", "aux_same", "all_same", "aux_other", "all_other"}
    s = rec["summary"]
    assert s["torch_online_over_ours_highest"] == pytest.approx(torch_["wall_s"] / ours["wall_s"])
    assert 0 < s["ours_highest"]["fraction_of_peak"] and s["ours_highest"]["gpu_util_pct"] is None  # no nvidia-smi
    assert "torch_online / ours_highest" in p.stdout


def test_gpu_check_rejects_bad_input_in_one_line(tmp_path):
    p = gpu_check("--runs", "1", "--out", str(tmp_path), timeout=120)
    assert p.returncode == 2 and "runs >= 2" in p.stderr and "Traceback" not in p.stderr
    p = gpu_check("--precisions", "highest,fp8", "--out", str(tmp_path), timeout=120)
    assert p.returncode == 2 and "fp8" in p.stderr and "Traceback" not in p.stderr
