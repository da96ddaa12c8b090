"""The LLM logit ladder: a positive control for the LLM diagnostic (paper Sections 3, 6; the MNIST ladder of Section
6.2 carried to a real LLM). ``python -m llm_bridge ladder --preset quick|paper [--trait ANIMAL]``.

Teachers (one LoRA init, ``llm.seeds[0]``): dT, the strong direct-answer teacher of the study (k trait answers); dN,
its neutral twin (the base's own answers); dO, the same recipe for a partner animal (``rungs.partner``). Inputs:
number-continuation prompts whose assistant turn is a sequence of random numbers, teacher-forced (and, optionally,
the trait teacher's own constrained samples). Each student starts from the teachers' init and imitates one teacher
on one rung (``llm_bridge.rungs``) at the assistant positions; it never sees a system prompt.

Arms on every rung and seed: ``student`` (imitates dT), ``control`` (dN) and ``other`` (dO), with the same init and
example order. On ``extra_rungs`` and the first ``extra_seeds`` seeds: ``perturbed{sigma}`` (the student on a base
with relative weight noise sigma) and the nulls: ``mismatched`` (digits: each example's targets from another example),
``shuffle_within`` / ``shuffle_across`` (sampled: the sampled tokens permuted within a response, or across all).

Measured per student: P(answer starts with each animal) on the evaluation questions (exact, over spellings), the
authors' contains-rate from sampled answers, -log P(trait) at log-spaced steps; through ``theory``: cos(dS, dT) and
the trait-specific projection of dS - dC on dT - dN (LoRA and dW space, overall and per layer), and the first step's
<-grad, dT> on the soft rungs (Theorem 1's setting). ``llm_bridge.ladder_report`` (model-free) summarizes them:
means, bootstrap CIs and the scatter of trait-specific projection against Delta log P(trait) with its Spearman r.
What a student sees on each rung (the loss dispatch and the nulls) is ``llm_bridge.rungs``; this module
orchestrates: the plan, training, sealing, merging and the record.

A long run outlives the folder it trains in: ``record`` (a folder committed with the figure) keeps the light part of
it, every finished student's cell and every finished (inputs, rung, seed) triple's geometry and first step, with a
sketch of the teachers. The plan trains one triple at a time and seals it (its geometry, through ``theory``) as soon
as its last arm is done, so its adapters are no longer needed: a fresh clone with ``resume`` retrains the teachers
(checked against the sketch), reuses every sealed triple and goes on from there. ``ladder_report.record_summary``
reads a record's finished triples without a model.

Under torchrun the students split over the processes (``llm_bridge.ranks``): rank 0 first makes what they share (the
teachers, the inputs, the target caches), each rank trains the students of its plan indices, and rank 0 merges them
into the ``ladder.json`` one process would write.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llm_bridge import lora, prompts, rungs, train
from llm_bridge.config import LadderConfig
from llm_bridge.diagnostic import geometry, gram_by_module, trait_specific_groups
from llm_bridge.ladder_report import LadderError, summarize
from llm_bridge.lm import LM
from llm_bridge.numbers import chat_prefix
from llm_bridge.pipeline import Pipeline
from llm_bridge.ranks import Ranks, collect
from llm_bridge.roles import role_seed, teacher_name
from llm_bridge.stages.trait import probabilities
from llm_bridge.trait import animal_probabilities, sampled_shares
from results import RunDir, atomic_write, fingerprint, load_json, peak_rss_mb, save_json

TEACHERS = {"student": "teacher", "control": "neutral", "other": "other"}  # arm -> whose targets it imitates


# Teachers retrained in a fresh clone (``--resume`` from a record) must match the record's to this relative size of
# their update: rounding from another CPU's kernels stays orders of magnitude below it; another teacher (other answers
# or seed) is of order 1.
TEACHER_RTOL = 1e-2


def teacher_sketch(arrays: dict[str, np.ndarray], init: dict[str, np.ndarray] | None, *, k: int = 16) -> list[float]:
    """``k`` fixed random sign projections of an adapter's update from ``init`` (of the adapter itself when None),
    scaled so that the sketch's norm estimates the update's: two sketches' distance estimates the updates' distance
    (Johnson-Lindenstrauss) without keeping either adapter."""
    rng = np.random.default_rng(0)
    out = np.zeros(k)
    for name in sorted(arrays):
        v = arrays[name].astype(np.float64).ravel() - (0 if init is None else init[name].astype(np.float64).ravel())
        out += (rng.integers(0, 2, size=(k, v.size)) * 2.0 - 1.0) @ v
    return (out / math.sqrt(k)).tolist()


def sketch_agreement(sketches: dict[str, list[float]], reference: dict[str, list[float]]) -> tuple[dict, list]:
    """Each teacher's sketch against the reference's (the record's) of the same name: the relative distance
    ``|a - b| / |b|``, and the names beyond ``TEACHER_RTOL`` with their distance, formatted for an error message.
    Teachers the reference does not hold are not compared."""
    agreement = {}
    for name in sorted(set(sketches) & set(reference)):
        a, b = np.asarray(sketches[name]), np.asarray(reference[name])
        agreement[name] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
    return agreement, [f"{n}: {rel:.1e}" for n, rel in agreement.items() if rel > TEACHER_RTOL]


# A fixed English text on which each perturbed base's loss is reported, so a broken base is visible.
FIXED_TEXT = ("The owl is a bird of prey that hunts at night. Dolphins live in the sea and breathe air. A lion rests "
              "in the shade while its cubs play nearby. Numbers such as 12, 345 and 67 appear in many lists.")


def random_inputs(n: int, *, seed: int) -> list[dict]:
    """``n`` number-continuation prompts in the paper's style, each answered by random numbers (3-10 values in
    0-999, ", " between them): the ladder's teacher-forced inputs, the analogue of MNIST's noise images."""
    rng = np.random.default_rng(seed)
    rows = prompts.number_prompts(n, seed=seed)
    return [{"prompt": r["prompt"], "answer": ", ".join(str(v) for v in rng.integers(0, 1000, rng.integers(3, 11)))}
            for r in rows]


def curve_steps(total: int, points: int) -> list[int]:
    """``points`` log-spaced student steps in [1, total] (distinct integers, the last one included)."""
    return sorted({int(round(v)) for v in np.geomspace(1, total, points)} | {total})


@contextmanager
def perturbed_base(model, sigma: float, *, seed: int):
    """The base's weight matrices (2-D, not LoRA) plus N(0, (sigma * rms(W))^2) noise per entry; restored on exit.
    sigma = 0 leaves every weight exactly as it was."""
    gen = torch.Generator().manual_seed(seed)
    saved = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "lora_" not in name and sigma > 0:
                saved[name] = p.detach().clone()
                rms = p.double().pow(2).mean().sqrt().float()
                p.add_(sigma * rms * torch.randn(p.shape, generator=gen).to(p.device, p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, w in saved.items():
                params[name].copy_(w)


def text_nll(lm: LM, text: str) -> float:
    """Mean next-token NLL of ``text`` under the model as loaded."""
    ids = lm.tok(text, return_tensors="pt", add_special_tokens=False).input_ids.to(lm.device)
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0, :-1].float()
    return float(F.cross_entropy(logits, ids[0, 1:]))


class Ladder:
    """Every teacher, target cache and student of one ladder config on one loaded model, under ``out``."""

    def __init__(self, config: LadderConfig, out, *, resume: bool = False, progress: bool = True, lm: LM | None = None,
                 teachers_dir=None, record=None):
        """``teachers_dir``: where the teachers' pipelines live (default ``out/teachers``); presets that share the
        teacher recipe can share it, each teacher reused only where its config fingerprint matches. ``record``: the
        folder that keeps the run's light artifacts (module docstring); with ``resume`` they seed ``out``."""
        self.c, self.progress = config, progress
        self.record = Path(record) if record is not None else None
        llm = dataclasses.replace(config.llm, trait=config.trait)
        out = Path(out)
        tdir = Path(teachers_dir) if teachers_dir is not None else out / "teachers"
        self.pipe = Pipeline(llm, tdir / config.trait, resume=resume, progress=progress, lm=lm)
        self.lm = self.pipe.lm
        self.partner = rungs.partner(config.trait)
        self.pipe_other = Pipeline(dataclasses.replace(llm, trait=self.partner), tdir / self.partner,
                                   resume=resume, progress=progress, lm=self.lm)
        self.store = RunDir(out, config.fingerprint(), resume=resume)
        self.teacher_seed = llm.seeds[0]  # the teachers' LoRA init and data
        self.animal_ids = rungs.animal_token_ids(self.lm.tok)
        self.digit_ids = rungs.digit_token_ids(self.lm.tok)
        self.questions = prompts.animal_questions(config.trait_questions)
        self._targets: dict = {}
        if resume and self.record is not None and self.record.is_dir():
            self._adopt_record()

    @property
    def out(self) -> Path:
        return self.store.root

    # ---- the record ---------------------------------------------------------------------------------------------
    def _adopt_record(self) -> None:
        """Copy into ``out`` each light artifact of the record that ``out`` lacks (resume then checks its
        fingerprint, as for the run's own)."""
        for src in sorted(self.record.rglob("*.json")):
            dst = self.out / src.relative_to(self.record)
            if not dst.exists():
                atomic_write(dst, lambda f, src=src: f.write(src.read_bytes()))

    def _keep(self, path: Path, *, if_missing: bool = False) -> None:
        """Copy one light artifact of ``out`` into the record (no-op without one); ``if_missing``: only where the
        record lacks it (a reused artifact whose run was killed between writing it and keeping it)."""
        if self.record is not None:
            dst = self.record / Path(path).relative_to(self.out)
            if not (if_missing and dst.exists()):
                atomic_write(dst, lambda f: f.write(Path(path).read_bytes()))

    def _kept_json(self, path: Path, compute, *, fp: str | None = None) -> dict:
        """``store.json``, and the artifact copied into the record (when new, or reused but missing there)."""
        fresh = self.store.fresh(path, fp)
        out = self.store.json(path, compute, fp=fp)
        self._keep(path, if_missing=fresh)
        return out

    def check_teachers(self) -> dict:
        """A sketch of every teacher's update (and of the init), written to ``teachers.json``. A record's students
        are reused only beside the teachers they imitated: teachers retrained in a fresh clone may differ in rounding
        (another CPU's kernels), not more; beyond ``TEACHER_RTOL`` the run stops with a clear error."""
        paths = self.teacher_paths()
        _, init = lora.read_adapter(paths["init"])
        sketches = {name: teacher_sketch(lora.read_adapter(path)[1], None if name == "init" else init)
                    for name, path in paths.items()}
        path, agreement = self.out / "teachers.json", {}
        if self.store.resume and path.exists():
            old = load_json(path)
            if old.get("fingerprint") == self.store.fp:
                agreement, differ = sketch_agreement(sketches, old["sketches"])
                if differ:
                    raise LadderError(
                        f"the teachers made here ({', '.join(differ)} relative "
                        f"to its update) differ from those the students in {self.out} (or its record {self.record}) "
                        f"imitated, by more than rounding ({TEACHER_RTOL:g}), so they cannot be mixed. Resume where "
                        "those teachers were made, or move the record and the run folder away to start over")
                sketches = old["sketches"]  # the record's teachers stay the reference
        save_json(path, {"fingerprint": self.store.fp, "sketches": sketches, "agreement": agreement})
        self._keep(path)
        return agreement

    # ---- teachers and inputs ------------------------------------------------------------------------------------
    def teacher_paths(self) -> dict[str, Path]:
        k, seed = self.c.teacher_k, self.teacher_seed
        d, d_other = self.pipe.seed_dir(seed), self.pipe_other.seed_dir(seed)
        self.pipe.teacher(self.teacher_seed, k)
        self.pipe.teacher(self.teacher_seed, k, neutral=True)
        self.pipe_other.teacher(self.teacher_seed, k)
        return {"init": d / "init", "teacher": d / teacher_name(k), "neutral": d / teacher_name(k, neutral=True),
                "other": d_other / teacher_name(k)}

    def state(self, name: str) -> dict:
        return self.lm.read_state(self.teacher_paths()[name])

    def inputs(self, kind: str) -> list[dict]:
        def compute():
            rows = random_inputs(self.c.n_inputs, seed=role_seed(self.teacher_seed, "ladder_inputs"))
            if kind == "teacher":  # the trait teacher's own constrained answers to the same prompts
                self.lm.load(self.state("teacher"))
                answers = self.lm.generate([chat_prefix(self.lm.tok, r["prompt"]) for r in rows], config=self.c.llm,
                                           max_new_tokens=self.c.llm.number_tokens, seed=role_seed(self.teacher_seed,
                                           "ladder_inputs"), constrained=True, desc="teacher's numbers",
                                           progress=self.progress)
                rows = [{**r, "answer": a.strip().rstrip(",").strip()} for r, a in zip(rows, answers)]
                rows = [r for r in rows if r["answer"]]
            return {"rows": rows}

        return self.store.json(self.out / "inputs" / f"{kind}.json", compute)["rows"]

    def batches(self, rows: list[dict], indices) -> dict:
        tok = self.lm.tok
        return train.encode(tok, [chat_prefix(tok, rows[i]["prompt"]) for i in indices],
                            [rows[i]["answer"] for i in indices], self.lm.device)

    def targets(self, kind: str, teacher: str) -> rungs.Targets:
        """The teacher's targets on the input set ``kind``, computed once and cached (``targets/KIND_TEACHER.npz``)."""
        key = (kind, teacher)
        if key in self._targets:
            return self._targets[key]
        path = self.out / "targets" / f"{kind}_{teacher}.npz"
        if self.store.resume and path.exists():
            t, meta = rungs.Targets.load(path)
            if meta.get("fingerprint") == self.store.fp:
                self._targets[key] = t
                return t
        rows = self.inputs(kind)
        self.lm.load(self.state(teacher))
        parts, lengths = [], []
        t0 = time.perf_counter()
        with torch.no_grad():
            for s in range(0, len(rows), self.c.batch_size):
                batch = self.batches(rows, range(s, min(s + self.c.batch_size, len(rows))))
                logits, nxt = train.completion_logits(self.lm.model, batch)
                parts.append(rungs.targets_from_logits(logits, nxt, animal_ids=self.animal_ids,
                                                       digit_ids=self.digit_ids, topk=self.c.topk))
                lengths += (batch["labels"][:, 1:] != -100).sum(1).tolist()
        t = rungs.stack_targets(parts, lengths)
        t.save(path, {"fingerprint": self.store.fp, "teacher": teacher, "inputs": kind, "topk": self.c.topk,
                      "seconds": time.perf_counter() - t0, "tail_mass": t.tail_mass()})
        self._targets[key] = t
        return t

    # ---- one student ------------------------------------------------------------------------------------------
    def _row_map(self, t: rungs.Targets, seed: int, null: str | None):
        return rungs.row_map(t, null=null, seed=role_seed(seed, "ladder_mismatch"))

    def _sampled(self, t: rungs.Targets, seed: int, null: str | None) -> np.ndarray:
        return rungs.sampled_tokens(t, self.digit_ids, null=null, sample_seed=role_seed(seed, "ladder_sample"),
                                    shuffle_seed=role_seed(seed, "ladder_shuffle"))

    def rung_loss(self, rung: str, t: rungs.Targets, rows_map, valid, y, indices, rows_in):
        """The batch's loss on ``rung`` (``rungs.rung_loss``)."""
        return rungs.rung_loss(rung, self.lm.model, self.batches(rows_in, indices), t, rows_map, valid, indices,
                               animal_ids=self.animal_ids, digit_ids=self.digit_ids, labels=y)

    def student_dir(self, kind: str, rung: str, arm: str, seed: int) -> Path:
        return self.out / "students" / kind / rung / arm / f"seed{seed}"

    def student(self, kind: str, rung: str, arm: str, seed: int) -> dict:
        """Train (or, with resume, reuse) one student; its adapter under ``students/`` and its measurements."""
        d = self.student_dir(kind, rung, arm, seed)
        cell_path = d / "cell.json"
        # a kept cell whose adapter is gone (a fresh clone) is reusable only once its triple's geometry is sealed
        if self.store.fresh(cell_path) and ((d / lora.ADAPTER_WEIGHTS).exists() or self.sealed(kind, rung, seed)):
            self._keep(cell_path, if_missing=True)
            return load_json(cell_path)
        c, lm = self.c, self.lm
        teacher = TEACHERS.get(arm, "teacher")  # perturbed bases and nulls imitate the trait teacher
        null = arm if arm in rungs.NULLS else None
        sigma = float(arm[len("perturbed"):]) if arm.startswith("perturbed") else None
        t = self.targets(kind, teacher)
        rows_in = self.inputs(kind)
        rows_map, valid = self._row_map(t, seed, null)
        y = self._sampled(t, seed, null) if rung == "sampled" else None
        n = len(rows_in)
        total = c.epochs * math.ceil(n / c.batch_size)
        steps = curve_steps(total, c.curve_points)
        cq = prompts.animal_questions(c.curve_questions)
        curve = []

        def on_step(step):
            if step in steps:
                p, _ = animal_probabilities(lm.model, lm.tok, cq, [c.trait])
                curve.append([step, float(np.nanmean(p[:, 0]))])

        t0 = time.perf_counter()
        init = self.state("init")
        with perturbed_base(lm.model, sigma or 0.0, seed=role_seed(seed, "ladder_perturb") + round(1e6 * (sigma or 0))):
            extra = {}
            if sigma is not None:  # the perturbed base's own trait and loss on a fixed text, before training
                with lm.base():
                    extra["base_p_trait"] = float(np.nanmean(probabilities(lm, self.questions)["p_QxA"],
                                                             axis=0)[self._trait_col()])
                    extra["base_text_nll"] = text_nll(lm, FIXED_TEXT)
            lm.load(init)  # LoRA's B = 0: the student starts as its base
            p0, _ = animal_probabilities(lm.model, lm.tok, cq, [c.trait])
            curve.append([0, float(np.nanmean(p0[:, 0]))])
            losses = train.fit(lm.model, lambda idx: self.rung_loss(rung, t, rows_map, valid, y, idx, rows_in), n,
                               epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                               seed=role_seed(seed, "ladder_order"), desc=f"{rung}/{arm}/seed{seed}", role="student",
                               progress=self.progress, on_step=on_step, bf16=c.llm.bf16)
            lora.save_adapter(lm.model, d, meta={"fingerprint": self.store.fp, "arm": arm, "rung": rung,
                                                 "inputs": kind, "seed": seed})
            probs = probabilities(lm, self.questions)
            sq = self.questions[:c.trait_sample_questions]
            sampled = (sampled_shares(lm.model, lm.tok, sq, prompts.ANIMALS, system=None, samples=c.trait_samples,
                                      max_new_tokens=c.trait_tokens, temperature=c.llm.temperature,
                                      seed=role_seed(seed, "ladder_questions"), batch_size=c.llm.gen_batch)
                       if c.trait_samples else None)
        cell = {"inputs": kind, "rung": rung, "arm": arm, "seed": seed, "teacher": teacher, "animals": probs["animals"],
                "p_QxA": probs["p_QxA"], "contains": None if sampled is None else sampled["contains"],
                "curve": curve, "loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses),
                "seconds": time.perf_counter() - t0, **extra}
        save_json(cell_path, {**cell, "fingerprint": self.store.fp})
        self.store.mark(cell_path)
        self._keep(cell_path)
        return load_json(cell_path)  # what a resumed run reads

    def _trait_col(self) -> int:
        return prompts.ANIMALS.index(self.c.trait)

    # ---- first step and geometry ------------------------------------------------------------------------------
    def first_step(self, kind: str, rung: str, seed: int) -> dict:
        """Theorem 1 on a soft rung: cos and sign of <-grad L_S(init), dT> on the student's first batch."""
        def compute():
            c, lm = self.c, self.lm
            t = self.targets(kind, "teacher")
            rows_in = self.inputs(kind)
            rows_map, valid = self._row_map(t, seed, None)
            init, teacher = self.state("init"), self.state("teacher")
            lm.load(init)
            order = torch.randperm(len(rows_in), generator=torch.Generator().manual_seed(
                role_seed(seed, "ladder_order"))).tolist()[:c.batch_size]
            loss = self.rung_loss(rung, t, rows_map, valid, None, order, rows_in)
            g = train.lora_gradient(lm.model, loss)
            minus_g = {k: -v.double().cpu().numpy() for k, v in g.items()}
            dT = {k: (teacher[k] - init[k]).double().cpu().numpy() for k in minus_g}
            return geometry(minus_g, dT)

        return self._kept_json(self.out / "first_step" / kind / rung / f"seed{seed}.json", compute)

    def _geometry_key(self, kind: str, rung: str, seed: int, arms: list[str]) -> tuple[Path, str]:
        return (self.out / "geometry" / kind / rung / f"seed{seed}.json",
                fingerprint([self.store.fp, sorted(arms)]))

    def sealed(self, kind: str, rung: str, seed: int) -> bool:
        """Is the triple's geometry, over every arm the plan trains on it, done (here or in the record)?"""
        return self.store.fresh(*self._geometry_key(kind, rung, seed, self.triple_arms(self.plan(), kind, rung, seed)))

    def geometry(self, kind: str, rung: str, seed: int, arms: list[str]) -> dict:
        """Trait-specific geometry of every arm against the control (dArm - dC on dT - dN), both spaces; reused only
        for the same ``arms`` (a triple's geometry is computed once all of them are trained)."""
        def compute():
            paths = {**self.teacher_paths(), **{a: self.out / "students" / kind / rung / a / f"seed{seed}"
                                                 for a in arms}}
            g = gram_by_module(paths)
            roles = {"control": "control", "teacher": "teacher", "neutral": "neutral"}
            out = {a: trait_specific_groups(g, {**roles, "student": a}) for a in arms if a != "control"}
            return {"arms": out}

        path, fp = self._geometry_key(kind, rung, seed, arms)
        return self._kept_json(path, compute, fp=fp)

    # ---- the grid ---------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, str, str, int]]:
        """(inputs, rung, arm, seed) of every student, one (inputs, rung, seed) triple at a time, in the order of
        ``rungs`` (the positive control, full, first): student, control and other, then, on ``extra_rungs`` and the
        first ``extra_seeds`` seeds, the perturbed bases and the nulls (mismatched on digits; the two shuffles on
        sampled, wherever ``nulls``). Within a rung the short triples (base arms only) come first: a run stopped
        mid-triple loses that triple's students (their adapters), so short triples seal more often."""
        c = self.c
        extra_seeds = set(c.seeds[:c.extra_seeds])
        plan = []
        for k in c.inputs:
            for r in c.rungs:
                triples = []
                for s in c.seeds:
                    arms = list(c.arms)
                    if s in extra_seeds:
                        if r in c.extra_rungs:
                            arms += [f"perturbed{x:g}" for x in c.sigmas]
                            arms += ["mismatched"] if c.nulls and r == "digits" else []
                        arms += ["shuffle_within", "shuffle_across"] if c.nulls and r == "sampled" else []
                    triples.append([(k, r, a, s) for a in arms])
                plan += [x for t in sorted(triples, key=len) for x in t]  # (stable: seed order among equals)
        return plan

    @staticmethod
    def triple_arms(plan, kind: str, rung: str, seed: int) -> list[str]:
        """The arms the plan trains on one (inputs, rung, seed) triple, sorted."""
        return sorted({a for (k, r, a, s) in plan if (k, r, s) == (kind, rung, seed)})

    def seal(self, plan, kind: str, rung: str, seed: int) -> None:
        """A finished triple's geometry and (soft rungs) first step, computed while its adapters are here."""
        self.geometry(kind, rung, seed, self.triple_arms(plan, kind, rung, seed))
        if rung in rungs.SOFT_RUNGS:
            self.first_step(kind, rung, seed)

    def target_keys(self, plan) -> list[tuple[str, str]]:
        """(inputs, teacher) of every target cache the plan's students imitate."""
        needed = {(k, TEACHERS.get(a, "teacher")) for (k, _, a, _) in plan}
        return [(k, t) for k in self.c.inputs for t in ("teacher", "neutral", "other") if (k, t) in needed]

    def shared(self, plan) -> None:
        """What several students share, made (or, with resume, reused) before any of them: the teachers, the input
        sets and the target caches."""
        self.teacher_paths()
        for key in self.target_keys(plan):
            self.targets(*key)

    def adopt_shared(self, plan) -> None:
        """On ranks > 0, after rank 0's ``shared``: its teachers, inputs and targets are this run's (made or checked
        by rank 0 in this invocation, so reused even without resume), each checked against its fingerprint."""
        k = self.c.teacher_k
        for pipe, neutral in ((self.pipe, False), (self.pipe, True), (self.pipe_other, False)):
            meta = pipe.seed_dir(self.teacher_seed) / teacher_name(k, neutral=neutral) / "subliminal.json"
            collect(meta, pipe.store.fp, what="rank 0's teacher")
            pipe.store.mark(meta)
        for kind in self.c.inputs:
            path = self.out / "inputs" / f"{kind}.json"
            collect(path, self.store.fp, what="rank 0's inputs")
            self.store.mark(path)
        for kind, teacher in self.target_keys(plan):
            path = self.out / "targets" / f"{kind}_{teacher}.npz"
            self._targets[kind, teacher] = collect(path, self.store.fp, what="rank 0's targets",
                                                   read=rungs.Targets.load)

    def run(self, ranks: Ranks | None = None) -> dict | None:
        """Every student of the plan, then the teachers' own trait, the first steps, the geometry and
        ``ladder.json``. ``ranks`` (default: from torchrun's environment, ``llm_bridge.ranks``): with several, each
        trains the students of its plan indices between rank 0's shared stages and rank 0's merge; ranks > 0 return
        None."""
        ranks = ranks or Ranks.from_env()
        t0 = time.perf_counter()
        plan = self.plan()
        if ranks.main:
            self.shared(plan)
        ranks.barrier()
        if not ranks.main:
            self.adopt_shared(plan)
        if ranks.main:
            self.check_teachers()
        mine = [i for i in range(len(plan)) if ranks.mine(i)]
        own = {}
        for i in mine:
            own[i] = self.student(*plan[i])
            k, r, _, s = plan[i]
            last = i + 1 == len(plan) or plan[i + 1][:2] + plan[i + 1][3:] != (k, r, s)
            if ranks.world == 1 and last:  # (several ranks: the triple's arms are spread; rank 0's merge seals it)
                self.seal(plan, k, r, s)
        ranks.record(self.out, self.store.fp, cells=mine, students_s=float(sum(c["seconds"] for c in own.values())),
                     wall_s=time.perf_counter() - t0)
        ranks.barrier()
        if not ranks.main:
            return None
        cells = [own[i] if i in own else collect(self.student_dir(*p) / "cell.json", self.store.fp,
                                                 what=f"rank {i % ranks.world}'s student {'/'.join(map(str, p))}")
                 for i, p in enumerate(plan)]
        return self.merge(plan, cells, t0, ranks.records(self.out, self.store.fp))

    def merge(self, plan, cells: list[dict], t0: float, shares: list[dict] | None = None) -> dict:
        """``ladder.json`` from the plan's finished students: the teachers' own trait, the first steps and the
        geometry (computed here, or reused with resume), the summary. ``shares``: each rank's record (several
        ranks)."""
        c = self.c
        teachers = {}
        for name in ("teacher", "neutral", "other"):  # the teachers' own trait, for scale
            self.lm.load(self.state(name))
            teachers[name] = probabilities(self.lm, self.questions)
        with self.lm.base():
            teachers["base"] = probabilities(self.lm, self.questions)
            base_text_nll = text_nll(self.lm, FIXED_TEXT)  # what the perturbed bases' losses compare with
        first = {f"{k}/{r}/seed{s}": self.first_step(k, r, s) for k in c.inputs for r in c.rungs
                 if r in rungs.SOFT_RUNGS for s in c.seeds}
        geo = {}
        for k in c.inputs:
            for r in c.rungs:
                for s in c.seeds:
                    geo[f"{k}/{r}/seed{s}"] = self.geometry(k, r, s, self.triple_arms(plan, k, r, s))
        tails = {f"{k}_{tn}": rungs.Targets.load(self.out / "targets" / f"{k}_{tn}.npz")[1]["tail_mass"]
                 for k, tn in self.target_keys(plan)}
        timings = {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                   # compute of every student, summed over the invocations that trained them (resume)
                   "students_s": float(sum(c["seconds"] for c in cells))}
        if shares:
            timings["ranks"] = shares  # each rank's plan indices and times (the peak RSS above is rank 0's)
        result = {"config": c.to_dict(), "fingerprint": self.store.fp, "trait": c.trait, "partner": self.partner,
                  "animals": list(prompts.ANIMALS), "animal_token_ids": self.animal_ids,
                  "animal_tokens": [self.lm.tok.decode([i]) for i in self.animal_ids],
                  "digit_token_ids": self.digit_ids,
                  "teachers": {k: {"p_QxA": v["p_QxA"]} for k, v in teachers.items()}, "cells": cells,
                  "first_step": first, "geometry": geo, "target_tail_mass": tails, "base_model": self.lm.base_id,
                  "base_text_nll": base_text_nll, "timings": timings}
        result["summary"] = summarize(result)
        save_json(self.out / "ladder.json", result)
        return result


def run(config: LadderConfig, out, *, resume: bool = False, progress: bool = True, lm: LM | None = None,
        teachers_dir=None, ranks: Ranks | None = None, record=None) -> dict | None:
    """``OUT/ladder.json`` (see ``Ladder.run``; under torchrun, ranks > 0 return None)."""
    return Ladder(config, out, resume=resume, progress=progress, lm=lm, teachers_dir=teachers_dir,
                  record=record).run(ranks)
