"""The projection diagnostic of subliminal learning on LoRA updates of a real small LLM (paper Sections 3-4, 6).

Pipeline (one function and one CLI subcommand per stage, see ``python -m llm_bridge --help``):
teacher = base + LoRA dT distilled from the paper's owl system prompt -> number continuations from teacher and base,
kept by the paper's format filter -> students with EXACTLY the teacher's LoRA init, SFT on those numbers (treatment on
the teacher's, control on the base's) -> Lemma 1 / Theorem 1 geometry of dS and dC against dT with the ``theory``
functions, in LoRA parameter space and in dW = (alpha / r) B A space -> trait probabilities.

Layer 3, an experiment: imports ``theory`` and ``results`` only (never ``mnist_mlp`` or ``figures``). Stages are
plain functions in ``llm_bridge.stages``; ``llm_bridge.pipeline`` orchestrates them (paths, resume) and
``llm_bridge.study`` reuses them; ``__main__`` is the CLI layer.

Public API (``__all__``; each name loads its module on first use, so ``import llm_bridge`` imports neither torch nor
JAX, and ``--report`` paths that need neither stay free of them):

- configurations: ``LLMConfig`` (the pipeline), ``StudyConfig``, ``LadderConfig``, ``ReplicationConfig``,
  ``ScanConfig``, ``ScanEvalConfig``; ``run_name``, ``model_slug``
- the commands' entry points: ``run_pipeline`` (``python -m llm_bridge run``), ``run_study`` (``study``),
  ``run_ladder`` (``ladder``), ``run_replication`` (``replicate``), ``run_scan`` (``scan``), ``evaluate_scan``,
  ``format_scan``, ``diagnose``; ``Pipeline`` (every stage of one config on one loaded model); the scan's data:
  ``read_rows`` (a JSONL file of prompt/completion rows), ``shuffled`` (a null with the same numbers)
- models and errors: ``load_base``, ``ModelError``, ``ScanError``
- building blocks: prompts (``ANIMALS``, ``animal_questions``, ``number_prompts``), sampling (``chat_prefix``,
  ``sample``, ``paper_filter``), LoRA (``attach_lora``, ``lora_parameters``, ``get_state``, ``set_state``),
  training (``encode``, ``sft_loss``, ``fit``), the ladder's rungs (``RUNGS``, ``digit_token_ids``,
  ``output_matrix``, ``completion_hidden``, ``subset_logits``, ``subset_kl``, ``bucketed_kl``, ``random_inputs``),
  and the trait read-out (``trait_probabilities``)
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use by __getattr__ below; named here for type checkers and the API reference
    from llm_bridge.config import LadderConfig, LLMConfig, ReplicationConfig, StudyConfig, model_slug, run_name
    from llm_bridge.diagnostic import diagnose
    from llm_bridge.ladder import random_inputs
    from llm_bridge.ladder import run as run_ladder
    from llm_bridge.lora import attach_lora, get_state, lora_parameters, set_state
    from llm_bridge.models import ModelError, load_base
    from llm_bridge.numbers import chat_prefix, paper_filter, sample
    from llm_bridge.pipeline import Pipeline
    from llm_bridge.pipeline import run as run_pipeline
    from llm_bridge.prompts import ANIMALS, animal_questions, number_prompts
    from llm_bridge.replication import run as run_replication
    from llm_bridge.rungs import (
        RUNGS,
        bucketed_kl,
        completion_hidden,
        digit_token_ids,
        output_matrix,
        subset_kl,
        subset_logits,
    )
    from llm_bridge.scan import ScanConfig, ScanError, ScanEvalConfig, format_scan, read_rows, shuffled
    from llm_bridge.scan import evaluate as evaluate_scan
    from llm_bridge.scan import scan as run_scan
    from llm_bridge.stages.trait import probabilities as trait_probabilities
    from llm_bridge.study import run as run_study
    from llm_bridge.train import encode, fit, sft_loss

# face name -> the module that defines it ("module:attribute" where the face renames it)
_LAZY = {
    "LLMConfig": "llm_bridge.config", "StudyConfig": "llm_bridge.config", "LadderConfig": "llm_bridge.config",
    "ReplicationConfig": "llm_bridge.config", "model_slug": "llm_bridge.config", "run_name": "llm_bridge.config",
    "run_pipeline": "llm_bridge.pipeline:run", "run_study": "llm_bridge.study:run",
    "run_ladder": "llm_bridge.ladder:run", "run_replication": "llm_bridge.replication:run",
    "run_scan": "llm_bridge.scan:scan", "evaluate_scan": "llm_bridge.scan:evaluate",
    "format_scan": "llm_bridge.scan", "diagnose": "llm_bridge.diagnostic", "Pipeline": "llm_bridge.pipeline",
    "ScanConfig": "llm_bridge.scan", "ScanEvalConfig": "llm_bridge.scan", "ScanError": "llm_bridge.scan",
    "read_rows": "llm_bridge.scan", "shuffled": "llm_bridge.scan",
    "ModelError": "llm_bridge.models", "load_base": "llm_bridge.models",
    "ANIMALS": "llm_bridge.prompts", "animal_questions": "llm_bridge.prompts", "number_prompts": "llm_bridge.prompts",
    "chat_prefix": "llm_bridge.numbers", "paper_filter": "llm_bridge.numbers", "sample": "llm_bridge.numbers",
    "attach_lora": "llm_bridge.lora", "get_state": "llm_bridge.lora", "lora_parameters": "llm_bridge.lora",
    "set_state": "llm_bridge.lora",
    "encode": "llm_bridge.train", "fit": "llm_bridge.train", "sft_loss": "llm_bridge.train",
    "RUNGS": "llm_bridge.rungs", "bucketed_kl": "llm_bridge.rungs", "completion_hidden": "llm_bridge.rungs",
    "digit_token_ids": "llm_bridge.rungs", "output_matrix": "llm_bridge.rungs", "subset_kl": "llm_bridge.rungs",
    "subset_logits": "llm_bridge.rungs", "random_inputs": "llm_bridge.ladder",
    "trait_probabilities": "llm_bridge.stages.trait:probabilities",
}

__all__ = [
    "LLMConfig", "StudyConfig", "LadderConfig", "ReplicationConfig", "ScanConfig", "ScanEvalConfig", "model_slug",
    "run_name",
    "run_pipeline", "run_study", "run_ladder", "run_replication", "run_scan", "evaluate_scan", "format_scan",
    "read_rows", "shuffled",
    "diagnose", "Pipeline",
    "load_base", "ModelError", "ScanError",
    "ANIMALS", "animal_questions", "number_prompts", "chat_prefix", "sample", "paper_filter",
    "attach_lora", "lora_parameters", "get_state", "set_state", "encode", "sft_loss", "fit",
    "RUNGS", "digit_token_ids", "output_matrix", "completion_hidden", "subset_logits", "subset_kl", "bucketed_kl",
    "random_inputs", "trait_probabilities",
]


def __getattr__(name: str):
    """The names of ``_LAZY``, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, _, attr = _LAZY[name].partition(":")
    value = globals()[name] = getattr(importlib.import_module(module), attr or name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
