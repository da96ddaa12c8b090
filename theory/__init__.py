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
- statistics: ``bootstrap_ci``, ``mean_ci``, ``hierarchical_ci``, ``spearman_ci``, ``stratified_spearman``,
  ``slope_stats``
- explicit matrices (small models, for checking the matrix-free functions): ``jacobian_matrix``,
  ``curvature_matrix``, ``first_order_update_explicit``, ``gauss_newton_quadratic_explicit``
- the grid's model zoo: ``MLP``, ``CNN``, ``TransformerBlock``, ``Arch``, ``INPUT_DIM``, ``init_params``,
  ``random_update``, ``apply_fn_of``
- the Theorem 1 grid (``python -m theory``): ``TheoryConfig``, ``run_grid`` (``theory.experiment.run``),
  ``run_optimizer_grid`` (``theory.optimizer_grid.run``), ``fmt``; these three load on first use (the grid pulls
  in scipy.stats and tqdm)

Everything above is in ``__all__``; other modules' names are internal.
"""

from typing import TYPE_CHECKING

from theory.config import ALL_ARCHS, TheoryConfig
from theory.differential import QUANTITIES as TRAIT_SPECIFIC_QUANTITIES
from theory.differential import gram, trait_specific, trait_specific_from_gram
from theory.explicit import (
    curvature_matrix,
    first_order_update_explicit,
    gauss_newton_quadratic_explicit,
    jacobian_matrix,
)
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
from theory.stats import bootstrap_ci, hierarchical_ci, mean_ci, slope_stats, spearman_ci, stratified_spearman
from theory.tolerances import TOLERANCES, Tolerances, tolerances
from theory.zoo import CNN, INPUT_DIM, MLP, Arch, TransformerBlock, apply_fn_of, init_params, random_update

if TYPE_CHECKING:  # loaded on first use by __getattr__ below; named here for type checkers and the API reference
    from theory.experiment import fmt
    from theory.experiment import run as run_grid
    from theory.optimizer_grid import run as run_optimizer_grid

# face name -> "module:attribute" of the names loaded on first use
_LAZY = {"run_grid": "theory.experiment:run", "run_optimizer_grid": "theory.optimizer_grid:run",
         "fmt": "theory.experiment:fmt"}

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
    "bootstrap_ci", "hierarchical_ci", "mean_ci", "slope_stats", "spearman_ci", "stratified_spearman",
    "curvature_matrix", "first_order_update_explicit", "gauss_newton_quadratic_explicit", "jacobian_matrix",
    "CNN", "INPUT_DIM", "MLP", "Arch", "TransformerBlock", "apply_fn_of", "init_params", "random_update",
    "ALL_ARCHS", "TheoryConfig", "fmt", "run_grid", "run_optimizer_grid",
]


def __getattr__(name: str):
    """The names of ``_LAZY``, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name].split(":")
    value = globals()[name] = getattr(importlib.import_module(module), attr)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
