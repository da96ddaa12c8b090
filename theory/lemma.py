"""Lemma 1 and Theorem 1 of the paper (Section 6, Appendix C) as pure JAX functions on parameter pytrees.

Setting: a network ``apply_fn(params, x) -> logits_BxK``; shared init theta_0; teacher theta_T = theta_0 + eps * dT for
any update dT; labels y = f_{theta_T}(x); the student takes ONE gradient step of size ``lr`` on the imitation loss L_S:

    dS = -lr * grad_theta E_x L_S(f_theta(x), y) at theta = theta_0                      (student_update)

Because grad_z L_S(z, y) vanishes at z = y, expanding y around f_{theta_0}(x) gives

    dS = eps * lr * E_x[J^T M J dT] + O(eps^2),   M = -d^2 L_S / dy dz  (PSD)          (first_order_update)
    dS . dT = eps * lr * E_x[(J dT)^T M (J dT)] + O(eps^2) >= 0                         (gauss_newton_quadratic)

which is Lemma 1. Theorem 1 takes dT = -grad L_T(theta_0) for any differentiable teacher loss L_T: then
L_T(theta_0 + dS) - L_T(theta_0) = -dS . dT + O(|dS|^2) < 0 unless the projection vanishes.

Everything is matrix-free (``jax.linearize`` + ``jax.linear_transpose``: J is never formed), jittable and vmappable
over seeds; the dense reference used by the tests lives in ``theory.explicit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from theory.losses import get_loss
from theory.pytree import (
    check_finite,
    check_same_structure,
    cosine,
    flatten,
    inner,
    tree_add,
    tree_scale,
)

__all__ = [
    "teacher_params",
    "student_update",
    "first_order_update",
    "gauss_newton_quadratic",
    "Lemma1Report",
    "Theorem1Report",
    "check_lemma1",
    "check_theorem1",
]

ApplyFn = Callable[..., jax.Array]


def _validate(params0, other, xs, *, other_name: str) -> None:
    check_same_structure(params0, other, names=("params0", other_name))
    check_finite(params0, name="params0")
    check_finite(other, name=other_name)
    check_finite(xs, name="xs")


def teacher_params(params0, dT, eps):
    """theta_T = theta_0 + eps * dT."""
    return tree_add(params0, tree_scale(dT, eps))


def _imitation_grad(apply_fn, params, targets_BxK, xs, loss):
    return jax.grad(lambda p: loss(apply_fn(p, xs), targets_BxK))(params)


def student_update(apply_fn: ApplyFn, params0, teacher_params, xs, loss, lr):
    """Exact one-step imitation update dS = -lr * grad L_S(f_{params0}(xs), f_{teacher_params}(xs)).

    ``params0`` is where the student starts: theta_0 for a shared init, another draw for the counter-example.
    """
    loss = get_loss(loss)
    _validate(params0, teacher_params, xs, other_name="teacher_params")
    targets_BxK = jax.lax.stop_gradient(apply_fn(teacher_params, xs))
    return tree_scale(_imitation_grad(apply_fn, params0, targets_BxK, xs, loss), -lr)


def _jvp_and_curvature(apply_fn, params0, dT, xs, loss):
    """(J dT, -M_bar J dT, transpose of J) at params0, where M_bar includes the batch mean's 1/B."""
    z0_BxK, jvp_fn = jax.linearize(lambda p: apply_fn(p, xs), params0)
    u_BxK = jvp_fn(dT)
    # d/dy [grad_z L(z0, y)] at y = z0, applied to u: this is -M u (any loss, no closed form needed).
    def grad_z(y):
        return jax.grad(loss, argnums=0)(z0_BxK, y)
    _, minus_mu_BxK = jax.jvp(grad_z, (z0_BxK,), (u_BxK,))
    return u_BxK, minus_mu_BxK, jax.linear_transpose(jvp_fn, params0)


def first_order_update(apply_fn: ApplyFn, params0, dT, xs, loss, lr):
    """The eps-coefficient of dS: lr * E_x[J^T M J dT], matrix-free (J never materialized)."""
    loss = get_loss(loss)
    _validate(params0, dT, xs, other_name="dT")
    _, minus_mu_BxK, vjp_fn = _jvp_and_curvature(apply_fn, params0, dT, xs, loss)
    (jt_mu,) = vjp_fn(minus_mu_BxK)
    return tree_scale(jt_mu, -lr)


def gauss_newton_quadratic(apply_fn: ApplyFn, params0, dT, xs, loss):
    """E_x[(J dT)^T M (J dT)] >= 0: the coefficient of eps * lr in dS . dT."""
    loss = get_loss(loss)
    _validate(params0, dT, xs, other_name="dT")
    u_BxK, minus_mu_BxK, _ = _jvp_and_curvature(apply_fn, params0, dT, xs, loss)
    return -jnp.vdot(u_BxK, minus_mu_BxK)


@struct.dataclass
class Lemma1Report:
    """Lemma-1 quantities over a sweep of eps (trailing axis E); vmappable, so a leading seed axis may be added."""

    eps_E: jax.Array
    inner_E: jax.Array  # dS . dT
    projection_E: jax.Array  # dS . dT / |dT|
    normalized_projection_E: jax.Array  # dS . dT / |dT|^2
    cosine_E: jax.Array
    first_order_inner_E: jax.Array  # eps * lr * E[(J dT)^T M (J dT)]: the Lemma's prediction of dS . dT
    relative_error_E: jax.Array  # |dS / eps - first_order| / |first_order|  (O(eps) for a shared init)
    quadratic: jax.Array  # E[(J dT)^T M (J dT)]


@struct.dataclass
class Theorem1Report(Lemma1Report):
    teacher_loss0: jax.Array  # L_T at the student's start
    teacher_loss_change_E: jax.Array  # L_T(start + dS) - L_T(start)
    first_order_loss_change_E: jax.Array  # grad L_T(start) . dS


def lemma1_sweep(apply_fn, params0, dT, xs, loss, lr, eps_E, student_params0):
    """(dS per eps, Lemma1Report) of one jittable sweep over ``eps_E``: the student from ``student_params0`` (None:
    the shared init) imitates theta_0 + eps dT; the grid driver vmaps this over cases."""
    start = params0 if student_params0 is None else student_params0
    fo = first_order_update(apply_fn, params0, dT, xs, loss, lr)
    fo_vec, dT_vec = flatten(fo), flatten(dT)
    quad = gauss_newton_quadratic(apply_fn, params0, dT, xs, loss)

    def one_eps(eps):
        dS = student_update(apply_fn, start, teacher_params(params0, dT, eps), xs, loss, lr)
        dS_vec = flatten(dS)
        err = jnp.linalg.norm(dS_vec / eps - fo_vec)
        fo_norm = jnp.linalg.norm(fo_vec)
        rel = jnp.where(fo_norm > 0, err / jnp.where(fo_norm > 0, fo_norm, 1.0), jnp.nan)
        ip = jnp.vdot(dS_vec, dT_vec)
        return dS, (ip, ip / jnp.linalg.norm(dT_vec), ip / jnp.vdot(dT_vec, dT_vec),
                    cosine(dS_vec, dT_vec), eps * lr * quad, rel)

    dS_E, cols = jax.vmap(one_eps)(eps_E)
    return dS_E, Lemma1Report(eps_E, *cols, quad)


def check_lemma1(apply_fn: ApplyFn, params0, dT, xs, loss, lr, eps_E, *, student_params0=None) -> Lemma1Report:
    """Measure Lemma 1 for teacher = params0 + eps * dT at each eps in ``eps_E``.

    With ``student_params0`` the student starts from a different init (the paper's negative control): the
    first-order fields still describe the shared-init prediction, so a large relative error is the expected outcome.
    """
    loss = get_loss(loss)
    _validate(params0, dT, xs, other_name="dT")
    if student_params0 is not None:
        _validate(params0, student_params0, xs, other_name="student_params0")
    eps_E = jnp.atleast_1d(jnp.asarray(eps_E, dtype=jnp.result_type(*jax.tree_util.tree_leaves(params0))))
    return lemma1_sweep(apply_fn, params0, dT, xs, loss, lr, eps_E, student_params0)[1]


def check_theorem1(
    apply_fn: ApplyFn, params0, teacher_loss, xs, loss, lr, eps_E, *, student_params0=None
) -> Theorem1Report:
    """Theorem 1: dT = -grad L_T(params0) for ``teacher_loss(params) -> scalar``; does L_T fall after the student's
    step?"""
    loss = get_loss(loss)
    dT = tree_scale(jax.grad(teacher_loss)(params0), -1.0)
    check_finite(dT, name="grad teacher_loss")
    start = params0 if student_params0 is None else student_params0
    if student_params0 is not None:
        _validate(params0, student_params0, xs, other_name="student_params0")
    eps_E = jnp.atleast_1d(jnp.asarray(eps_E, dtype=jnp.result_type(*jax.tree_util.tree_leaves(params0))))
    dS_E, rep = lemma1_sweep(apply_fn, params0, dT, xs, loss, lr, eps_E, student_params0)
    fields = {f.name: getattr(rep, f.name) for f in dataclasses.fields(Lemma1Report)}
    return Theorem1Report(**fields, **teacher_loss_change(teacher_loss, start, dS_E))


def teacher_loss_change(teacher_loss, start, dS_E) -> dict:
    """L_T(start), L_T(start + dS) - L_T(start) and its first-order part grad L_T(start) . dS, per update in dS_E."""
    lt0 = teacher_loss(start)
    grad_start = jax.grad(teacher_loss)(start)
    return {
        "teacher_loss0": lt0,
        "teacher_loss_change_E": jax.vmap(lambda dS: teacher_loss(tree_add(start, dS)) - lt0)(dS_E),
        "first_order_loss_change_E": jax.vmap(lambda dS: inner(grad_start, dS))(dS_E),
    }

