"""The run axis sharded over devices (JAX's 1-D Mesh + NamedSharding): 4 CPU devices give the 1-device numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import theory
from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import run

pytestmark = pytest.mark.data
SMALL = dict(runs=8, chunk_size=4, hidden=(8,), n_noise=2048, epochs=1, batch_size=2048, eval_subset=256)
CHILD = """
import json, sys
import jax
from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import Experiment, run
cfg = MnistConfig(**json.loads(sys.argv[1]))
assert jax.local_device_count() == 4
exp = Experiment(cfg, sys.argv[2], progress=False)
placed = exp.shard(exp.references(range(4)), 4)
assert len(placed["Dense_0"]["kernel"].sharding.device_set) == 4  # the runs really are spread out
json.dump(run(cfg, sys.argv[2], progress=False)["per_run"], open(sys.argv[3], "w"))
"""


@pytest.fixture(scope="module")
def one_process(mnist_root, tmp_path_factory):
    """The run on one device in one process: what both tests compare with."""
    kw = {**SMALL, "data_dir": str(mnist_root)}
    return kw, run(MnistConfig(**kw), tmp_path_factory.mktemp("one"), progress=False)["per_run"]


def test_four_devices_give_the_one_device_numbers(one_process, tmp_path):
    """Each device trains its own runs: the same numbers as one device, up to float32 rounding (XLA blocks a batch of
    1 run differently from a batch of 4, so the sums round differently), and the same test-set counts."""
    kw, one = one_process
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw), str(tmp_path / "four"), str(tmp_path / "four.json")],
                   env=env, check=True, capture_output=True)
    four = json.loads((tmp_path / "four.json").read_text())
    tol = theory.tolerances(np.float32)
    assert four.keys() == one.keys()
    for model, d in one.items():
        for key, v in d.items():
            a, b = np.asarray(v, float), np.asarray(four[model][key], float)
            if key == "accuracy":
                np.testing.assert_array_equal(np.round(a * 10_000), np.round(b * 10_000))  # correct answers
            else:
                np.testing.assert_allclose(b, a, rtol=tol.rtol, atol=tol.atol, err_msg=f"{model}.{key}")


PROCESS = """
import json, sys
from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import initialize_distributed, run
initialize_distributed(sys.argv[3], 2, int(sys.argv[4]))
import jax
res = run(MnistConfig(**json.loads(sys.argv[1])), sys.argv[2])  # progress bars name the chunks trained
print(json.dumps({"process": jax.process_index(), "results": res}))
"""


def test_two_processes_split_the_chunks_and_give_the_one_process_result(one_process, tmp_path):
    """jax.distributed with 2 local CPU processes (coordinator on 127.0.0.1): each trains one of the 2 chunks, reads
    the other's from the shared folder, and process 0 writes one results.json; its numbers are the one-process
    run's bit for bit (each chunk is the same program on the same runs)."""
    import socket

    kw, one = one_process
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, json.dumps(kw), str(tmp_path / "multi"),
                               f"127.0.0.1:{port}", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    got = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert sorted(g["process"] for g in got) == [0, 1]
    for g, (_, err) in zip(got, outs):  # each process trained its own chunk of runs and not the other's
        mine, other = ("0-3", "4-7")[::1 if g["process"] == 0 else -1]
        assert f"students {mine}" in err and f"students {other}" not in err
        assert f"teachers {mine}" in err and f"teachers {other}" not in err
    written = json.loads((next((tmp_path / "multi").iterdir()) / "results.json").read_text())
    for res in (written, *(g["results"] for g in got)):
        assert res["per_run"] == json.loads(json.dumps(one))
