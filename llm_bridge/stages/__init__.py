"""The pipeline's stages, one module each, each a plain function of (model, config, seed, inputs) -> artifact:
``teacher`` (dT), ``numbers`` (filtered number continuations), ``students`` (dS, dC), ``first_step`` (Theorem 1),
``trait`` (favourite-animal probabilities), ``diagnostic`` (geometry of the saved adapters). Where artifacts live and
whether they are reused is ``llm_bridge.pipeline``'s business; the stages read and write no run files."""
