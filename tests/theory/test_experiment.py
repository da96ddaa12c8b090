"""The grid driver behind ``python -m theory`` and its figure."""

import json
import subprocess
import sys

import numpy as np
import pytest

from figures import theory_projection
from theory.experiment import TheoryConfig, arch_from_name, pooled_slope, run, table_rows

TINY = dict(archs=("mlp1-tanh",), losses=("ce", "aux-se"), inputs=("gaussian",), seeds_per_combo=2,
            eps=(1e-6, 1e-5, 1e-4, 1.0))


def test_tiny_grid_meets_the_acceptance_numbers(tmp_path):
    config = TheoryConfig(**TINY)
    jp, png, data = theory_projection.main(config, tmp_path, progress=False)
    s = data["summary"]
    assert s["n_cases"] == 4 and s["n_checks"] == 8
    assert s["lemma1_fraction_nonnegative_shared"] == 1.0
    assert abs(s["first_order_error_slope"]["pooled"] - 1.0) <= 0.1
    assert s["theorem1_teacher_loss_falls_where_positive"] == 1.0
    assert 0.0 <= s["other_init_fraction_negative"] <= 1.0
    assert png.exists() and png.stat().st_size > 10_000
    assert json.loads(jp.read_text())["summary"] == s  # the PNG was drawn from this JSON
    rows = table_rows(data)
    assert rows[1].startswith("mlp1-tanh") and any("Theorem 1" in r for r in rows)


def test_same_seed_same_numbers():
    a = run(TheoryConfig(**TINY), progress=False)
    b = run(TheoryConfig(**TINY), progress=False)
    assert a["curves"] == b["curves"]
    c = run(TheoryConfig(**{**TINY, "seed": 1}), progress=False)
    assert a["curves"]["lemma_shared"]["inner_E"] != c["curves"]["lemma_shared"]["inner_E"]


def test_pooled_slope_recovers_a_planted_rate():
    eps = np.logspace(-6, -4, 5)
    err = np.stack([3.0 * eps**1.0, 0.01 * eps**1.0, 7.0 * eps**2.0])
    mask = np.ones_like(err, bool)
    assert pooled_slope(eps, err[:2], mask[:2]) == pytest.approx(1.0)
    assert pooled_slope(eps, err, mask) == pytest.approx(4 / 3)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture 'mlp9-swish'"):
        arch_from_name("mlp9-swish")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        TheoryConfig(losses=("hinge",)).validate()
    with pytest.raises(ValueError, match="no eps <= small_eps_max"):
        TheoryConfig(eps=(1.0,)).validate()


def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "theory", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--quick", "--json", "--out", "--seed", "--dtype"):
        assert flag in out.stdout
