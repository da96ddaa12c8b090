"""The projection diagnostic of subliminal learning on LoRA updates of a real small LLM (paper Sections 3-4, 6).

Pipeline (one function and one CLI subcommand per stage, see ``python -m llm_bridge --help``):
teacher = base + LoRA dT distilled from the paper's owl system prompt -> number continuations from teacher and base,
kept by the paper's format filter -> students with EXACTLY the teacher's LoRA init, SFT on those numbers (treatment on
the teacher's, control on the base's) -> Lemma 1 / Theorem 1 geometry of dS and dC against dT with the ``theory``
functions, in LoRA parameter space and in dW = (alpha / r) B A space -> trait probabilities.

Layer 3, an experiment: imports ``theory`` and ``results`` only (never ``mnist_mlp`` or ``figures``). Stages are
plain functions in ``llm_bridge.stages``; ``llm_bridge.pipeline`` orchestrates them (paths, resume) and
``llm_bridge.study`` reuses them; ``__main__`` is the CLI layer.
"""
