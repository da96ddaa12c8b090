import jax.numpy as jnp
import numpy as np
import pytest

import theory

pytestmark = pytest.mark.usefixtures("x64")


def trees(seed=0):
    rng = np.random.default_rng(seed)
    a = {"w": jnp.asarray(rng.standard_normal((3, 4))), "b": jnp.asarray(rng.standard_normal(4))}
    b = {"w": jnp.asarray(rng.standard_normal((3, 4))), "b": jnp.asarray(rng.standard_normal(4))}
    return a, b


def test_geometry_matches_flattened_numpy():
    a, b = trees()
    va, vb = np.asarray(theory.flatten(a)), np.asarray(theory.flatten(b))
    assert va.shape == (16,)
    np.testing.assert_allclose(theory.inner(a, b), va @ vb, rtol=1e-12)
    np.testing.assert_allclose(theory.projection(a, b), va @ vb / np.linalg.norm(vb), rtol=1e-12)
    np.testing.assert_allclose(theory.normalized_projection(a, b), va @ vb / (vb @ vb), rtol=1e-12)
    np.testing.assert_allclose(theory.cosine(a, b), va @ vb / np.linalg.norm(va) / np.linalg.norm(vb), rtol=1e-12)
    np.testing.assert_allclose(theory.cosine(a, a), 1.0, rtol=1e-12)
    np.testing.assert_allclose(theory.normalized_projection(theory.tree_scale(b, 0.3), b), 0.3, rtol=1e-12)


def test_mismatched_pytrees_raise():
    a, b = trees()
    with pytest.raises(ValueError, match="differ in structure"):
        theory.inner(a, {"w": b["w"]})
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*\(4, 3\)"):
        theory.cosine(a, {"w": b["w"].T, "b": b["b"]})


def test_nan_is_reported_with_its_leaf():
    a, _ = trees()
    with pytest.raises(ValueError, match=r"xs\['w'\] contains 1 NaN"):
        theory.check_finite({"w": a["w"].at[0, 0].set(jnp.nan)}, name="xs")


def test_remove_component_matches_numpy_and_zero_direction_is_a_no_op():
    """a - <a,b>/|b|^2 b by flattened numpy, orthogonal to b; a zero b returns a bit for bit."""
    a, b = trees(3)
    out = theory.remove_component(a, b)
    fa, fb = np.asarray(theory.flatten(a)), np.asarray(theory.flatten(b))
    np.testing.assert_allclose(np.asarray(theory.flatten(out)), fa - fa @ fb / (fb @ fb) * fb, rtol=1e-12)
    assert abs(float(theory.inner(out, b))) < 1e-12 * float(theory.norm(a) * theory.norm(b))
    zero = {k: jnp.zeros_like(v) for k, v in b.items()}
    same = theory.remove_component(a, zero)
    for k in a:
        assert np.array_equal(np.asarray(same[k]), np.asarray(a[k]))
