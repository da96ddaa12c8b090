"""Theorem 1 beyond one gradient-descent step: the student's first update under any optax optimizer, its small-eps
limit for sign-like steps, and K steps of imitation (paper Section 6 proves the gradient-descent case only).

Setting as in ``theory.lemma``: shared init theta_0, teacher theta_T = theta_0 + eps dT, student imitation gradient

    g = grad L_S at the student's start = -eps E_x[J^T M J dT] + O(eps^2)  (shared init; ``first_order_update``/lr)

- SGD (with or without momentum: the trace starts at 0) steps -lr g, so its projection on dT is Lemma 1's, >= 0.
- SignSGD, Signum and Lion (first step) step -lr sign(g). As eps -> 0, sign(g) -> -sign(v) with v = J^T M J dT, so

      dS -> lr sign(v),   dS . dT -> lr sum_i sign(v_i) dT_i                       (sign_first_order_update)

  which no longer depends on eps and is NOT guaranteed non-negative: v is dT bent by the curvature, and its signs can
  disagree with dT's where the weights of dT are large. It is non-negative when J^T M J is diagonal (then
  sign(v_i) dT_i = |dT_i| or 0), e.g. an element-wise linear model under squared error.
- Adam's bias-corrected first step is -lr g / (|g| + eps_adam): sign(g) while |g| >> eps_adam, but as the teacher's
  eps -> 0 the gradient falls below eps_adam and the step tends to -lr g / eps_adam, gradient descent again. So Adam
  has no eps-independent limit: its first step is sign-like at practical distances and Lemma-1-like only for
  teachers within ~eps_adam / |v| of the init. AdamW adds -lr wd theta_start, a term that does not vanish with eps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from theory.lemma import _imitation_grad, _validate, first_order_update
from theory.losses import get_loss
from theory.pytree import cosine, flatten, tree_sub

__all__ = [
    "OPTIMIZER_NAMES",
    "SIGN_LIKE",
    "DEFAULT_LR",
    "make_optimizer",
    "optimizer_first_step",
    "sign_first_order_update",
    "KStepReport",
    "k_step_projection",
]

OPTIMIZER_NAMES = ("sgd", "momentum", "adam", "adamw", "signsgd", "lion")
SIGN_LIKE = ("signsgd", "lion")  # first step is exactly -lr sign(g); Adam is sign-like only while |g| >> eps_adam
# One learning rate per optimizer for the K-step curves (the first step's sign does not depend on lr). Sign-like and
# adaptive steps move every weight by ~lr: 1e-5 keeps 100 sign steps within ~10x of a teacher at eps = 1e-2 from the
# init (its weights sit ~1e-4 away each), where 1e-4 overshoots and oscillates. Gradient descent at the projection
# grid's 0.1 diverged within 100 steps on squared-error imitation of the transformer block; 1e-2 does not.
DEFAULT_LR = {"sgd": 1e-2, "momentum": 1e-2, "adam": 1e-5, "adamw": 1e-5, "signsgd": 1e-5, "lion": 1e-5}


def make_optimizer(name: str, lr: float | None = None) -> optax.GradientTransformation:
    """The named optax optimizer of the grid (``lr`` defaults to ``DEFAULT_LR[name]``)."""
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZER_NAMES)}")
    lr = DEFAULT_LR[name] if lr is None else lr
    return {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr),  # optax's default weight decay 1e-4
        "signsgd": lambda: optax.sign_sgd(lr),
        "lion": lambda: optax.lion(lr, weight_decay=0.0),  # decay off, so its first step is the pure sign step
    }[name]()


def optimizer_first_step(apply_fn, params0, teacher_params, xs, loss, optimizer: optax.GradientTransformation, *,
                         student_params0=None):
    """The student's first update under ``optimizer`` (any optax ``GradientTransformation``), imitating
    ``teacher_params`` on ``xs`` from ``student_params0`` (None: the shared init ``params0``).

    optax's updates already carry the minus sign and the learning rate: for ``optax.sgd(lr)`` this equals
    ``theory.student_update(..., lr)``."""
    loss = get_loss(loss)
    _validate(params0, teacher_params, xs, other_name="teacher_params")
    start = params0 if student_params0 is None else student_params0
    if student_params0 is not None:
        _validate(params0, student_params0, xs, other_name="student_params0")
    targets_BxK = jax.lax.stop_gradient(apply_fn(teacher_params, xs))
    g = _imitation_grad(apply_fn, start, targets_BxK, xs, loss)
    updates, _ = optimizer.update(g, optimizer.init(start), start)
    return updates


def sign_first_order_update(apply_fn, params0, dT, xs, loss, lr):
    """The eps -> 0 limit of a sign step's first update (SignSGD, Lion): lr * sign(E_x[J^T M J dT]).

    Its projection on dT, lr * sum_i sign(v_i) dT_i, does not depend on eps; it is >= 0 when J^T M J is diagonal,
    and can be negative otherwise (``tests/theory/test_optimizers.py`` pins one such network)."""
    v = first_order_update(apply_fn, params0, dT, xs, loss, 1.0)
    return jax.tree_util.tree_map(lambda a: lr * jnp.sign(a), v)


@struct.dataclass
class KStepReport:
    """Cumulative student update theta_S(k) - start after k steps, at each k of ``k_K`` (vmappable)."""

    k_K: jax.Array
    inner_K: jax.Array  # (theta_S(k) - start) . dT
    cosine_K: jax.Array
    imitation_loss_K: jax.Array  # L_S at theta_S(k)
    teacher_loss_change_K: jax.Array  # L_T(theta_S(k)) - L_T(start); NaN without a teacher loss


def k_step_projection(apply_fn, params0, teacher_params, xs, loss, optimizer: optax.GradientTransformation,
                      ks: Sequence[int], *, student_params0=None,
                      teacher_loss: Callable | None = None) -> KStepReport:
    """K full-batch steps of ``optimizer`` on the imitation loss against the fixed teacher, from ``student_params0``
    (None: the shared init); the projection and cosine of the cumulative update on dT = teacher - params0, and the
    teacher's loss change, at every K in ``ks`` (max(ks) steps in all)."""
    loss = get_loss(loss)
    _validate(params0, teacher_params, xs, other_name="teacher_params")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive step counts, got {ks}")
    start = params0 if student_params0 is None else student_params0
    dT_vec = flatten(tree_sub(teacher_params, params0))
    targets_BxK = jax.lax.stop_gradient(apply_fn(teacher_params, xs))
    lt0 = teacher_loss(start) if teacher_loss is not None else jnp.nan

    def measure(p):
        d_vec = flatten(tree_sub(p, start))
        lt = teacher_loss(p) - lt0 if teacher_loss is not None else jnp.asarray(jnp.nan)
        return jnp.vdot(d_vec, dT_vec), cosine(d_vec, dT_vec), loss(apply_fn(p, xs), targets_BxK), lt

    def step(carry, _):
        p, state = carry
        g = _imitation_grad(apply_fn, p, targets_BxK, xs, loss)
        updates, state = optimizer.update(g, state, p)
        return (optax.apply_updates(p, updates), state), None

    # A scan over the segments between consecutive ks, each a loop of its length, measuring only at their ends:
    # one compiled step body however many ks (measuring every step would cost two extra forward passes a step).
    def segment(carry, n):
        carry = jax.lax.fori_loop(0, n, lambda _, c: step(c, None)[0], carry)
        return carry, measure(carry[0])

    lengths = jnp.diff(jnp.asarray([0, *ks]))
    _, cols = jax.lax.scan(segment, (start, optimizer.init(start)), lengths)
    return KStepReport(jnp.asarray(ks), *cols)
