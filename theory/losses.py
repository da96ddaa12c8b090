"""Imitation losses L_S(z, y) between student logits z and teacher logits y (paper Section 6, Appendix C).

A loss is a callable ``loss(logits_BxK, targets_BxK) -> scalar`` (mean over the batch). The proof of Lemma 1 needs two
facts about L_S, both pinned by tests: its gradient in z vanishes at z = y, and M = -d^2 L_S / dy dz is positive
semi-definite with a null space orthogonal to dL_S/dz. ``curvature_BxKxK`` returns that M per example in closed form:
- softmax cross-entropy (soft targets softmax(y)): M = diag(p) - p p^T with p = softmax(y), the covariance of the
  categorical distribution p; restricted to ``subset`` the softmax runs over those logits only and M is zero elsewhere.
  At a distillation temperature T both softmaxes take logits / T (Hinton et al.'s tempered targets, without their T^2
  factor): M = (diag(p) - p p^T) / T^2 with p = softmax(y / T).
- squared error sum_k w_k (z_k - y_k)^2: M = 2 diag(w); w_k = 0 leaves logit k out of the loss.
The paper's MNIST student (Section 6.2) uses KL(softmax(y_aux) || softmax(z_aux)), which is the cross-entropy minus the
teacher's entropy: the same gradients and the same M.

Losses are frozen dataclasses, so they hash and can be passed to ``jax.jit`` as static arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Loss",
    "SoftmaxCrossEntropy",
    "KLDivergence",
    "SquaredError",
    "softmax_cross_entropy",
    "kl_divergence",
    "squared_error",
    "get_loss",
    "LOSS_NAMES",
]

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def _check_logits(logits_BxK, targets_BxK, subset) -> None:
    if jnp.ndim(logits_BxK) != 2 or jnp.ndim(targets_BxK) != 2:
        raise ValueError(
            f"logits and targets must have rank 2 (batch B x logits K); got shapes {jnp.shape(logits_BxK)} and "
            f"{jnp.shape(targets_BxK)}. Add a batch axis (x[None]) for one example, or flatten extra axes."
        )
    if jnp.shape(logits_BxK) != jnp.shape(targets_BxK):
        raise ValueError(
            f"student logits {jnp.shape(logits_BxK)} and teacher targets {jnp.shape(targets_BxK)} differ in shape; "
            "both must come from networks with the same output layer."
        )
    if subset is not None:
        k = jnp.shape(logits_BxK)[1]
        if max(subset) >= k:
            raise ValueError(f"subset {subset} indexes logit {max(subset)} but the model has only K={k} logits")


def _check_subset(subset) -> tuple[int, ...] | None:
    if subset is None:
        return None
    subset = tuple(int(i) for i in subset)
    if not subset:
        raise ValueError("subset must name at least one logit (or be None for all logits)")
    if min(subset) < 0 or len(set(subset)) != len(subset):
        raise ValueError(f"subset must hold distinct non-negative logit indices; got {subset}")
    return subset


@dataclass(frozen=True)
class SoftmaxCrossEntropy:
    """-sum_k softmax(y/T)_k log softmax(z/T)_k over ``subset`` (all logits if None), mean over the batch; T is the
    ``temperature`` (1: the plain loss)."""

    subset: tuple[int, ...] | None = None
    temperature: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "subset", _check_subset(self.subset))
        t = float(self.temperature)
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be finite and > 0; got {self.temperature}")
        object.__setattr__(self, "temperature", t)

    def _select(self, a_BxK):
        a = a_BxK if self.subset is None else a_BxK[:, jnp.asarray(self.subset)]
        return a if self.temperature == 1.0 else a / self.temperature  # T = 1 untouched: bit for bit the plain loss

    def __call__(self, logits_BxK, targets_BxK):
        _check_logits(logits_BxK, targets_BxK, self.subset)
        p_BxS = jax.nn.softmax(self._select(targets_BxK), axis=-1)
        return -jnp.mean(jnp.sum(p_BxS * jax.nn.log_softmax(self._select(logits_BxK), axis=-1), axis=-1))

    def curvature_BxKxK(self, targets_BxK):
        """Closed-form M = -d^2 L / dy dz per example (the batch mean's 1/B not included)."""
        p_BxS = jax.nn.softmax(self._select(targets_BxK), axis=-1)
        m_BxSxS = jax.vmap(jnp.diag)(p_BxS) - p_BxS[:, :, None] * p_BxS[:, None, :]
        if self.temperature != 1.0:
            m_BxSxS = m_BxSxS / self.temperature**2
        if self.subset is None:
            return m_BxSxS
        b, k = jnp.shape(targets_BxK)
        idx = jnp.asarray(self.subset)
        return jnp.zeros((b, k, k), m_BxSxS.dtype).at[:, idx[:, None], idx[None, :]].set(m_BxSxS)


@dataclass(frozen=True)
class KLDivergence(SoftmaxCrossEntropy):
    """KL(softmax(y/T) || softmax(z/T)) over ``subset``: cross-entropy minus the teacher's entropy (a constant in
    z)."""

    def __call__(self, logits_BxK, targets_BxK):
        ce = super().__call__(logits_BxK, targets_BxK)
        log_p_BxS = jax.nn.log_softmax(self._select(targets_BxK), axis=-1)
        return ce + jnp.mean(jnp.sum(jnp.exp(log_p_BxS) * log_p_BxS, axis=-1))


@dataclass(frozen=True)
class SquaredError:
    """sum_k w_k (z_k - y_k)^2, mean over the batch; w = 1 by default, w_k = 0 outside ``subset``."""

    weights: tuple[float, ...] | None = None
    subset: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "subset", _check_subset(self.subset))
        if self.weights is not None:
            w = tuple(float(x) for x in np.ravel(self.weights))
            if not all(np.isfinite(x) and x >= 0 for x in w):
                raise ValueError(f"squared-error weights must be finite and >= 0 (0 = leave logit out); got {w}")
            object.__setattr__(self, "weights", w)

    def weight_vector(self, k: int, dtype=jnp.float32) -> jax.Array:
        if self.weights is not None and len(self.weights) != k:
            raise ValueError(f"squared_error has {len(self.weights)} weights but the model has K={k} logits")
        w = jnp.ones((k,), dtype) if self.weights is None else jnp.asarray(self.weights, dtype)
        if self.subset is not None:
            w = jnp.zeros((k,), dtype).at[jnp.asarray(self.subset)].set(w[jnp.asarray(self.subset)])
        return w

    def __call__(self, logits_BxK, targets_BxK):
        _check_logits(logits_BxK, targets_BxK, self.subset)
        w_K = self.weight_vector(jnp.shape(logits_BxK)[1], jnp.result_type(logits_BxK))
        return jnp.mean(jnp.sum(w_K * (logits_BxK - targets_BxK) ** 2, axis=-1))

    def curvature_BxKxK(self, targets_BxK):
        """Closed-form M = -d^2 L / dy dz = 2 diag(w) per example (the batch mean's 1/B not included)."""
        b, k = jnp.shape(targets_BxK)
        w_K = self.weight_vector(k, jnp.result_type(targets_BxK))
        return jnp.broadcast_to(2.0 * jnp.diag(w_K), (b, k, k))


def softmax_cross_entropy(subset=None, temperature: float = 1.0) -> SoftmaxCrossEntropy:
    """Soft-label cross-entropy on the logits in ``subset`` (a sequence of indices; None = all), at ``temperature``."""
    return SoftmaxCrossEntropy(subset=subset, temperature=temperature)


def kl_divergence(subset=None, temperature: float = 1.0) -> KLDivergence:
    """KL(teacher || student) of the softmax over ``subset``: the MNIST auxiliary-logit loss of Section 6.2 (at
    ``temperature`` T, the softmaxes of logits / T)."""
    return KLDivergence(subset=subset, temperature=temperature)


def squared_error(weights=None, subset=None) -> SquaredError:
    """Weighted squared error; ``weights`` (one per logit, >= 0) and/or ``subset`` select the logits that count."""
    return SquaredError(weights=weights, subset=subset)


_CONSTRUCTORS = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "ce": softmax_cross_entropy,
    "kl_divergence": kl_divergence,
    "kl": kl_divergence,
    "squared_error": squared_error,
    "se": squared_error,
}
LOSS_NAMES = tuple(_CONSTRUCTORS)


def get_loss(loss: str | Loss, **kwargs) -> Loss:
    """A loss from its name (``"ce"``, ``"kl"``, ``"se"`` or the long names) or a callable passed through."""
    if callable(loss):
        if kwargs:
            raise ValueError("keyword arguments are only used when the loss is given by name")
        return loss
    if not isinstance(loss, str) or loss not in _CONSTRUCTORS:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSS_NAMES)} or pass a callable "
                         "loss(logits_BxK, targets_BxK) -> scalar")
    return _CONSTRUCTORS[loss](**kwargs)
