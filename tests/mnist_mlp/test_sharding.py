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
SMALL = dict(runs=4, chunk_size=4, hidden=(8,), n_noise=2048, epochs=1, batch_size=2048, eval_subset=256)
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


def test_four_devices_give_the_one_device_numbers(mnist_root, tmp_path):
    """Each device trains its own runs: the same numbers as one device, up to float32 rounding (XLA blocks a batch of
    1 run differently from a batch of 4, so the sums round differently), and the same test-set counts."""
    kw = {**SMALL, "data_dir": str(mnist_root)}
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw), str(tmp_path / "four"), str(tmp_path / "four.json")],
                   env=env, check=True, capture_output=True)
    four = json.loads((tmp_path / "four.json").read_text())
    one = run(MnistConfig(**kw), tmp_path / "one", progress=False)["per_run"]
    tol = theory.tolerances(np.float32)
    assert four.keys() == one.keys()
    for model, d in one.items():
        for key, v in d.items():
            a, b = np.asarray(v, float), np.asarray(four[model][key], float)
            if key == "accuracy":
                np.testing.assert_array_equal(np.round(a * 10_000), np.round(b * 10_000))  # correct answers
            else:
                np.testing.assert_allclose(b, a, rtol=tol.rtol, atol=tol.atol, err_msg=f"{model}.{key}")
