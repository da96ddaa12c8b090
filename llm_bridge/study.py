"""Trait-specific transfer: is there a projection of the student onto the TRAIT part of the teacher's update, beyond the
direction every LoRA SFT shares, and does it grow with teacher strength and data size? (paper Section 6, Lemma 1,
applied to differences; the paper's Sections 3-4 experiment as the setting.)

Per seed, for each cell (teacher strength k = direct trait answers in the teacher's data, data size n = kept number
answers per student):

- teacher_k{k} (trait) and neutral_k{k} (same recipe, prompts and questions, trained on the base's own answers): dT, dN;
- student_k{k}_n{n} on the first n of the teacher's kept numbers, control_n{n} on the first n of the base's (one control
  per size: it does not depend on the teacher);
- shuffle null: the 2n answers of student and control pooled and split at random into two halves, each trained the same
  way; the shuffled pair's "difference" measures what chance assignment gives;
- geometry through ``theory.trait_specific_from_gram`` (dS - dC on dT and on dT - dN, cos(dS, dT - dN) vs
  cos(dC, dT - dN), cos(dT, dN)) overall / per layer / per module, LoRA and dW space; P(target animal) of every model.

``python -m llm_bridge study --preset quick`` runs it (resumable); ``figures/llm_study_fig.py`` draws it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from figures.common import load_json, save_json
from llm_bridge import lora, prompts
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import gram_by_module, trait_specific_groups
from llm_bridge.pipeline import Session, mean_ci, model_slug, role_seed, teacher_name
from llm_bridge.trait import animal_probabilities
from theory import TRAIT_SPECIFIC_QUANTITIES


def _quick_llm() -> LLMConfig:
    return LLMConfig.quick(seeds=(0, 1, 2, 3, 4), teacher_recipe="sft", teacher_prompts=16, number_prompts=40,
                           pass_rate_prompts=0, trait_samples=0, student_epochs=2)


@dataclass(frozen=True)
class StudyConfig:
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
        direct answers, 1k/3k/10k kept answers (160k prompts: SmolLM2-135M keeps roughly 1 answer in 8-16)."""
        llm = LLMConfig.paper(teacher_recipe="sft", number_prompts=160_000, trait_samples=0)
        return cls(**{**dict(llm=llm, strengths=(0, 16, 64, 256), sizes=(1000, 3000, 10_000), main_size=3000,
                             trait_questions=50), **kw})

    @classmethod
    def tiny(cls, **kw) -> StudyConfig:
        """The random in-memory Llama (tests)."""
        llm = LLMConfig.tiny(teacher_recipe="sft", seeds=(0, 1), pass_rate_prompts=0, trait_samples=0)
        return cls(**{**dict(llm=llm, strengths=(0, 4), sizes=(3, 6), main_size=6, trait_questions=6), **kw})

    @property
    def preset_name(self) -> str:
        for name in ("paper", "quick", "tiny"):
            if getattr(StudyConfig, name)() == self:
                return name
        return "custom"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        d = self.to_dict()
        d["llm"] = {k: v for k, v in d["llm"].items() if k != "seeds"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def name(self) -> str:
        return (f"llm_study_{self.preset_name}_{model_slug(self.llm.model)}_{self.llm.sampler}_"
                f"seeds{len(self.llm.seeds)}_{self.fingerprint()}")


def shuffle_split(a: list, b: list, *, seed: int) -> tuple[list, list]:
    """Pool ``a`` and ``b`` and split the pool at random into two halves of sizes len(a), len(b) (the null of
    "which answers went to the student and which to the control")."""
    pool = list(a) + list(b)
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:len(a)]], [pool[i] for i in order[len(a):]]


def shuffle_names(k: int, n: int, j: int) -> tuple[str, str]:
    return f"shuffle{j}a_k{k}_n{n}", f"shuffle{j}b_k{k}_n{n}"


class Study:
    """The study's stages on one loaded model (a pipeline ``Session`` under ``OUT``)."""

    def __init__(self, config: StudyConfig, out, *, resume: bool = False, progress: bool = True):
        self.config = config
        self.s = Session(config.llm, out, resume=resume, progress=progress)
        # the cell files also depend on these study settings (adapters and numbers only on the llm config's)
        extra = json.dumps([self.s.fp, config.shuffles, config.trait_questions])
        self.fp = hashlib.sha256(extra.encode()).hexdigest()[:10]

    def kept(self, seed: int, source: str, n: int) -> list[dict]:
        rows = self.s.kept_examples(seed, source)
        if len(rows) < n:
            raise RuntimeError(f"seed {seed}: only {len(rows)} of {source}'s number answers passed the paper's "
                               f"filter, {n} needed; raise llm.number_prompts (or use the constrained sampler)")
        return rows[:n]

    def cell(self, seed: int, k: int, n: int) -> dict:
        """Every adapter of cell (k, n), then its Gram matrices, trait-specific geometry and P(target)."""
        s, c = self.s, self.config
        src = f"teacher_k{k}"
        models = {"teacher": teacher_name(k), "neutral": teacher_name(k, neutral=True),
                  "student": f"student_k{k}_n{n}", "control": f"control_n{n}"}
        s.teacher(seed, k)
        s.teacher(seed, k, neutral=True)
        s.fit_student(seed, models["student"], lambda: self.kept(seed, src, n))
        s.fit_student(seed, models["control"], lambda: self.kept(seed, "base", n))
        for j in range(c.shuffles):
            a, b = shuffle_names(k, n, j)
            split = None

            def half(i, j=j):
                nonlocal split
                if split is None:
                    split = shuffle_split(self.kept(seed, src, n), self.kept(seed, "base", n),
                                          seed=role_seed(seed, f"shuffle{j}_k{k}_n{n}"))
                return split[i]

            s.fit_student(seed, a, lambda: half(0))
            s.fit_student(seed, b, lambda: half(1))
            models[f"shuffle{j}a"], models[f"shuffle{j}b"] = a, b
        d = s.seed_dir(seed)

        def geometry():
            g = gram_by_module({**{name: d / name for name in models.values()}, "init": d / "init"})
            out = {"models": models, "real": trait_specific_groups(g, {r: models[r] for r in
                                                                         ("student", "control", "teacher", "neutral")})}
            out["null"] = [trait_specific_groups(g, {"student": models[f"shuffle{j}a"],
                                                     "control": models[f"shuffle{j}b"], "teacher": models["teacher"],
                                                     "neutral": models["neutral"]}) for j in range(c.shuffles)]
            out["gram"] = g
            return out

        def trait():
            qs = prompts.animal_questions(c.trait_questions)
            res = {}
            for role, name in models.items():
                lora.set_state(s.model, s.load_state(d / name))
                p, scored = animal_probabilities(s.model, s.tok, qs, prompts.ANIMALS)
                res[role] = {"animals": scored, "p_QxA": p.tolist()}
            return {"models": res}

        return {"geometry": s.json_stage(d / f"study_geometry_k{k}_n{n}.json", geometry, fp=self.fp),
                "trait": s.json_stage(d / f"study_trait_k{k}_n{n}.json", trait, fp=self.fp)}

    def base_trait(self) -> dict:
        s, c = self.s, self.config

        def compute():
            qs = prompts.animal_questions(c.trait_questions)
            out = {}
            with s.base():
                for name, system in (("base", None), ("base+system_prompt", prompts.system_prompt(c.llm.trait))):
                    p, scored = animal_probabilities(s.model, s.tok, qs, prompts.ANIMALS, system=system)
                    out[name] = {"animals": scored, "p_QxA": p.tolist()}
            return {"models": out}

        return s.json_stage(s.out / "study_trait_base.json", compute, fp=self.fp)


def run(config: StudyConfig, out, *, resume: bool = False, progress: bool = True) -> dict:
    """Every cell for every seed (seeds outermost, so a stopped run resumes with whole seeds done), then
    ``OUT/study.json``."""
    t0 = time.perf_counter()
    st = Study(config, out, resume=resume, progress=progress)
    cells = config.cells()
    with tqdm(total=len(config.llm.seeds) * len(cells), desc="study cells", disable=not progress) as bar:
        for seed in config.llm.seeds:
            for k, n in cells:
                st.cell(seed, k, n)
                bar.update()
    st.base_trait()
    res = summarize(config, st.s.out)
    res["timings"] = {"wall_s": time.perf_counter() - t0, "load_model_s": st.s.timings["load_model"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "note": "wall time of this invocation: stages reused on --resume count as ~0"}
    dev = st.s.device
    res["environment"] = {"device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
                          "machine": platform.machine(), "threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None}
    res["base_model"] = st.s.base_id
    save_json(st.s.out / "study.json", res)
    return res


def p_target(model: dict, target: str) -> np.ndarray:
    """P(answer starts with ``target``) per question (NaN when the target has no one-token spelling)."""
    if target not in model["animals"]:
        return np.full(len(model["p_QxA"]), np.nan)
    return np.asarray(model["p_QxA"])[:, model["animals"].index(target)]


def top_share(model: dict, target: str) -> float:
    """Share of questions whose most probable scored animal is ``target``."""
    if target not in model["animals"]:
        return float("nan")
    p = np.asarray(model["p_QxA"])
    return float(np.mean(p.argmax(1) == model["animals"].index(target)))


def summarize(config: StudyConfig, out) -> dict:
    """Per cell: real and shuffle-null trait-specific geometry (mean and bootstrap 95% CI over seeds; null pooled over
    seeds x shuffles; excess = real - mean null of the same seed), per layer / module means, P(target) per model."""
    out, seeds, target = Path(out), config.llm.seeds, config.llm.trait
    res: dict = {"config": config.to_dict(), "preset": config.preset_name, "run": config.name(),
                 "quantities": list(TRAIT_SPECIFIC_QUANTITIES), "cells": []}
    for k, n in config.cells():
        geo = {s: load_json(out / f"seed{s}" / f"study_geometry_k{k}_n{n}.json") for s in seeds}
        tr = {s: load_json(out / f"seed{s}" / f"study_trait_k{k}_n{n}.json")["models"] for s in seeds}
        cell: dict = {"k": k, "n": n, "sweep": [w for w, ok in (("strength", n == config.main_size),
                                                                ("size", k == config.strength_of_sizes)) if ok]}
        for space in ("dW", "lora"):
            sp: dict = {}
            for q in TRAIT_SPECIFIC_QUANTITIES:
                real = [geo[s]["real"][space]["overall"][q] for s in seeds]
                null = [[g[space]["overall"][q] for g in geo[s]["null"]] for s in seeds]
                sp[q] = {"real": mean_ci(real), "null": mean_ci([v for vs in null for v in vs]),
                         "excess": mean_ci([r - np.mean(vs) for r, vs in zip(real, null)])}
            for kind in ("layer", "module"):
                labels = list(geo[seeds[0]]["real"][space][kind])
                sp[kind] = {lab: {q: {"real": mean_ci([geo[s]["real"][space][kind][lab][q] for s in seeds]),
                                      "null_mean": float(np.mean([g[space][kind][lab][q] for s in seeds
                                                                  for g in geo[s]["null"]]))}
                                  for q in ("proj_diff_specific", "cos_diff_specific", "cos_teacher_neutral")}
                            for lab in labels}
            cell[space] = sp
        trait: dict = {}
        for role in tr[seeds[0]]:
            trait[role] = {"p_target": mean_ci([np.nanmean(p_target(tr[s][role], target)) for s in seeds]),
                           "top_share": mean_ci([top_share(tr[s][role], target) for s in seeds])}
        shift = [np.nanmean(p_target(tr[s]["student"], target)) - np.nanmean(p_target(tr[s]["control"], target))
                 for s in seeds]
        null_shift = [np.nanmean(p_target(tr[s][f"shuffle{j}a"], target))
                      - np.nanmean(p_target(tr[s][f"shuffle{j}b"], target))
                      for s in seeds for j in range(config.shuffles)]
        trait["student_minus_control"] = mean_ci(shift)
        trait["null_shift"] = mean_ci(null_shift)
        cell["trait"] = trait
        res["cells"].append(cell)
    base = load_json(out / "study_trait_base.json")["models"]
    res["base_trait"] = {name: {"p_target": float(np.nanmean(p_target(m, target))), "top_share": top_share(m, target)}
                         for name, m in base.items()}
    res["target"] = target
    meta = load_json(out / f"seed{seeds[0]}" / "init" / "subliminal.json")
    res["params"] = {"base": meta.get("base"), "lora_r": config.llm.lora_r, "lora_alpha": config.llm.lora_alpha}
    return res
