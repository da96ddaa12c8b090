"""One script per figure; each splits compute (returns data, saved as JSON) from plot (draws from the JSON).

Layer 4: drives the experiments (``mnist_mlp``, ``llm_bridge``, ``theory``'s grid) and draws; nothing below imports
it. ``python -m figures`` (the CLI layer) regenerates every figure."""
