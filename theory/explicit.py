"""Dense reference implementations for small models: the independent estimates the matrix-free code is tested against.

They build the full Jacobian J (B*K x P) and the full curvature -d^2 L / dy dz (B*K x B*K) with autodiff, so they cost
O(B K P) memory: use them on toy networks only (tests, teaching notebooks).
"""

from __future__ import annotations

import jax
from jax.flatten_util import ravel_pytree

from theory.losses import get_loss

__all__ = ["jacobian_matrix", "curvature_matrix", "first_order_update_explicit", "gauss_newton_quadratic_explicit"]


def jacobian_matrix(apply_fn, params0, xs):
    """J of the flattened logits (B*K) with respect to the flattened parameters (P)."""
    flat0, unravel = ravel_pytree(params0)
    return jax.jacfwd(lambda v: apply_fn(unravel(v), xs).reshape(-1))(flat0)


def curvature_matrix(loss, z0_BxK):
    """-d^2 L / dy dz at z = y = z0, as a (B*K) x (B*K) matrix (includes the batch mean's 1/B)."""
    loss = get_loss(loss)
    shape = z0_BxK.shape
    def grad_z(y):
        return jax.grad(loss, argnums=0)(z0_BxK, y.reshape(shape)).reshape(-1)
    return -jax.jacfwd(grad_z)(z0_BxK.reshape(-1))


def first_order_update_explicit(apply_fn, params0, dT, xs, loss, lr):
    """lr * J^T M J dT with J and M materialized; returns a pytree like params0."""
    flat0, unravel = ravel_pytree(params0)
    dT_vec, _ = ravel_pytree(dT)
    j = jacobian_matrix(apply_fn, params0, xs)
    m = curvature_matrix(loss, apply_fn(params0, xs))
    return unravel(lr * j.T @ (m @ (j @ dT_vec)))


def gauss_newton_quadratic_explicit(apply_fn, params0, dT, xs, loss):
    dT_vec, _ = ravel_pytree(dT)
    u = jacobian_matrix(apply_fn, params0, xs) @ dT_vec
    return u @ curvature_matrix(loss, apply_fn(params0, xs)) @ u


