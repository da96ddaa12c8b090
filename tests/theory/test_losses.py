"""Claims about the imitation losses used in the proof of Lemma 1 (paper Appendix C)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theory
from theory import explicit, tolerances

pytestmark = pytest.mark.usefixtures("x64")
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOL = tolerances(np.float64)


def losses_for(k):
    sub = tuple(range(k - 3, k))
    w = tuple(float(x) for x in np.linspace(0.0, 2.0, k))  # includes a zero weight
    # (the tempered KL is the plain one of logits / T: test_tempered_kl_is_kl_of_scaled_logits)
    return [theory.softmax_cross_entropy(), theory.softmax_cross_entropy(subset=sub), theory.kl_divergence(subset=sub),
            theory.squared_error(), theory.squared_error(weights=w), theory.squared_error(subset=sub)]


def null_basis(loss, k):
    """The null space the paper states: constants on the softmax subset (CE) and every logit outside the loss."""
    if isinstance(loss, theory.SoftmaxCrossEntropy):
        sub = range(k) if loss.subset is None else loss.subset
        vecs = [np.isin(np.arange(k), list(sub)).astype(float)] + [np.eye(k)[i] for i in range(k) if i not in sub]
    else:
        w = np.asarray(loss.weight_vector(k, jnp.float64))
        vecs = [np.eye(k)[i] for i in range(k) if w[i] == 0]
    return np.array(vecs).reshape(-1, k)


logits = st.integers(0, 2**31 - 1).map(lambda s: np.random.default_rng(s))


@HYP
@given(rng=logits, scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_curvature_is_psd_with_stated_null_space(rng, scale):
    k, b = 6, 3
    y = jnp.asarray(scale * rng.standard_normal((b, k)))
    z = jnp.asarray(scale * rng.standard_normal((b, k)))
    for loss in losses_for(k):
        m_BxKxK = loss.curvature_BxKxK(y)
        # closed form == autodiff mixed partial (the batch mean contributes 1/B on the block diagonal)
        dense = explicit.curvature_matrix(loss, y)
        blocks = np.stack([np.asarray(dense)[i * k:(i + 1) * k, i * k:(i + 1) * k] for i in range(b)])
        np.testing.assert_allclose(b * blocks, m_BxKxK, rtol=TOL.rtol, atol=TOL.atol)
        np.testing.assert_allclose(dense, dense.T, atol=TOL.atol)
        for m in np.asarray(m_BxKxK):
            assert np.linalg.eigvalsh(m).min() >= -TOL.atol
            null = null_basis(loss, k)
            np.testing.assert_allclose(m @ null.T, 0.0, atol=TOL.atol)
            # rank = K - dim(null): nothing else is in the null space. Exact for p > 0, but a saturated softmax
            # (scale 5) has eigenvalues ~min(p) that no rank threshold separates from 0, so check moderate logits.
            if scale <= 1.0:
                assert np.linalg.matrix_rank(m, tol=1e-9 * max(1.0, np.abs(m).max())) == k - np.linalg.matrix_rank(null)
        # the null space is orthogonal to dL/dz for ANY student logits z
        g_BxK = jax.grad(loss)(z, y)
        np.testing.assert_allclose(np.asarray(g_BxK) @ null_basis(loss, k).T, 0.0, atol=TOL.atol)


@HYP
@given(rng=logits)
def test_gradient_vanishes_at_the_teacher(rng):
    y = jnp.asarray(rng.standard_normal((4, 7)))
    for loss in losses_for(7):
        np.testing.assert_allclose(jax.grad(loss)(y, y), 0.0, atol=TOL.atol)


def test_kl_is_cross_entropy_minus_teacher_entropy():
    rng = np.random.default_rng(0)
    z, y = jnp.asarray(rng.standard_normal((5, 13))), jnp.asarray(rng.standard_normal((5, 13)))
    aux = (10, 11, 12)
    p = jax.nn.softmax(y[:, 10:], axis=-1)
    entropy = -jnp.mean(jnp.sum(p * jnp.log(p), axis=-1))
    np.testing.assert_allclose(theory.kl_divergence(aux)(z, y), theory.softmax_cross_entropy(aux)(z, y) - entropy,
                               rtol=TOL.rtol)
    assert theory.kl_divergence(aux)(z, y) > 0
    np.testing.assert_allclose(theory.kl_divergence(aux)(y, y), 0.0, atol=TOL.atol)
    # Only the aux logits count: changing class logits leaves the loss unchanged.
    np.testing.assert_allclose(theory.kl_divergence(aux)(z.at[:, :10].add(3.0), y), theory.kl_divergence(aux)(z, y),
                               rtol=TOL.rtol)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_tempered_kl_is_kl_of_scaled_logits(t):
    """KL at temperature T == the plain KL of logits / T (by definition), its curvature is the plain one of y / T
    divided by T^2 (chain rule), and T = 1 is the plain loss bit for bit."""
    rng = np.random.default_rng(1)
    z, y = jnp.asarray(rng.standard_normal((4, 13))), jnp.asarray(rng.standard_normal((4, 13)))
    aux = (10, 11, 12)
    hot, plain = theory.kl_divergence(aux, temperature=t), theory.kl_divergence(aux)
    np.testing.assert_allclose(hot(z, y), plain(z / t, y / t), rtol=TOL.rtol)
    np.testing.assert_allclose(jax.grad(hot)(y, y), 0.0, atol=TOL.atol)  # Lemma 1's premise: no gradient at z = y
    dense = explicit.curvature_matrix(hot, y)  # the closed form against autodiff's mixed partial
    blocks = np.stack([np.asarray(dense)[i * 13:(i + 1) * 13, i * 13:(i + 1) * 13] for i in range(4)])
    np.testing.assert_allclose(4 * blocks, hot.curvature_BxKxK(y), rtol=TOL.rtol, atol=TOL.atol)
    np.testing.assert_allclose(hot.curvature_BxKxK(y), plain.curvature_BxKxK(y / t) / t**2, rtol=TOL.rtol,
                               atol=TOL.atol)
    assert float(theory.kl_divergence(aux, temperature=1.0)(z, y)) == float(plain(z, y))
    with pytest.raises(ValueError, match="temperature"):
        theory.kl_divergence(aux, temperature=0.0)


def test_squared_error_value_and_zero_weight():
    z, y = jnp.array([[1.0, 2.0, 3.0]]), jnp.array([[0.0, 0.0, 0.0]])
    assert float(theory.squared_error()(z, y)) == pytest.approx(14.0)
    assert float(theory.squared_error(weights=(1.0, 0.0, 2.0))(z, y)) == pytest.approx(1.0 + 18.0)
    assert float(theory.squared_error(subset=(1,))(z, y)) == pytest.approx(4.0)


def test_losses_hash_for_jit_static_args():
    assert theory.softmax_cross_entropy(subset=[10, 11]) == theory.softmax_cross_entropy(subset=(10, 11))
    assert hash(theory.squared_error(weights=[1, 0])) == hash(theory.squared_error(weights=(1.0, 0.0)))


@pytest.mark.parametrize("name,cls", [("ce", theory.SoftmaxCrossEntropy), ("softmax_cross_entropy",
                                       theory.SoftmaxCrossEntropy), ("kl", theory.KLDivergence),
                                      ("kl_divergence", theory.KLDivergence), ("se", theory.SquaredError),
                                      ("squared_error", theory.SquaredError)])
def test_get_loss_by_name(name, cls, x64):
    """Each name gives its class, and its value at z = y is the one the definition gives: the teacher's entropy for
    CE (by hand), 0 for KL and SE; at another z, KL = CE - entropy and SE = the sum of squares (by hand)."""
    loss = theory.get_loss(name)
    assert type(loss) is cls
    y = jnp.array([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]])
    z = y + jnp.array([[0.3, -0.2, 0.0, 1.0], [0.5, 0.5, -1.0, 0.0]])
    p = np.exp(np.asarray(y)) / np.exp(np.asarray(y)).sum(-1, keepdims=True)
    entropy = float(-(p * np.log(p)).sum(-1).mean())
    ce_z = float(-(p * (np.asarray(z) - np.log(np.exp(np.asarray(z)).sum(-1, keepdims=True)))).sum(-1).mean())
    expect_at_y = {theory.SoftmaxCrossEntropy: entropy, theory.KLDivergence: 0.0, theory.SquaredError: 0.0}[cls]
    expect_at_z = {theory.SoftmaxCrossEntropy: ce_z, theory.KLDivergence: ce_z - entropy,
                   theory.SquaredError: float(((np.asarray(z) - np.asarray(y)) ** 2).sum(-1).mean())}[cls]
    assert float(loss(y, y)) == pytest.approx(expect_at_y, rel=1e-12, abs=1e-12)
    assert float(loss(z, y)) == pytest.approx(expect_at_z, rel=1e-12)


def test_bad_loss_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*choose one of"):
        theory.get_loss("hinge")
    with pytest.raises(ValueError, match="rank 2"):
        theory.softmax_cross_entropy()(jnp.ones(4), jnp.ones(4))
    with pytest.raises(ValueError, match="differ in shape"):
        theory.squared_error()(jnp.ones((2, 4)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=">= 0"):
        theory.squared_error(weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="only K=4"):
        theory.softmax_cross_entropy(subset=(2, 7))(jnp.ones((2, 4)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="distinct"):
        theory.softmax_cross_entropy(subset=(1, 1))
    with pytest.raises(ValueError, match="3 weights but the model has K=4"):
        theory.squared_error(weights=(1, 1, 1))(jnp.ones((2, 4)), jnp.ones((2, 4)))
