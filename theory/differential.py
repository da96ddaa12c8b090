"""Trait-specific geometry: separate the part of a student's update that is due to the TRAIT from the direction that
any fine-tuning on similar data shares (paper Section 6, Lemma 1, applied to differences of updates).

Lemma 1 says a student imitating a teacher moves along the teacher's update dT. In practice every LoRA SFT on chat data
also moves along a generic direction, so cos(dS, dT) is positive even for a CONTROL student trained on a trait-free
teacher's data. Two differences remove the shared part:

- dS - dC: the treated student's update minus the control's (same init, same recipe, data from the trait teacher vs a
  trait-free source);
- dT - dN: the trait teacher's update minus a NEUTRAL teacher's (same recipe and prompts, trained on the base model's
  own answers).

``trait_specific`` computes the quantities from the updates themselves; ``trait_specific_from_gram`` computes the same
numbers from the Gram matrix of the raw vectors (so per-module Gram matrices of huge dW = B A updates, found without
forming dW, can be summed over any group of modules). Tests check one against the other.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from theory.pytree import check_finite, cosine, inner, normalized_projection, tree_sub

QUANTITIES = (
    "cos_teacher_neutral",  # cos(dT, dN): how much of the teacher's update is generic
    "cos_student_teacher", "cos_control_teacher",  # the plain diagnostic
    "cos_diff_teacher", "proj_diff_teacher",  # (dS - dC) on dT
    "cos_diff_specific", "proj_diff_specific",  # (dS - dC) on (dT - dN)
    "cos_student_specific", "cos_control_specific",  # cos(dS, dT - dN) vs cos(dC, dT - dN)
)
ROLES = ("student", "control", "teacher", "neutral")


def trait_specific(student, control, teacher, neutral) -> dict[str, jnp.ndarray]:
    """The ``QUANTITIES`` of four updates (pytrees of one structure, each theta - theta_0 of one shared init).

    ``proj_*`` is the normalized projection <a, b> / |b|^2: ``proj_diff_specific`` = 1 means dS - dC contains all of
    dT - dN; a planted student = control + a (dT - dN) gives exactly a."""
    for name, t in zip(ROLES, (student, control, teacher, neutral)):
        check_finite(t, name=name)
    diff, specific = tree_sub(student, control), tree_sub(teacher, neutral)
    return {
        "cos_teacher_neutral": cosine(teacher, neutral),
        "cos_student_teacher": cosine(student, teacher), "cos_control_teacher": cosine(control, teacher),
        "cos_diff_teacher": cosine(diff, teacher), "proj_diff_teacher": normalized_projection(diff, teacher),
        "cos_diff_specific": cosine(diff, specific), "proj_diff_specific": normalized_projection(diff, specific),
        "cos_student_specific": cosine(student, specific), "cos_control_specific": cosine(control, specific),
    }


def gram(vectors) -> jnp.ndarray:
    """G_KxK[i, j] = <v_i, v_j> for a sequence of K pytrees of one structure."""
    k = len(vectors)
    return jnp.array([[inner(vectors[i], vectors[j]) for j in range(k)] for i in range(k)])


def trait_specific_from_gram(gram_KxK, index: dict[str, int], *, init: int | None = None) -> dict[str, float]:
    """The ``QUANTITIES`` from the Gram matrix of K raw vectors: ``index`` maps each of ``ROLES`` to its row. If
    ``init`` is a row index, the updates are v - v_init (so the Gram of raw parameters suffices); else the vectors
    already are updates. Works in float64 numpy: Gram entries of large vectors cancel in the differences."""
    G = np.asarray(gram_KxK, np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"gram_KxK must be square, got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ValueError("the Gram matrix holds NaN/inf: an update diverged; check the adapters")
    missing = set(ROLES) - set(index)
    if missing:
        raise ValueError(f"index lacks {sorted(missing)}; give the rows of {ROLES}")

    def coef(*terms):  # a vector as coefficients over the K rows: sum of (+-1, role) terms, minus init if needed
        c = np.zeros(len(G))
        for sign, role in terms:
            c[index[role]] += sign
            if init is not None:
                c[init] -= sign
        return c

    def ip(u, v):
        return float(u @ G @ v)

    def cos(u, v):
        return ip(u, v) / np.sqrt(ip(u, u) * ip(v, v))

    S, C, T, N = (coef((1, r)) for r in ROLES)
    diff, specific = S - C, T - N
    return {
        "cos_teacher_neutral": cos(T, N), "cos_student_teacher": cos(S, T), "cos_control_teacher": cos(C, T),
        "cos_diff_teacher": cos(diff, T), "proj_diff_teacher": ip(diff, T) / ip(T, T),
        "cos_diff_specific": cos(diff, specific), "proj_diff_specific": ip(diff, specific) / ip(specific, specific),
        "cos_student_specific": cos(S, specific), "cos_control_specific": cos(C, specific),
    }
