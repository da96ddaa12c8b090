"""The paper's MNIST auxiliary-logit experiment (Section 6.2, Fig. 10) and its projection diagnostic.

Layer 3, an experiment: imports ``theory`` and ``results`` only (never ``llm_bridge`` or ``figures``); its
``__main__`` is the CLI layer and draws the figure through ``figures``.

Public API (``__all__``; each name loads its module on first use, so ``import mnist_mlp`` costs nothing and a CLI's
``--help`` does not wait for JAX):

- configuration: ``MnistConfig`` (presets ``tiny``, ``quick``, ``paper``), ``MATMUL_PRECISIONS``
- data: ``ensure_mnist``, ``ensure_dataset``, ``load_mnist``, ``load_dataset``, ``prepare_from_gz``,
  ``default_data_dir``, ``data_required``, ``DataError``
- one experiment: ``run`` (teachers, then students, then ``results.json``), ``run_stacked`` (several configurations
  that differ only in their students, in one batch), ``Experiment``
- the sweeps: ``SWEEPS``, ``Sweep``, ``run_sweep``, ``sweep_name``, ``load_sweeps``, ``transfer_map``
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use by __getattr__ below; named here for type checkers and the API reference
    from mnist_mlp.config import MATMUL_PRECISIONS, MnistConfig
    from mnist_mlp.data import (
        DataError,
        data_required,
        default_data_dir,
        ensure_dataset,
        ensure_mnist,
        load_dataset,
        load_mnist,
        prepare_from_gz,
    )
    from mnist_mlp.experiment import Experiment, run, run_stacked
    from mnist_mlp.sweeps import SWEEPS, Sweep, load_sweeps, run_sweep, sweep_name, transfer_map

# face name -> the module that defines it
_LAZY = {
    "MATMUL_PRECISIONS": "mnist_mlp.config", "MnistConfig": "mnist_mlp.config",
    "DataError": "mnist_mlp.data", "data_required": "mnist_mlp.data", "default_data_dir": "mnist_mlp.data",
    "ensure_dataset": "mnist_mlp.data", "ensure_mnist": "mnist_mlp.data", "load_dataset": "mnist_mlp.data",
    "load_mnist": "mnist_mlp.data", "prepare_from_gz": "mnist_mlp.data",
    "Experiment": "mnist_mlp.experiment", "run": "mnist_mlp.experiment", "run_stacked": "mnist_mlp.experiment",
    "SWEEPS": "mnist_mlp.sweeps", "Sweep": "mnist_mlp.sweeps", "load_sweeps": "mnist_mlp.sweeps",
    "run_sweep": "mnist_mlp.sweeps", "sweep_name": "mnist_mlp.sweeps", "transfer_map": "mnist_mlp.sweeps",
}

__all__ = [
    "MATMUL_PRECISIONS", "MnistConfig",
    "DataError", "data_required", "default_data_dir", "ensure_dataset", "ensure_mnist", "load_dataset", "load_mnist",
    "prepare_from_gz",
    "Experiment", "run", "run_stacked",
    "SWEEPS", "Sweep", "load_sweeps", "run_sweep", "sweep_name", "transfer_map",
]


def __getattr__(name: str):
    """The names of ``_LAZY``, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = globals()[name] = getattr(importlib.import_module(_LAZY[name]), name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
