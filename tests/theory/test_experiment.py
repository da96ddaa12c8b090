"""The grid driver behind ``python -m theory`` and its figure."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from figures import theory_projection
from theory.config import TheoryConfig, arch_from_name
from theory.experiment import compiled_case, run, table_rows
from theory.stats import pooled_slope
from theory.tolerances import tolerances

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
    # the different-init control has no guarantee: its projections take both signs, and the summary counts them
    other = np.concatenate([np.asarray(data["curves"][g]["inner_E"])[:, :3] for g in ("lemma_other", "theorem_other")])
    assert s["other_init_fraction_negative"] == np.mean(other < 0)
    assert 0.0 < s["other_init_fraction_negative"] < 1.0
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
        TheoryConfig(losses=("hinge",))
    with pytest.raises(ValueError, match="no eps <= small_eps_max"):
        TheoryConfig(eps=(1.0,))


def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "theory", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--preset", "--json", "--figures-dir", "--seed", "--dtype"):
        assert flag in out.stdout


def test_mnist_inputs_come_from_the_caller_and_are_checked():
    config = TheoryConfig(**{**TINY, "inputs": ("mnist",), "losses": ("ce",), "seeds_per_combo": 1, "batch": 4})
    with pytest.raises(ValueError, match='names "mnist" but no MNIST images were passed'):
        run(config, progress=False)
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(-1, 1, (20, 784)).astype(np.float32), rng.integers(0, 10, 20).astype(np.int32)
    with pytest.raises(ValueError, match="needs 8 MNIST images, 5 were given"):
        run(config, mnist=(images[:5], labels[:5]), progress=False)
    with pytest.raises(ValueError, match="images_NxD with D = 784"):
        run(config, mnist=(images[:, :100], labels), progress=False)
    bad = images.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        run(config, mnist=(bad, labels), progress=False)
    loaded = []
    a = run(config, mnist=lambda: loaded.append(1) or (images, labels), progress=False)  # a loader, called once
    b = run(config, mnist=(images, labels), progress=False)
    assert loaded == [1] and a["curves"] == b["curves"] and a["summary"]["inputs_used"] == ["mnist"]


def test_grid_inputs_drop_missing_mnist_offline_but_fail_where_data_is_required(tmp_path, monkeypatch):
    from mnist_mlp.data import DataError

    monkeypatch.setenv("SUBLIMINAL_MNIST_GZ", str(tmp_path / "no_gz"))
    config = TheoryConfig(**{**TINY, "inputs": ("gaussian", "mnist")})
    monkeypatch.delenv("SUBLIMINAL_REQUIRE_DATA", raising=False)
    dropped, loader = theory_projection.grid_inputs(config, tmp_path / "empty", download=False)
    assert dropped.inputs == ("gaussian",) and loader is None
    monkeypatch.setenv("SUBLIMINAL_REQUIRE_DATA", "1")
    with pytest.raises(DataError):
        theory_projection.grid_inputs(config, tmp_path / "empty", download=False)


def test_one_program_per_architecture_serves_every_loss_with_each_loss_alone_numbers():
    """The grid compiles one program per architecture (its cases of every loss, the loss chosen per case); each case
    gets the numbers of a program that calls its loss directly, up to float64 rounding (the two programs fuse
    differently)."""
    config = TheoryConfig(**{**TINY, "archs": ("mlp1-tanh", "mlp1-relu"), "eps": (1e-6, 1e-5, 1e-4, 0.5),
                             "seeds_per_combo": 1})
    assert run(config, progress=False)["summary"]["compiles"] == 2  # fresh: 2 architectures, 2 losses each
    assert run(config, progress=False)["summary"]["compiles"] == 0  # cached
    with jax.enable_x64(True):
        _each_case_as_alone(config)


def _each_case_as_alone(config):
    k = jax.random.split(jax.random.key(3), 4)
    keys = jax.random.split(k[0], 2)
    xs, xt = (jax.random.normal(kk, (2, config.batch, 784), jnp.float64) for kk in k[1:3])
    yt = jax.random.randint(k[3], (2, config.batch), 0, 10)
    together = compiled_case("mlp1-tanh", config.losses, config)(keys, xs, xt, yt, jnp.arange(2))
    tol = tolerances(np.float64)
    for i, loss in enumerate(config.losses):
        alone = compiled_case("mlp1-tanh", (loss,), config)(keys[i:i + 1], xs[i:i + 1], xt[i:i + 1], yt[i:i + 1],
                                                            jnp.zeros(1, jnp.int32))
        for group, rep in alone.items():
            for name, a in rep.items():
                np.testing.assert_allclose(np.asarray(together[group][name])[i], np.asarray(a)[0], rtol=tol.rtol,
                                           atol=tol.atol, err_msg=f"{loss}: {group}.{name}")


class PartStore(dict):
    """A ``GridStore`` in memory that counts its puts and, like a killed run, can stop after ``stop_after`` of them."""

    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.puts, self.stop_after = [], stop_after

    def put(self, key, arrays):
        self[key] = {k: np.array(v) for k, v in arrays.items()}
        self.puts.append(key)
        if self.stop_after is not None and len(self.puts) >= self.stop_after:
            raise KeyboardInterrupt("stopped after a part, as a killed run")


def test_a_grid_stopped_after_a_part_resumes_from_its_store_to_the_same_numbers():
    """Stopped after its first architecture's part, the grid reruns only the second and returns the numbers of an
    uninterrupted run; a stored part that does not hold the grid's arrays is refused, naming it."""
    config = TheoryConfig(**{**TINY, "archs": ("mlp1-tanh", "mlp1-relu"), "seeds_per_combo": 1})
    whole = run(config, progress=False)
    store = PartStore(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False, store=store)
    assert list(store) == ["mlp1-tanh"]
    store.stop_after, store.puts = None, []
    resumed = run(config, progress=False, store=store)
    assert store.puts == ["mlp1-relu"] and resumed["curves"] == whole["curves"]
    untimed = [json.dumps(d["summary"] | {"wall_seconds": 0, "compiles": 0}, sort_keys=True) for d in (resumed, whole)]
    assert untimed[0] == untimed[1]  # (as JSON: NaN, where a slope has no fit, equals NaN)
    store["mlp1-relu"]["lemma_shared/inner_E"] = store["mlp1-relu"]["lemma_shared/inner_E"][:, :2]
    with pytest.raises(ValueError, match="the stored part 'mlp1-relu' of the grid does not hold this grid's arrays"):
        run(config, progress=False, store=store)
