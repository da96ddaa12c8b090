"""The llm_bridge pipeline's orchestration (paper Sections 3-4; Theorem 1 in the first step): where each stage's
artifact lives (``OUT/seed{S}/``), whether it is reused (``resume``, when its config fingerprint matches), and which
inputs a stage needs, resolved only when it computes. The computations are plain functions in ``llm_bridge.stages``;
the study (``llm_bridge.study``) calls the same ones through this class."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from llm_bridge import lora
from llm_bridge.config import LLMConfig
from llm_bridge.lm import LM, load_lm
from llm_bridge.report import summarize
from llm_bridge.roles import teacher_name
from llm_bridge.stages import diagnostic as diagnostic_stage
from llm_bridge.stages import first_step as first_step_stage
from llm_bridge.stages import numbers as numbers_stage
from llm_bridge.stages import students as students_stage
from llm_bridge.stages import teacher as teacher_stage
from llm_bridge.stages import trait as trait_stage
from results import RunDir, atomic_write, peak_rss_mb, save_json

STAGES = ("teacher", "numbers", "students", "diagnostic", "first_step", "trait")


class Pipeline:
    """Every stage of one config on one loaded model, its artifacts under ``out``."""

    def __init__(self, config: LLMConfig, out, *, resume: bool = False, progress: bool = True, lm: LM | None = None):
        self.config, self.progress = config, progress
        self.store = RunDir(out, config.fingerprint(), resume=resume)
        t0 = time.perf_counter()
        self.lm = lm or load_lm(config)
        self.load_seconds = time.perf_counter() - t0

    @property
    def out(self) -> Path:
        return self.store.root

    def seed_dir(self, seed: int) -> Path:
        return self.out / f"seed{seed}"

    def adapter(self, path: Path, compute) -> dict:
        """The adapter state at ``path`` (resume) or the one ``compute()`` leaves in the model (it returns the
        metadata), saved atomically in peft format with ``subliminal.json`` beside it."""
        meta_path = path / "subliminal.json"
        if self.store.fresh(meta_path):
            return self.lm.read_state(path)
        t0 = time.perf_counter()
        meta = compute()
        meta.update(fingerprint=self.store.fp, seconds=time.perf_counter() - t0, base=self.lm.base_id,
                    config=self.config.to_dict())
        lora.save_adapter(self.lm.model, path, meta=meta)
        self.store.mark(meta_path)
        return self.lm.state()

    # --- stages -------------------------------------------------------------------------------------------------
    def init(self, seed: int) -> dict:
        return self.adapter(self.seed_dir(seed) / "init", lambda: teacher_stage.draw_init(self.lm, seed))

    def teacher(self, seed: int, k: int | None = None, *, neutral: bool = False) -> dict:
        c, d, p = self.config, self.seed_dir(seed), self.progress
        teacher_stage.check_recipe(c, k, neutral)
        tag = "neutral" if neutral else "distill"

        def fit():
            data = [self.store.json(d / f"{tag}_data.json", lambda: teacher_stage.generic_answers(
                self.lm, c, seed, neutral=neutral, progress=p))]
            if k:
                data.append(self.store.json(d / f"{tag}_qa_k{k}.json", lambda: teacher_stage.direct_answers(
                    self.lm, c, seed, k, neutral=neutral, progress=p)))
            return teacher_stage.fit_teacher(self.lm, c, seed, self.init(seed), data, k=k, neutral=neutral,
                                             progress=p)

        return self.adapter(d / teacher_name(k, neutral=neutral), fit)

    def numbers(self, seed: int, source: str) -> dict:
        """``source``: "base", "teacher" or "teacher_k{k}"; JSONL of every answer + the summary JSON."""
        d = self.seed_dir(seed)
        lora_teacher, k = numbers_stage.teacher_strength(self.config, source)

        def compute():
            teacher = self.teacher(seed, k) if lora_teacher else None
            rows, summary = numbers_stage.number_answers(self.lm, self.config, seed, source, teacher=teacher,
                                                         progress=self.progress)
            text = numbers_stage.jsonl_text(rows)
            atomic_write(d / f"numbers_{source}.jsonl", lambda fh: fh.write(text.encode()))
            return summary

        return self.store.json(d / f"numbers_{source}.json", compute)

    def kept_examples(self, seed: int, source: str) -> list[dict]:
        self.numbers(seed, source)
        return [r for r in numbers_stage.read_jsonl(self.seed_dir(seed) / f"numbers_{source}.jsonl") if r["kept"]]

    def student(self, seed: int, source: str) -> dict:
        """Student ("teacher" numbers) or control ("base" numbers), on equally many examples."""
        return self.fit_student(seed, "student" if source == "teacher" else "control", lambda: (
            students_stage.matched_examples(self.kept_examples(seed, "teacher"), self.kept_examples(seed, "base"),
                                            source, seed=seed, max_examples=self.config.max_examples)))

    def fit_student(self, seed: int, name: str, examples) -> dict:
        """Adapter ``name``: SFT from the seed's init on ``examples()`` (called only when it must be trained)."""
        def fit():
            ex = examples()
            return students_stage.fit_student(self.lm, self.config, seed, self.init(seed), ex, name=name,
                                              progress=self.progress)

        return self.adapter(self.seed_dir(seed) / name, fit)

    def diagnostic(self, seed: int) -> dict:
        def compute():
            self.student(seed, "teacher")
            self.student(seed, "base")
            return diagnostic_stage.diagnostic(self.seed_dir(seed))

        return self.store.json(self.seed_dir(seed) / "diagnostic.json", compute)

    def first_step(self, seed: int) -> dict:
        return self.store.json(self.seed_dir(seed) / "first_step.json", lambda: first_step_stage.first_step(
            self.lm, self.config, seed, self.init(seed), self.teacher(seed), self.kept_examples(seed, "teacher")))

    def trait(self, seed: int | None) -> dict:
        """The seed's teacher, student and control, or (seed None) the base with and without the system prompt."""
        path = self.out / "trait_base.json" if seed is None else self.seed_dir(seed) / "trait.json"

        def compute():
            states = None if seed is None else {"teacher": self.teacher(seed), "student": self.student(seed, "teacher"),
                                                "control": self.student(seed, "base")}
            return trait_stage.trait(self.lm, self.config, seed, states)

        return self.store.json(path, compute)

    def stage(self, name: str, seed: int):
        """One stage (of ``STAGES``) for one seed, both sources / both students where it has two."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
        if name in ("numbers", "students"):
            fn = self.numbers if name == "numbers" else self.student
            return fn(seed, "teacher"), fn(seed, "base")
        return getattr(self, name)(seed)


def run(config: LLMConfig, out, *, resume: bool = False, progress: bool = True,
        pipeline: Pipeline | None = None) -> dict:
    """Every stage for every seed, then ``results.json`` (the summary the figure draws)."""
    t0 = time.perf_counter()
    p = pipeline or Pipeline(config, out, resume=resume, progress=progress)
    stage_s: dict[str, float] = {}
    for seed in tqdm(config.seeds, desc="seeds", disable=not progress):
        for name in STAGES:
            t = time.perf_counter()
            p.stage(name, seed)
            stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    p.trait(None)
    stage_s["trait"] += time.perf_counter() - t
    res = summarize(config, p.out)
    res["timings"] = {"wall_s": time.perf_counter() - t0, "load_model_s": p.load_seconds, "stages_s": stage_s,
                      "peak_rss_mb": peak_rss_mb(), "note": "stage times are 0-ish for stages reused on --resume"}
    res["environment"] = p.lm.environment()
    res["base_model"] = p.lm.base_id
    save_json(p.out / "results.json", res)
    return res
