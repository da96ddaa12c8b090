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

``python -m llm_bridge study --preset quick`` runs it (resumable); ``figures/llm_study_fig.py`` draws it. Under torchrun
the seeds split over the processes (``llm_bridge.ranks``): a seed's cells share its teachers, controls and numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from llm_bridge import prompts
from llm_bridge.config import StudyConfig
from llm_bridge.diagnostic import gram_by_module, trait_specific_groups
from llm_bridge.pipeline import Pipeline
from llm_bridge.ranks import Ranks, collect
from llm_bridge.report import p_target
from llm_bridge.roles import role_seed, teacher_name
from llm_bridge.stages.trait import probabilities
from results import fingerprint, load_json, peak_rss_mb, save_json
from theory import TRAIT_SPECIFIC_QUANTITIES
from theory.stats import mean_ci

__all__ = ["Study", "StudyConfig", "run", "shuffle_names", "shuffle_split", "summarize", "top_share"]


def shuffle_split(a: list, b: list, *, seed: int) -> tuple[list, list]:
    """Pool ``a`` and ``b`` and split the pool at random into two halves of sizes len(a), len(b) (the null of
    "which answers went to the student and which to the control")."""
    pool = list(a) + list(b)
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:len(a)]], [pool[i] for i in order[len(a):]]


def shuffle_names(k: int, n: int, j: int) -> tuple[str, str]:
    return f"shuffle{j}a_k{k}_n{n}", f"shuffle{j}b_k{k}_n{n}"


class Study:
    """The study's cells on one loaded model, through the pipeline's stages under ``OUT``."""

    def __init__(self, config: StudyConfig, out, *, resume: bool = False, progress: bool = True):
        self.config = config
        self.s = Pipeline(config.llm, out, resume=resume, progress=progress)
        # the cell files also depend on these study settings (adapters and numbers only on the llm config's)
        self.fp = fingerprint([self.s.store.fp, config.shuffles, config.trait_questions])

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
                s.lm.load(s.lm.read_state(d / name))
                res[role] = probabilities(s.lm, qs)
            return {"models": res}

        geo_path, trait_path = self.cell_paths(seed, k, n)
        return {"geometry": s.store.json(geo_path, geometry, fp=self.fp),
                "trait": s.store.json(trait_path, trait, fp=self.fp)}

    def base_trait(self) -> dict:
        s, c = self.s, self.config

        def compute():
            qs = prompts.animal_questions(c.trait_questions)
            with s.lm.base():
                return {"models": {name: probabilities(s.lm, qs, system=system) for name, system in
                                   (("base", None), ("base+system_prompt", prompts.system_prompt(c.llm.trait)))}}

        return s.store.json(s.out / "study_trait_base.json", compute, fp=self.fp)

    def cell_paths(self, seed: int, k: int, n: int) -> list:
        d = self.s.seed_dir(seed)
        return [d / f"study_geometry_k{k}_n{n}.json", d / f"study_trait_k{k}_n{n}.json"]


def run(config: StudyConfig, out, *, resume: bool = False, progress: bool = True,
        ranks: Ranks | None = None) -> dict | None:
    """Every cell for every seed (seeds outermost, so a stopped run resumes with whole seeds done), then
    ``OUT/study.json``. ``ranks`` (default: from torchrun's environment, ``llm_bridge.ranks``): with several, each
    takes every ``world``-th seed, whole (its cells share the seed's teachers, controls and numbers, so no two ranks
    write one file), and rank 0 also the base's trait, then merges; ranks > 0 return None."""
    ranks = ranks or Ranks.from_env()
    t0 = time.perf_counter()
    st = Study(config, out, resume=resume, progress=progress)
    cells, seeds = config.cells(), ranks.share(config.llm.seeds)
    with tqdm(total=len(seeds) * len(cells), desc="study cells", disable=not progress) as bar:
        for seed in seeds:
            for k, n in cells:
                st.cell(seed, k, n)
                bar.update()
    if ranks.main:
        st.base_trait()  # the one artifact outside the seeds' folders
    ranks.record(st.s.out, st.fp, seeds=seeds, wall_s=time.perf_counter() - t0)
    ranks.barrier()
    if not ranks.main:
        return None
    for i, seed in enumerate(config.llm.seeds):  # the other ranks' cells: all there, from this config
        if not ranks.mine(i):
            for k, n in cells:
                for path in st.cell_paths(seed, k, n):
                    collect(path, st.fp, what=f"rank {i % ranks.world}'s seed {seed}")
    res = summarize(config, st.s.out)
    res["timings"] = {"wall_s": time.perf_counter() - t0, "load_model_s": st.s.load_seconds,
                      "peak_rss_mb": peak_rss_mb(),
                      "note": "wall time of this invocation: stages reused on --resume count as ~0"}
    if ranks.world > 1:
        res["timings"]["ranks"] = ranks.records(st.s.out, st.fp)  # each rank's seeds and wall time
    res["environment"] = st.s.lm.environment()
    res["base_model"] = st.s.lm.base_id
    save_json(st.s.out / "study.json", res)
    return res


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
