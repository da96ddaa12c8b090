"""Trait-specific geometry (theory.differential): the pytree and Gram paths agree with each other and with numpy by
hand; a planted signal student = control + a (dT - dN) is recovered exactly; bad input is refused."""

import jax.numpy as jnp
import numpy as np
import pytest

import theory
from tests.theory.helpers import trait_specific_by_hand
from theory import tolerances

pytestmark = pytest.mark.usefixtures("x64")
TOL = tolerances(np.float64)


def random_tree(rng, scale=1.0):
    return {"layer0": {"w": jnp.asarray(scale * rng.standard_normal((4, 3)))},
            "layer1": {"w": jnp.asarray(scale * rng.standard_normal((2, 5))), "b": jnp.asarray(rng.standard_normal(2))}}


by_hand = trait_specific_by_hand


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pytree_and_gram_paths_equal_numpy_by_hand(seed):
    rng = np.random.default_rng(seed)
    S, C, T, N = (random_tree(rng) for _ in range(4))
    ref = by_hand(*(np.asarray(theory.flatten(t)) for t in (S, C, T, N)))
    got = {k: float(v) for k, v in theory.trait_specific(S, C, T, N).items()}
    assert set(got) == set(theory.TRAIT_SPECIFIC_QUANTITIES) == set(ref)
    G = theory.gram([S, C, T, N])
    from_gram = theory.trait_specific_from_gram(G, {"student": 0, "control": 1, "teacher": 2, "neutral": 3})
    for q in ref:
        np.testing.assert_allclose(got[q], ref[q], rtol=TOL.rtol, atol=TOL.atol, err_msg=q)
        np.testing.assert_allclose(from_gram[q], ref[q], rtol=TOL.rtol, atol=TOL.atol, err_msg=q)


def test_gram_of_raw_parameters_with_an_init_row_gives_the_updates_geometry():
    """Rows of raw vectors theta (large shared init) + the init row: the same numbers as from the updates."""
    rng = np.random.default_rng(5)
    theta0 = random_tree(rng, scale=30.0)
    upd = [random_tree(rng) for _ in range(4)]
    raw = [theory.tree_add(theta0, u) for u in upd]
    G = theory.gram([raw[3], theta0, raw[0], raw[2], raw[1]])  # any row order
    got = theory.trait_specific_from_gram(G, {"neutral": 0, "student": 2, "teacher": 3, "control": 4}, init=1)
    ref = by_hand(*(np.asarray(theory.flatten(u)) for u in upd))
    for q in ref:  # the raw Gram entries are ~900x the updates': allow that much more rounding
        np.testing.assert_allclose(got[q], ref[q], rtol=1e3 * TOL.rtol, atol=1e3 * TOL.atol, err_msg=q)


@pytest.mark.parametrize("a", [-0.5, 0.0, 0.03, 2.0])
def test_planted_signal_is_recovered_exactly(a):
    """student = control + a (dT - dN): the normalized projection of dS - dC on dT - dN is a, its cos is sign(a)."""
    rng = np.random.default_rng(7)
    C, T, N = (random_tree(rng) for _ in range(3))
    S = theory.tree_add(C, theory.tree_scale(theory.tree_sub(T, N), a))
    if a == 0.0:  # dS - dC = 0: the projection is 0 and the cos undefined
        assert float(theory.trait_specific(S, C, T, N)["proj_diff_specific"]) == 0.0
        return
    q = {k: float(v) for k, v in theory.trait_specific(S, C, T, N).items()}
    np.testing.assert_allclose(q["proj_diff_specific"], a, rtol=TOL.rtol)
    np.testing.assert_allclose(q["cos_diff_specific"], np.sign(a), rtol=TOL.rtol)
    # the treated student leans further toward dT - dN than the control exactly when a > 0
    assert (q["cos_student_specific"] > q["cos_control_specific"]) == (a > 0)


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(0)
    S, C, T, N = (random_tree(rng) for _ in range(4))
    bad = {**S, "layer0": {"w": S["layer0"]["w"].at[0, 0].set(jnp.nan)}}
    with pytest.raises(ValueError, match="student.*NaN"):
        theory.trait_specific(bad, C, T, N)
    with pytest.raises(ValueError, match="square"):
        theory.trait_specific_from_gram(np.zeros((3, 4)), {"student": 0, "control": 1, "teacher": 2, "neutral": 2})
    with pytest.raises(ValueError, match="lacks"):
        theory.trait_specific_from_gram(np.eye(4), {"student": 0, "control": 1, "teacher": 2})
    with pytest.raises(ValueError, match="NaN"):
        theory.trait_specific_from_gram(np.full((4, 4), np.nan), {"student": 0, "control": 1, "teacher": 2,
                                                                   "neutral": 3})
