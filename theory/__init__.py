"""The projection diagnostic of subliminal learning (Cloud, Le, Chua et al., arXiv 2507.14805, Section 6).

Layer 1, the bottom: pure JAX math on pytrees and the statistics every experiment reports; imports nothing of ours
(real-MNIST inputs for the grid are passed in by the caller).

Public API (stable; imported by ``mnist_mlp``, ``llm_bridge`` and users' notebooks):

- geometry of updates: ``inner``, ``norm``, ``projection``, ``normalized_projection``, ``cosine``, ``flatten``
- imitation losses: ``softmax_cross_entropy``, ``kl_divergence``, ``squared_error``, ``get_loss``
- Lemma 1 / Theorem 1: ``student_update``, ``first_order_update``, ``gauss_newton_quadratic``,
  ``check_lemma1``, ``check_theorem1`` (reports ``Lemma1Report`` / ``Theorem1Report``)
- beyond gradient descent: ``optimizer_first_step`` (any optax optimizer), ``sign_first_order_update`` (the sign
  step's eps -> 0 limit), ``k_step_projection`` (K steps), ``make_optimizer``
- trait-specific geometry (dS - dC against dT - dN): ``trait_specific``, ``trait_specific_from_gram``, ``gram``
- tolerances by dtype: ``tolerances``
"""

from theory.differential import QUANTITIES as TRAIT_SPECIFIC_QUANTITIES
from theory.differential import gram, trait_specific, trait_specific_from_gram
from theory.lemma import (
    Lemma1Report,
    Theorem1Report,
    check_lemma1,
    check_theorem1,
    first_order_update,
    gauss_newton_quadratic,
    student_update,
    teacher_params,
)
from theory.losses import (
    LOSS_NAMES,
    KLDivergence,
    SoftmaxCrossEntropy,
    SquaredError,
    get_loss,
    kl_divergence,
    softmax_cross_entropy,
    squared_error,
)
from theory.optimizers import (
    KStepReport,
    k_step_projection,
    make_optimizer,
    optimizer_first_step,
    sign_first_order_update,
)
from theory.pytree import (
    check_finite,
    check_same_structure,
    cosine,
    flatten,
    inner,
    norm,
    normalized_projection,
    projection,
    remove_component,
    tree_add,
    tree_scale,
    tree_sub,
)
from theory.tolerances import TOLERANCES, Tolerances, tolerances

__all__ = [
    "Lemma1Report", "Theorem1Report", "check_lemma1", "check_theorem1", "first_order_update",
    "gauss_newton_quadratic", "student_update", "teacher_params",
    "LOSS_NAMES", "KLDivergence", "SoftmaxCrossEntropy", "SquaredError", "get_loss", "kl_divergence",
    "softmax_cross_entropy", "squared_error",
    "check_finite", "check_same_structure", "cosine", "flatten", "inner", "norm", "normalized_projection",
    "projection", "remove_component", "tree_add", "tree_scale", "tree_sub",
    "TOLERANCES", "Tolerances", "tolerances",
    "TRAIT_SPECIFIC_QUANTITIES", "gram", "trait_specific", "trait_specific_from_gram",
    "KStepReport", "k_step_projection", "make_optimizer", "optimizer_first_step", "sign_first_order_update",
]
