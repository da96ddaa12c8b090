"""The shared results module: atomic writes, strict JSON, arrays with metadata, fingerprints, resumable run folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import results
from results import RunDir


def test_atomic_write_leaves_the_old_file_and_no_temp_on_failure(tmp_path):
    path = tmp_path / "sub" / "a.json"
    results.save_json(path, {"x": 1})

    def broken(f):
        f.write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash"):
        results.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"x": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~results.UMASK)


def test_json_is_strict_nan_becomes_null_and_numpy_becomes_python(tmp_path):
    obj = {"nan": float("nan"), "inf": np.float32(np.inf), "arr": np.arange(3), "i": np.int64(7), "b": np.bool_(True),
           "t": (1.5, np.float64(2.5)), 3: "key"}
    back = results.load_json(results.save_json(tmp_path / "x.json", obj))
    assert back == {"nan": None, "inf": None, "arr": [0, 1, 2], "i": 7, "b": True, "t": [1.5, 2.5], "3": "key"}
    compact = (tmp_path / "c.json")
    results.save_json(compact, obj, compact=True)
    assert "\n" not in compact.read_text() and results.load_json(compact) == back


def test_load_json_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; run the step that writes it"):
        results.load_json(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON.*delete it and rerun"):
        results.load_json(bad)


def test_arrays_round_trip_with_their_metadata(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "['params']['b']": np.array([1, 2], np.int32)}
    results.save_arrays(tmp_path / "a.npz", arrays, {"runs": [0, 2], "acc": np.float64(0.5)})
    back, meta = results.load_arrays(tmp_path / "a.npz")
    assert meta == {"runs": [0, 2], "acc": 0.5}
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


def test_fingerprint_depends_on_the_settings_not_their_order():
    a = results.fingerprint({"lr": 3e-4, "runs": 100})
    assert a == results.fingerprint({"runs": 100, "lr": 3e-4}) and len(a) == 10
    assert a != results.fingerprint({"lr": 3e-4, "runs": 101})
    assert len(results.fingerprint({"x": 1}, 12)) == 12
    # run folders and committed figure names carry fingerprints: the hash must stay sha256 of json.dumps' sorted text
    assert results.fingerprint({"b": "x", "a": [1, 2]}) == hashlib.sha256(b'{"a": [1, 2], "b": "x"}').hexdigest()[:10]


def test_run_dir_reuses_only_matching_artifacts_on_resume(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "stage.json"
    first = RunDir(tmp_path, "fp1").json(path, compute)
    assert first["value"] == 1 and first["fingerprint"] == "fp1" and first["seconds"] >= 0
    assert RunDir(tmp_path, "fp1", resume=False).json(path, compute)["value"] == 2  # no resume: recomputed
    assert RunDir(tmp_path, "fp1", resume=True).json(path, compute)["value"] == 2  # resumed: read back
    assert RunDir(tmp_path, "fp2", resume=True).json(path, compute)["value"] == 3  # other settings: recomputed
    extra = RunDir(tmp_path, "fp2", resume=True)
    assert extra.json(path, compute, fp="more")["value"] == 4 and extra.json(path, compute, fp="more")["value"] == 4
    path.write_text("{broken")
    assert not RunDir(tmp_path, "more", resume=True).fresh(path)  # a corrupt stamp is never reused
    assert len(calls) == 4


def test_array_store_reuses_only_parts_made_with_its_fingerprint(tmp_path):
    part = {"a/b": np.arange(3.0), "c": np.ones((2, 2), np.float32)}
    results.ArrayStore(tmp_path, "fp1").put("mlp1-relu_aux-ce", part)
    got = results.ArrayStore(tmp_path, "fp1").get("mlp1-relu_aux-ce")
    assert got is not None and sorted(got) == ["a/b", "c"] and got["c"].dtype == np.float32
    np.testing.assert_array_equal(got["a/b"], part["a/b"])
    assert results.ArrayStore(tmp_path, "fp2").get("mlp1-relu_aux-ce") is None  # other settings: computed again
    assert results.ArrayStore(tmp_path, "fp1", resume=False).get("mlp1-relu_aux-ce") is None
    assert results.ArrayStore(tmp_path, "fp1").get("cnn") is None
    with pytest.raises(ValueError, match="not a part's name"):
        results.ArrayStore(tmp_path, "fp1").path("../escape")
    (tmp_path / "cnn.npz").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(results.ResultsError, match="cnn.npz is not a readable array file"):
        results.ArrayStore(tmp_path, "fp1").get("cnn")


def test_atomic_dir_replaces_the_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "adapter"
    results.atomic_dir(target, lambda d: (d / "w.bin").write_bytes(b"1"))
    assert (target / "w.bin").read_bytes() == b"1"

    def broken(d):
        (d / "w.bin").write_bytes(b"2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        results.atomic_dir(target, broken)
    assert (target / "w.bin").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    results.atomic_dir(target, lambda d: (d / "other.bin").write_bytes(b"3"))
    assert [p.name for p in target.iterdir()] == ["other.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~results.UMASK)


def test_run_metadata():
    assert results.peak_rss_mb() > 10  # this Python process holds more than 10 MB
    env = results.environment(torch="2.x", device="cpu")
    assert env["torch"] == "2.x" and env["device"] == "cpu" and env["python"].count(".") == 2 and env["machine"]



FAULTS = """
import resource, sys
import results
if sys.argv[1] == "keep":
    assert results.keep_freed_memory()
import jax
import jax.numpy as jnp

@jax.jit
def step(w, x):  # a training step's shape: 8 stacked layers, their activations and gradients as fresh buffers
    h = jnp.tanh(jnp.einsum("rbi,rio->rbo", x, w))
    return w - 1e-3 * jnp.einsum("rbi,rbo->rio", x, h)

w, x = jnp.zeros((8, 784, 256)), jnp.ones((8, 512, 784))
w = step(w, x).block_until_ready()  # compiled, and the buffers allocated once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    w = step(w, x)
w.block_until_ready()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keep_freed_memory_reuses_xla_buffers_instead_of_faulting_them_in_again():
    """Fifty jitted steps after the first: by default glibc hands each step's large buffers back to the kernel and
    the next step faults them in again (tens of thousands of page faults); with the freed memory kept, the next step
    reuses them (glibc, as on Linux CI)."""
    import subprocess
    import sys

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
        return int(out.stdout.strip().splitlines()[-1])

    default, kept = faults("default"), faults("keep")
    assert default > 50 * 8 * 512 * 256 * 4 // 4096  # the premise: at least the activations faulted in every step
    assert kept < default / 5, (kept, default)
