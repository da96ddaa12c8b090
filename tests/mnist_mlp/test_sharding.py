"""The run axis over devices and processes: 2 local CPU processes (jax.distributed, coordinator on 127.0.0.1), each
with 4 CPU devices (``--xla_force_host_platform_device_count=4``) over which its chunk's runs are sharded (a 1-D Mesh
+ NamedSharding), give the numbers of one process on one device. One launch checks both (issue 16 asks for both in
CI in under 2 minutes; each launch costs mostly its imports and compilations)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import run
from tests.mnist_mlp.helpers import assert_same_numbers

pytestmark = pytest.mark.data
SMALL = dict(runs=8, chunk_size=4, hidden=(8,), n_noise=2048, epochs=1, batch_size=2048, eval_subset=256)
PROCESS = """
import json, sys
from mnist_mlp.config import MnistConfig
from mnist_mlp.experiment import Experiment, initialize_distributed, run
initialize_distributed(sys.argv[3], 2, int(sys.argv[4]))
import jax
cfg = MnistConfig(**json.loads(sys.argv[1]))
exp = Experiment(cfg, sys.argv[2], progress=False)
placed = exp.shard(exp.references(range(4)), 4)
devices = len(placed["Dense_0"]["kernel"].sharding.device_set)  # the chunk's runs really are spread out
res = run(cfg, sys.argv[2])  # progress bars name the chunks trained
print(json.dumps({"process": jax.process_index(), "local_devices": jax.local_device_count(), "spread_over": devices,
                  "results": res}))
"""


@pytest.fixture(scope="module")
def one_process(mnist_root, tmp_path_factory):
    """The run on one device in one process: what the sharded, multi-process run is compared with."""
    kw = {**SMALL, "data_dir": str(mnist_root)}
    return kw, run(MnistConfig(**kw), tmp_path_factory.mktemp("one"), progress=False)["per_run"]


def test_two_processes_of_four_devices_give_the_one_device_numbers(one_process, tmp_path):
    """Each process trains one of the 2 chunks, its 4 runs sharded over its 4 devices, and reads the other chunk from
    the shared folder; one run folder with one results.json comes out, every process returns that same result, and
    its numbers are the one-device run's."""
    kw, one = one_process
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, json.dumps(kw), str(tmp_path / "multi"),
                               f"127.0.0.1:{port}", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    got = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert sorted(g["process"] for g in got) == [0, 1]
    assert all(g["local_devices"] == g["spread_over"] == 4 for g in got)
    for g, (_, err) in zip(got, outs):  # each process trained its own chunk of runs and not the other's
        mine, other = ("0-3", "4-7")[::1 if g["process"] == 0 else -1]
        assert f"students {mine}" in err and f"students {other}" not in err
        assert f"teachers {mine}" in err and f"teachers {other}" not in err
    written = [d / "results.json" for d in (tmp_path / "multi").iterdir()]
    assert len(written) == 1
    written = json.loads(written[0].read_text())
    for g in got:
        assert g["results"]["per_run"] == written["per_run"]
    assert_same_numbers(written["per_run"], json.loads(json.dumps(one)))
