"""Theorem 1 beyond gradient descent (theory.optimizers): first steps of optax optimizers, the sign step's eps -> 0
limit, and K-step projections; float64 unless stated."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theory
from tests.theory.helpers import tiny_cnn, tiny_mlp
from theory import explicit, tolerances, zoo
from theory.config import AUX as ZOO_AUX
from theory.config import arch_from_name
from theory.optimizers import (
    OPTIMIZER_NAMES,
    k_step_projection,
    make_optimizer,
    optimizer_first_step,
    sign_first_order_update,
)


@pytest.fixture
def x64_optax():
    """float64 with standard promotion: optax's Adam bias correction mixes a Python float with its int32 step count,
    which strict promotion refuses. test_updates_stay_float64 keeps the guard strict promotion would give."""
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        yield


pytestmark = pytest.mark.usefixtures("x64_optax")
TOL = tolerances(np.float64)
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
AUX = (2, 3, 4)
LOSSES = {"ce": theory.softmax_cross_entropy(), "aux-ce": theory.softmax_cross_entropy(subset=AUX),
          "se": theory.squared_error()}


def setup(seed, *, net="mlp"):
    k_p, k_o, k_d, k_x = jax.random.split(jax.random.key(seed), 4)
    make = (lambda key: tiny_mlp(key=key)) if net == "mlp" else (lambda key: tiny_cnn(key=key))
    apply_fn, p0 = make(k_p)
    _, p_other = make(k_o)
    dT = zoo.random_update(p0, key=k_d)
    xs = jax.random.normal(k_x, (7, 25 if net == "cnn" else 6), jnp.float64)
    return apply_fn, p0, p_other, dT, xs


def flat(tree):
    return np.asarray(theory.flatten(tree))


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("start", ["shared", "other"])
def test_sgd_first_step_equals_student_update(loss, start):
    apply_fn, p0, p_other, dT, xs = setup(0)
    teacher = theory.teacher_params(p0, dT, 0.05)
    s = None if start == "shared" else p_other
    ref = theory.student_update(apply_fn, p0 if s is None else s, teacher, xs, LOSSES[loss], lr=0.7)
    for name in ("sgd", "momentum"):  # momentum's trace starts at zero: the same first step
        u = optimizer_first_step(apply_fn, p0, teacher, xs, LOSSES[loss], make_optimizer(name, 0.7), student_params0=s)
        np.testing.assert_allclose(flat(u), flat(ref), rtol=TOL.rtol, atol=TOL.atol)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_adam_first_step_is_the_sign_step_within_its_eps(loss):
    apply_fn, p0, _, dT, xs = setup(1)
    lr, eps_adam = 0.01, 1e-8
    teacher = theory.teacher_params(p0, dT, 1e-2)
    g = -flat(theory.student_update(apply_fn, p0, teacher, xs, LOSSES[loss], lr=1.0))
    u = flat(optimizer_first_step(apply_fn, p0, teacher, xs, LOSSES[loss], optax.adam(lr, eps=eps_adam)))
    # The bias-corrected first step is exactly -lr g / (|g| + eps_adam) ...
    np.testing.assert_allclose(u, -lr * g / (np.abs(g) + eps_adam), rtol=TOL.rtol, atol=TOL.atol)
    # ... so it differs from -lr sign(g) by at most lr eps_adam / (|g| + eps_adam) per weight.
    bound = lr * eps_adam / (np.abs(g) + eps_adam)
    assert np.all(np.abs(u + lr * np.sign(g)) <= bound * (1 + TOL.rtol) + TOL.atol)
    assert np.mean(np.abs(g) > 1e3 * eps_adam) > 0.5  # the check has teeth: most weights are in the sign regime


def test_adam_tends_to_gradient_descent_when_the_teacher_is_closer_than_its_eps():
    apply_fn, p0, _, dT, xs = setup(2)
    teacher = theory.teacher_params(p0, dT, 1e-12)  # |g| ~ 1e-12 << eps_adam = 1e-3
    gd = flat(theory.student_update(apply_fn, p0, teacher, xs, LOSSES["ce"], lr=1.0))
    u = flat(optimizer_first_step(apply_fn, p0, teacher, xs, LOSSES["ce"], optax.adam(1.0, eps=1e-3)))
    assert float(theory.cosine(u, gd)) > 1 - 1e-6
    sign = flat(optimizer_first_step(apply_fn, p0, teacher, xs, LOSSES["ce"], optax.sign_sgd(1.0)))
    assert float(theory.cosine(sign, gd)) < 0.99  # while the sign step stays a sign step


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_sign_step_projection_is_independent_of_eps_as_eps_goes_to_zero(net, loss):
    apply_fn, p0, _, dT, xs = setup(3, net=net)
    lim = sign_first_order_update(apply_fn, p0, dT, xs, LOSSES[loss], lr=0.3)
    ip_lim = float(theory.inner(lim, dT))
    for name in ("signsgd", "lion"):
        ips = [float(theory.inner(optimizer_first_step(apply_fn, p0, theory.teacher_params(p0, dT, eps), xs,
                                                       LOSSES[loss], make_optimizer(name, 0.3)), dT))
               for eps in (1e-9, 1e-8, 1e-7)]
        np.testing.assert_allclose(ips, ip_lim, rtol=TOL.rtol)
    # and the limit is lr sign(first-order update), computed independently through the explicit Jacobian
    ref = explicit.first_order_update_explicit(apply_fn, p0, dT, xs, LOSSES[loss], lr=1.0)
    np.testing.assert_array_equal(flat(lim), 0.3 * np.sign(flat(ref)))


class Diagonal(nn.Module):
    """logits_k = w_k x_k: J^T M J = diag(2 E[x_k^2]) under squared error, where the sign step's projection is
    provably >= 0 (sign(v_i) dT_i = |dT_i|). (A bias b_k would couple with w_k: 2x2 blocks, no longer diagonal.)"""

    @nn.compact
    def __call__(self, x_BxD):
        return x_BxD * self.param("w", nn.initializers.normal(1.0), (x_BxD.shape[1],))


@HYP
@given(seed=st.integers(0, 10_000), log_eps=st.floats(-8, 0))
def test_sign_step_projection_is_nonnegative_under_diagonal_curvature(x64_optax, seed, log_eps):
    k_p, k_d, k_x = jax.random.split(jax.random.key(seed), 3)
    module = Diagonal()
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), module.init(k_p, jnp.zeros((1, 4)))["params"])
    apply_fn = zoo.apply_fn_of(module)
    dT = zoo.random_update(params, key=k_d)
    xs = jax.random.normal(k_x, (9, 4), jnp.float64)
    loss = theory.squared_error()
    lim = sign_first_order_update(apply_fn, params, dT, xs, loss, lr=1.0)
    np.testing.assert_array_equal(flat(lim), np.sign(flat(dT)))  # the curvature only rescales dT
    teacher = theory.teacher_params(params, dT, 10.0**log_eps)
    for name in ("signsgd", "adam", "lion"):
        u = optimizer_first_step(apply_fn, params, teacher, xs, loss, make_optimizer(name, 1.0))
        assert float(theory.inner(u, dT)) >= 0


def _zoo_case(arch, seed):
    """A zoo network with aux-logit cross-entropy on uniform noise, as in the theory grid (float64)."""
    module = arch_from_name(arch).module(13)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    p0 = zoo.init_params(module, key=k1, dtype=jnp.float64)
    return (zoo.apply_fn_of(module), p0, zoo.random_update(p0, key=k2),
            jax.random.uniform(k3, (32, zoo.INPUT_DIM), jnp.float64, -1, 1))


def test_sign_step_projection_can_be_negative_regression_example():
    """A small CNN where Lemma 1 holds for gradient descent and fails for the sign step (found by the grid)."""
    apply_fn, p0, dT, xs = _zoo_case("cnn", 1)
    loss = theory.softmax_cross_entropy(subset=ZOO_AUX)
    teacher = theory.teacher_params(p0, dT, 1e-3)
    gd = optimizer_first_step(apply_fn, p0, teacher, xs, loss, make_optimizer("sgd", 1.0))
    sign = optimizer_first_step(apply_fn, p0, teacher, xs, loss, make_optimizer("signsgd", 1.0))
    lim = sign_first_order_update(apply_fn, p0, dT, xs, loss, lr=1.0)
    assert float(theory.inner(gd, dT)) > 0
    assert float(theory.inner(sign, dT)) < 0
    assert float(theory.inner(lim, dT)) < 0  # the eps -> 0 limit predicts it


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "signsgd"])
@pytest.mark.parametrize("start", ["shared", "other"])
def test_k_step_projection_matches_a_python_loop(name, start):
    apply_fn, p0, p_other, dT, xs = setup(4)
    loss = LOSSES["aux-ce"]
    teacher = theory.teacher_params(p0, dT, 0.1)
    s = p0 if start == "shared" else p_other
    xt = xs[::-1] * 0.5
    def teacher_loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xt)[:, :2], jnp.arange(7) % 2).mean()
    ks = (1, 3, 7)
    rep = k_step_projection(apply_fn, p0, teacher, xs, loss, make_optimizer(name, 0.05), ks,
                            student_params0=None if start == "shared" else p_other, teacher_loss=teacher_loss)
    opt = make_optimizer(name, 0.05)
    p, state, y = s, opt.init(s), apply_fn(teacher, xs)
    dT_vec = flat(dT) * 0.1
    for k in range(1, 8):
        g = jax.grad(lambda q: loss(apply_fn(q, xs), y))(p)
        upd, state = opt.update(g, state, p)
        p = optax.apply_updates(p, upd)
        if k in ks:
            i = ks.index(k)
            d = flat(p) - flat(s)
            np.testing.assert_allclose(rep.inner_K[i], d @ dT_vec, rtol=TOL.trajectory_rtol)
            np.testing.assert_allclose(rep.cosine_K[i], d @ dT_vec / np.linalg.norm(d) / np.linalg.norm(dT_vec),
                                       rtol=TOL.trajectory_rtol)
            np.testing.assert_allclose(rep.teacher_loss_change_K[i], teacher_loss(p) - teacher_loss(s),
                                       rtol=TOL.trajectory_rtol)
            np.testing.assert_allclose(rep.imitation_loss_K[i], loss(apply_fn(p, xs), y), rtol=TOL.trajectory_rtol)
    first = optimizer_first_step(apply_fn, p0, teacher, xs, loss, make_optimizer(name, 0.05),
                                 student_params0=None if start == "shared" else p_other)
    np.testing.assert_allclose(rep.inner_K[0], float(theory.inner(first, dT)) * 0.1, rtol=TOL.rtol)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_updates_stay_float64(name):
    apply_fn, p0, _, dT, xs = setup(6)
    teacher = theory.teacher_params(p0, dT, 1e-3)
    u = optimizer_first_step(apply_fn, p0, teacher, xs, LOSSES["ce"], make_optimizer(name))
    assert {a.dtype for a in jax.tree_util.tree_leaves(u)} == {jnp.dtype("float64")}
    rep = k_step_projection(apply_fn, p0, teacher, xs, LOSSES["ce"], make_optimizer(name), (1, 2))
    assert {a.dtype for a in (rep.inner_K, rep.cosine_K, rep.imitation_loss_K)} == {jnp.dtype("float64")}


def test_bad_input_is_refused_clearly():
    apply_fn, p0, _, dT, xs = setup(5)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="positive step counts"):
        k_step_projection(apply_fn, p0, p0, xs, LOSSES["ce"], optax.sgd(0.1), (0, 5))
    bad = jax.tree_util.tree_map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), p0)
    with pytest.raises(ValueError, match="NaN"):
        optimizer_first_step(apply_fn, p0, bad, xs, LOSSES["ce"], optax.adam(0.1))
    assert set(OPTIMIZER_NAMES) >= {"sgd", "momentum", "adam", "adamw", "signsgd", "lion"}
