"""Configuration of the MNIST auxiliary-logit experiment (paper Section 6.2; authors' settings in brackets there)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from results import fingerprint

# Bumped whenever the code changes the numbers for the same settings, so that --resume never mixes chunks made by
# different versions. 2: 16-bit-grid noise pixels and teacher logits stored after the students' first epoch.
# 3: device-resident epochs (one compiled scan per epoch, diagnostics inside it): the same computation, which XLA
# fuses differently, so float32 sums round differently (on 2 runs x 2 epochs: per-run numbers within 1e-6 of
# version 2's, the same test-set counts).
PROTOCOL_VERSION = 3

DATASETS = ("mnist", "fashion")
STUDENT_INPUTS = ("uniform", "gaussian", "mnist", "fashion")
STUDENT_LOSSES = ("kl", "mse", "kl_t0.5", "kl_t2")
STUDENT_OPTIMIZERS = ("adam", "sgd", "signsgd")
REINITS = ("none", "hidden", "heads")
ABLATIONS = ("none", "teacher", "random")
# --matmul-precision -> jax.default_matmul_precision: float32 matmuls (the protocol), TF32 tensor cores, bfloat16 inputs
MATMUL_PRECISIONS = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
SWEEP_KNOBS = ("dataset", "student_inputs", "teacher_epochs", "student_epochs", "student_loss", "student_optimizer",
               "student_lr", "init_sigma", "reinit", "ablate", "liminal", "log_alignment")

# what phase 1 (the references and the teachers) reads, besides the chunk's run indices and the teacher epochs
TEACHER_SETTINGS = ("seed", "hidden", "n_aux", "batch_size", "lr", "dataset", "liminal")
# knobs that reach the student step only as per-run arrays (the students' start, the ablation direction): cells that
# differ in nothing else have the same shapes and the same compiled step, so they train as one vmapped batch
STACKED_KNOBS = ("init_sigma", "reinit", "ablate")


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
    chunk_size: int | None = None  # runs trained at once (vmap); None: all that fit in memory (auto_chunk_size)
    eval_subset: int = 2048  # MNIST train images on which the teacher's class loss is tracked along the student run
    log_steps: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)  # plus the final step
    data_dir: str | None = None  # torchvision MNIST root; None = mnist_mlp.data.default_data_dir()
    # ---- the knobs of the sweeps (mnist_mlp.sweeps); each default is the paper's Fig. 10 and leaves the fingerprint
    # (and every number) exactly as it was without the knob.
    dataset: str = "mnist"  # the teacher's task: "mnist" or "fashion" (Fashion-MNIST)
    student_inputs: str = "uniform"  # what the students see: uniform/gaussian noise, or mnist/fashion train images
    teacher_epochs: int | None = None  # None: epochs
    student_epochs: int | None = None  # None: epochs
    student_loss: str = "kl"  # kl, mse (on the logits), kl_t0.5, kl_t2 (KL of the softmaxes at temperature 0.5, 2)
    student_optimizer: str = "adam"  # adam, sgd, signsgd (optax, via theory.make_optimizer)
    student_lr: float | None = None  # None: lr
    init_sigma: float = 0.0  # students start at sqrt(1 - s^2) theta_0 + s xi, xi a fresh init: 0 shared, 1 fresh
    reinit: str = "none"  # "hidden": the students' hidden layers freshly drawn (heads kept); "heads": the reverse
    ablate: str = "none"  # "teacher": each student step loses its component along dT; "random": along a random dir
    liminal: float = 0.0  # lambda: teachers trained on CE + lambda KL(reference || teacher) on the aux logits
    log_alignment: bool = False  # cos(grad L_S, grad L_T at the student) at every student step
    # the matmuls' precision (MATMUL_PRECISIONS); "highest" is float32 throughout, the protocol of every committed
    # number. On CPU all three give the same numbers (XLA's CPU matmuls are float32 whatever is asked).
    matmul_precision: str = "highest"

    @classmethod
    def paper(cls, **kw) -> MnistConfig:
        """The paper's protocol: 100 runs, 5 epochs, Adam 3e-4, batch 1024."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> MnistConfig:
        """The same protocol with 4 runs (one chunk)."""
        kw.setdefault("runs", 4)
        kw.setdefault("chunk_size", 4)
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> MnistConfig:
        """The same protocol, end to end in seconds (tests): 2 runs in chunks of 1, 1 epoch, 2,048 noise images (2
        student steps per epoch). Too small for conclusions."""
        for k, v in dict(runs=2, chunk_size=1, epochs=1, n_noise=2048).items():
            kw.setdefault(k, v)
        return cls(**kw)

    def __post_init__(self):
        if self.runs < 2:
            raise ValueError(f"runs={self.runs}: need at least 2 runs to pair students with a DIFFERENT teacher")
        if (self.chunk_size is not None and self.chunk_size < 1) or min(self.epochs, self.batch_size, self.n_noise) < 1:
            raise ValueError("chunk_size, epochs, batch_size and n_noise must be >= 1 (chunk_size None: automatic)")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"matmul_precision={self.matmul_precision!r}: choose one of "
                             f"{', '.join(MATMUL_PRECISIONS)}")
        if self.n_aux < 1:
            raise ValueError("n_aux must be >= 1: the students imitate the auxiliary logits")
        choices = {"dataset": DATASETS, "student_inputs": STUDENT_INPUTS, "student_loss": STUDENT_LOSSES,
                   "student_optimizer": STUDENT_OPTIMIZERS, "reinit": REINITS, "ablate": ABLATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if not 0.0 <= self.init_sigma <= 1.0:
            raise ValueError(f"init_sigma={self.init_sigma}: must be in [0, 1] (0 = shared init, 1 = a fresh init)")
        if any(v is not None and v < 1 for v in (self.teacher_epochs, self.student_epochs)):
            raise ValueError("teacher_epochs and student_epochs must be >= 1 (or None for epochs)")
        if self.liminal < 0 or (self.student_lr is not None and not self.student_lr > 0):
            raise ValueError("liminal must be >= 0 and student_lr > 0")
        if self.student_inputs in ("mnist", "fashion") and self.n_noise > 60_000:
            raise ValueError(f"n_noise={self.n_noise}: the {self.student_inputs} inputs are its 60,000 train images")

    @property
    def epochs_teacher(self) -> int:
        return self.teacher_epochs or self.epochs

    @property
    def epochs_student(self) -> int:
        return self.student_epochs or self.epochs

    def science_dict(self) -> dict:
        """The settings that change the numbers (not where data lives or how runs are chunked)."""
        d = dataclasses.asdict(self)
        d.pop("data_dir")
        d.pop("chunk_size")
        # a sweep knob at its default, or set to the value its default stands for (teacher_epochs = epochs, student_lr
        # = lr), is left out: old fingerprints stay valid and equal settings share one fingerprint (one run folder)
        same_as_default = {"teacher_epochs": self.epochs, "student_epochs": self.epochs, "student_lr": self.lr}
        for f in dataclasses.fields(self):
            if f.name in SWEEP_KNOBS and d[f.name] in (f.default, same_as_default.get(f.name, f.default)):
                d.pop(f.name)
        if self.matmul_precision == "highest":  # float32, the default: the fingerprint is what it was without the knob
            d.pop("matmul_precision")
        d["protocol_version"] = PROTOCOL_VERSION
        return d

    def fingerprint(self) -> str:
        return fingerprint(self.science_dict(), 12)

    def teacher_fingerprint(self) -> str:
        """The settings the teachers (and their references) depend on, and nothing else: a sweep's cells that change
        only the students (init distance, loss, optimizer, inputs, ablation, ...) share one set of trained teachers."""
        d = {k: getattr(self, k) for k in TEACHER_SETTINGS}
        if self.matmul_precision != "highest":
            d["matmul_precision"] = self.matmul_precision
        return fingerprint({**d, "teacher_epochs": self.epochs_teacher, "protocol_version": PROTOCOL_VERSION}, 12)

    def stack_key(self) -> tuple:
        """Equal for configurations whose students can train in one vmapped batch (``experiment.run_stacked``):
        the same settings up to ``STACKED_KNOBS``, the same chunks and the same data."""
        base = dataclasses.replace(self, **{k: f.default for f in dataclasses.fields(self) if (k := f.name)
                                            in STACKED_KNOBS})
        return base.fingerprint(), self.chunk_size, self.data_dir

    @property
    def preset_name(self) -> str:
        return "paper" if self.runs >= 100 else ("quick" if self.runs <= 4 else "custom")
