"""The paper's MNIST auxiliary-logit experiment (Section 6.2, Fig. 10) and its projection diagnostic.

Layer 3, an experiment: imports ``theory`` and ``results`` only (never ``llm_bridge`` or ``figures``); its
``__main__`` is the CLI layer and draws the figure through ``figures``."""
