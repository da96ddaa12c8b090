"""Configuration of the MNIST auxiliary-logit experiment (paper Section 6.2; authors' settings in brackets there)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from results import fingerprint

# Bumped whenever the code changes the numbers for the same settings, so that --resume never mixes chunks made by
# different versions. 2: 16-bit-grid noise pixels and teacher logits stored after the students' first epoch.
PROTOCOL_VERSION = 2


@dataclass(frozen=True)
class MnistConfig:
    runs: int = 100  # independent (reference, teacher, 4 students) runs
    seed: int = 0
    hidden: tuple[int, ...] = (256, 256)
    n_aux: int = 3
    epochs: int = 5  # teacher and students alike
    batch_size: int = 1024
    lr: float = 3e-4  # Adam
    n_noise: int = 60_000  # fixed uniform[-1, 1] images per run (regenerated from the run's key, never stored)
    chunk_size: int = 25  # runs trained at once (vmap); bounds the memory peak
    eval_subset: int = 2048  # MNIST train images on which the teacher's class loss is tracked along the student run
    log_steps: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)  # plus the final step
    data_dir: str | None = None  # torchvision MNIST root; None = mnist_mlp.data.default_data_dir()

    @classmethod
    def paper(cls, **kw) -> MnistConfig:
        """The paper's protocol: 100 runs, 5 epochs, Adam 3e-4, batch 1024."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> MnistConfig:
        """The same protocol with 4 runs: about a minute on 2 CPU cores."""
        kw.setdefault("runs", 4)
        kw.setdefault("chunk_size", 4)
        return cls(**kw)

    def __post_init__(self):
        if self.runs < 2:
            raise ValueError(f"runs={self.runs}: need at least 2 runs to pair students with a DIFFERENT teacher")
        if self.chunk_size < 1 or self.epochs < 1 or self.batch_size < 1 or self.n_noise < 1:
            raise ValueError("chunk_size, epochs, batch_size and n_noise must be >= 1")
        if self.n_aux < 1:
            raise ValueError("n_aux must be >= 1: the students imitate the auxiliary logits")

    def science_dict(self) -> dict:
        """The settings that change the numbers (not where data lives or how runs are chunked)."""
        d = dataclasses.asdict(self)
        d.pop("data_dir")
        d.pop("chunk_size")
        d["protocol_version"] = PROTOCOL_VERSION
        return d

    def fingerprint(self) -> str:
        return fingerprint(self.science_dict(), 12)

    @property
    def preset_name(self) -> str:
        return "paper" if self.runs >= 100 else ("quick" if self.runs <= 4 else "custom")
