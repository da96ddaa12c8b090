"""Configuration of the theory grid (``python -m theory``): architectures x imitation losses x input distributions
x seeds, and the eps sweep of Lemma 1 / Theorem 1 (paper Section 6)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from theory import zoo
from theory.optimizers import OPTIMIZER_NAMES

# Bumped whenever the code changes the grid's numbers for the same settings, so that a resumed grid never mixes parts
# made by two versions (``TheoryConfig.science_dict``).
GRID_VERSION = 1
N_CLASSES, N_AUX = 10, 3
AUX = tuple(range(N_CLASSES, N_CLASSES + N_AUX))
LOSS_NAMES = ("ce", "se", "aux-ce", "aux-se")  # the aux- losses imitate the 3 auxiliary logits only
INPUTS = ("gaussian", "uniform", "mnist")  # "mnist": real digits, passed in by the caller (theory loads no files)
ALL_ARCHS = tuple(f"mlp{d}-{a}" for d in (1, 2, 3, 4) for a in ("relu", "tanh", "gelu")) + ("cnn", "transformer")


def arch_from_name(name: str) -> zoo.Arch:
    if name in ("cnn", "transformer"):
        return zoo.Arch(name)
    if name.startswith("mlp") and "-" in name:
        depth, act = name[3:].split("-", 1)
        if depth.isdigit() and act in zoo.ACTIVATIONS:
            return zoo.Arch("mlp", int(depth), act)
    raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ALL_ARCHS)}")


@dataclass(frozen=True)
class TheoryConfig:
    seed: int = 0
    dtype: str = "float64"
    archs: tuple[str, ...] = ALL_ARCHS
    losses: tuple[str, ...] = LOSS_NAMES
    inputs: tuple[str, ...] = INPUTS
    seeds_per_combo: int = 2
    batch: int = 32  # student's imitation inputs (and teacher batch for L_T)
    lr: float = 0.1
    eps: tuple[float, ...] = tuple(float(e) for e in np.logspace(-6, 1, 15))
    small_eps_max: float = 1e-4  # acceptance region of the Lemma (eps <= this)
    large_eps_min: float = 1.0  # counter-example region
    # The optimizer axis (theory.optimizer_grid): first steps at these teacher distances, K-step curves at one.
    optimizers: tuple[str, ...] = ("sgd", "momentum", "adam", "signsgd")
    optimizer_eps: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    k_steps: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    k_step_eps: float = 1e-2

    def __post_init__(self):
        for a in self.archs:
            arch_from_name(a)
        for name in self.losses:
            if name not in LOSS_NAMES:
                raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)}")
        for name in self.inputs:
            if name not in INPUTS:
                raise ValueError(f"unknown input distribution {name!r}; choose from {', '.join(INPUTS)}")
        if not (self.archs and self.losses and self.inputs):
            raise ValueError("archs, losses and inputs must each name at least one entry")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.seeds_per_combo < 1 or self.batch < 1:
            raise ValueError("seeds_per_combo and batch must be >= 1")
        for name in self.optimizers:
            if name not in OPTIMIZER_NAMES:
                raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZER_NAMES)}")
        if not self.optimizer_eps or min(self.optimizer_eps) <= 0 or self.k_step_eps <= 0:
            raise ValueError("optimizer_eps must name at least one eps, and every eps (and k_step_eps) must be > 0")
        if not self.k_steps or min(self.k_steps) < 1:
            raise ValueError(f"k_steps must be positive step counts, got {self.k_steps}")
        if not any(e <= self.small_eps_max for e in self.eps):
            raise ValueError(f"no eps <= small_eps_max={self.small_eps_max} in the sweep {self.eps}")

    @classmethod
    def paper(cls, **kw) -> TheoryConfig:
        """The full grid: 14 architectures x 4 losses x 3 inputs x 2 seeds = 336 cases."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> TheoryConfig:
        """A small grid that still covers every family and loss."""
        kw.setdefault("archs", ("mlp1-relu", "mlp2-tanh", "mlp3-gelu", "cnn", "transformer"))
        kw.setdefault("seeds_per_combo", 2)
        return cls(**kw)

    def science_dict(self) -> dict:
        """Everything the grid's numbers depend on: the settings, the code's ``GRID_VERSION`` and JAX's version. A
        store of finished parts (``theory.experiment.GridStore``) is valid for one such dict."""
        import jax

        return {**dataclasses.asdict(self), "grid_version": GRID_VERSION, "jax": jax.__version__}

    @property
    def n_cases(self) -> int:
        return len(self.archs) * len(self.losses) * len(self.inputs) * self.seeds_per_combo

    @property
    def mnist_images_needed(self) -> int:
        """Real digits the grid draws when ``"mnist"`` is among its inputs (student + teacher batches per case)."""
        return 2 * self.seeds_per_combo * self.batch if "mnist" in self.inputs else 0
