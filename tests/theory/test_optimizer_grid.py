"""The optimizer axis of the theory grid (theory.optimizer_grid, ``python -m theory --optimizers``) and its figure."""

import json

import numpy as np
import pytest

from figures import theory_optimizers
from theory import experiment, optimizer_grid
from theory.config import TheoryConfig
from theory.optimizers import DEFAULT_LR

EPS = (1e-4, 1e-3, 1e-2)
TINY = dict(archs=("mlp1-tanh", "mlp1-relu"), losses=("aux-ce",), inputs=("gaussian",), seeds_per_combo=2, eps=EPS,
            optimizer_eps=EPS, k_steps=(1, 3), k_step_eps=1e-2)


@pytest.fixture(scope="module")
def tiny():
    config = TheoryConfig(**TINY)
    return config, optimizer_grid.run(config, progress=False)


def arr(data, *path):
    a = data["arrays"]
    for p in path:
        a = a[p]
    return np.asarray(a)


def test_gradient_descent_first_step_is_the_projection_grids_step(tiny):
    config, data = tiny
    proj = experiment.run(config, progress=False)  # the same keys: the same networks, dT and inputs
    sgd = arr(data, "first", "sgd", "inner")  # [case, group, eps], at lr DEFAULT_LR["sgd"]; dS is linear in lr
    for g, group in enumerate(optimizer_grid.GROUPS):
        np.testing.assert_allclose(sgd[:, g] * config.lr / DEFAULT_LR["sgd"],
                                   np.asarray(proj["curves"][group]["inner_E"]), rtol=1e-9)
    # momentum's first step is SGD's (its trace starts at zero)
    np.testing.assert_array_equal(arr(data, "first", "momentum", "inner"), sgd)
    # Lemma 1: no negative gradient-descent projection from the shared init at small eps
    s = data["summary"]["first_step"]["sgd"]
    assert s["lemma_shared"]["fraction_negative"][0]["fraction"] == 0.0
    assert s["theorem_shared"]["fraction_negative"][0]["fraction"] == 0.0


def test_k_step_curve_starts_at_the_first_step(tiny):
    config, data = tiny
    e = EPS.index(config.k_step_eps)
    for name in config.optimizers:
        first = arr(data, "first", name, "inner")[:, [2, 3], e]  # the theorem groups, at the K-step teacher
        k1 = arr(data, "kstep", name, "inner_K")[:, :, 0]
        np.testing.assert_allclose(k1, config.k_step_eps * first, rtol=1e-9)  # (theta_1 - start) . (eps dT)


def test_summary_counts_what_the_arrays_hold(tiny):
    config, data = tiny
    s = data["summary"]
    assert s["n_cases"] == 4 and s["k_steps"] == [1, 3]
    for name in config.optimizers:
        inner = arr(data, "first", name, "inner")
        for g, group in enumerate(optimizer_grid.GROUPS):
            for e in range(len(EPS)):
                cell = s["first_step"][name][group]["fraction_negative"][e]
                assert cell["fraction"] == np.mean(inner[:, g, e] < 0) and cell["n"] == 4
                assert cell["ci95"][0] <= cell["fraction"] <= cell["ci95"][1]
        rises = arr(data, "kstep", name, "teacher_loss_change_K")[:, 1, -1] > 0
        assert s["kstep"][name]["theorem_other"]["fraction_teacher_loss_rises"][-1]["fraction"] == np.mean(rises)
    lim = arr(data, "sign_limit", "inner")
    assert s["sign_limit_fraction_negative"]["lemma"]["fraction"] == np.mean(lim[:, 0] < 0)


def test_fraction_ci_is_a_wilson_interval():
    c = optimizer_grid.fraction_ci([True] * 3 + [False] * 7)
    assert c["fraction"] == 0.3 and c["n"] == 10
    np.testing.assert_allclose(c["ci95"], [0.1078, 0.6032], atol=1e-4)  # Wilson (1927), z = 1.96
    assert optimizer_grid.fraction_ci([False] * 5)["ci95"][0] == 0.0
    assert optimizer_grid.fraction_ci([])["fraction"] is None


def test_figure_is_drawn_from_its_json(tmp_path, tiny):
    config, data = tiny
    png = theory_optimizers.plot(json.loads(json.dumps(data)), tmp_path / "f.png")
    assert png.stat().st_size > 20_000
    assert "Does the student's step keep Theorem 1's sign" in theory_optimizers.headline(data)
    rows = optimizer_grid.table_rows(data)
    assert rows[2].startswith("sgd") and any("K steps" in r for r in rows)


def test_bad_config_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        TheoryConfig(optimizers=("sgd", "rmsprop"))
    with pytest.raises(ValueError, match="positive step counts"):
        TheoryConfig(k_steps=(0, 10))
    with pytest.raises(ValueError, match="no MNIST images were passed"):
        optimizer_grid.run(TheoryConfig(**{**TINY, "inputs": ("mnist",)}), progress=False)


def test_same_seed_same_numbers_also_stopped_and_resumed(tiny):
    """The same seed gives the same numbers, also from a grid stopped after its first part ((architecture, loss)
    pairs here) and rerun: the rerun computes only the second part (the stopped run computed the first afresh)."""
    from tests.theory.test_experiment import PartStore

    config, data = tiny
    store = PartStore(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        optimizer_grid.run(config, progress=False, store=store)
    store.stop_after, store.puts = None, []
    resumed = optimizer_grid.run(config, progress=False, store=store)
    assert list(store) == ["mlp1-tanh_aux-ce", "mlp1-relu_aux-ce"] and store.puts == ["mlp1-relu_aux-ce"]
    assert resumed["arrays"] == data["arrays"] and resumed["cases"] == data["cases"]
