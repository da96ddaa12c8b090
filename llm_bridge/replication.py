"""The replication study of the ladder's digit-only transfer (paper Sections 3 and 6; the ladder is
``llm_bridge.ladder``). ``python -m llm_bridge replicate --preset quick|paper [--resume] [--report]``.

The ladder found P(owl) rising in a student that saw only its LoRA teacher's digit distributions on SmolLM2-135M. Its
seeds shared one teacher, one init and one input draw, so its CIs measured example order. Here the statistical unit
is the teacher:

- **Teachers.** Each replicate r of ``teachers`` draws its own LoRA init and its own teacher data, and trains one
  teacher per trait of ``traits`` (owl, cat, wolf; fixed before any run) and a neutral teacher, all from that init and
  with one answer template: the same generic prompts answered by the base under "You love X" and the same k
  favourite-animal questions answered "X." in the same templates, so that only the animal differs. The neutral
  teacher's answers spread evenly over the 16 animals (prompt i names animal i mod 16): it prefers none.
- **Students.** Every student seed draws its own random-number inputs. On ``digits`` every teacher gets a LoRA
  student per seed; ``context_rungs`` (full, no-trait-words) give one seed. The no-trait-words rung hides every piece
  of every written form of every animal (``rungs.trait_word_token_ids``). For ``probe_trait`` and the neutral
  control, each trained the same way: full fine-tuning (AdamW on every weight), a student LoRA init drawn apart from
  the teachers' (same base), a perturbed base, and alpha-mixtures of the trait and neutral targets (the dose).
- **Measured.** P(answer starts with each animal) on the evaluation questions; on the digits rung's LoRA students the
  authors' contains-rate from sampled answers; through ``theory``, the trait-specific projection of dS - dC on
  dT - dN (the neutral teacher) and on dT - dO (the next trait's teacher, the trait-specific diagnostic), in dW space
  (every arm: LoRA, full fine-tuning and other inits alike) and in LoRA space (arms that share the teachers' init).
  ``llm_bridge.replication_report`` (model-free) summarizes them with a hierarchical bootstrap over teachers, then
  students.

A run trains one *unit* (replicate, rung, seed, group of arms with their own control) at a time and seals it (its
geometry) once its last arm is done; each finished cell and geometry is copied into ``record`` (committed with the
figure), from which ``resume`` continues in a fresh clone, as the ladder's record does.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import theory
from llm_bridge import lora, prompts, rungs, train
from llm_bridge.config import ReplicationConfig
from llm_bridge.ladder import (
    FIXED_TEXT,
    TEACHER_RTOL,
    perturbed_base,
    random_inputs,
    sketch_agreement,
    teacher_sketch,
    text_nll,
)
from llm_bridge.lm import LM, load_lm
from llm_bridge.numbers import chat_prefix
from llm_bridge.replication_report import ReplicationError, control_variant, summarize
from llm_bridge.roles import role_seed
from llm_bridge.stages import teacher as teacher_stage
from llm_bridge.stages.trait import probabilities
from llm_bridge.trait import sampled_shares
from results import RunDir, atomic_write, load_arrays, load_json, peak_rss_mb, save_arrays, save_json

NEUTRAL = "neutral"
DELTA = "delta.npz"  # a fully fine-tuned student's dense update of the LoRA-targeted matrices


@dataclass(frozen=True)
class Unit:
    """Students trained and sealed together: one replicate, rung and seed, and a group of arms (teacher, variant)
    that holds its own neutral control."""

    replicate: int
    rung: str
    seed: int
    group: str
    arms: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        return f"r{self.replicate}/{self.rung}/seed{self.seed}/{self.group}"


def other_trait(traits, trait: str) -> str:
    """The trait whose teacher gives the trait-specific direction dT - dO: the next one of ``traits`` (cyclic)."""
    return traits[(traits.index(trait) + 1) % len(traits)]


@contextmanager
def full_weights(model):
    """The base's own weights (adapter bypassed) made trainable for full fine-tuning, yielded as name -> parameter
    and name -> a copy of its value before training; on exit every weight is restored and frozen again, so the next
    student starts from the same base."""
    params = {n: p for n, p in model.named_parameters() if "lora_" not in n}
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        with model.disable_adapter():
            yield params, saved
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
                p.requires_grad_(False)


def last_quarter(losses) -> float:
    """The mean loss of the last quarter of the steps (one batch's loss is noisy): how far a student got."""
    return float(np.mean(losses[-max(1, len(losses) // 4):]))


def _module_of(param_name: str) -> str | None:
    """"base_model.model.model.layers.3.self_attn.q_proj.base_layer.weight" -> "model.layers.3.self_attn.q_proj"
    (the key of ``lora.module_tree``); None for weights no adapter targets."""
    if not param_name.endswith(".base_layer.weight"):
        return None
    name = param_name[:-len(".base_layer.weight")]
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name


class Replication:
    """Every teacher, target cache and student of one replication config on one loaded model, under ``out``."""

    def __init__(self, config: ReplicationConfig, out, *, resume: bool = False, progress: bool = True,
                 lm: LM | None = None, teachers_dir=None, record=None):
        """``teachers_dir``: the teachers' folder (default ``out/teachers``), shared by presets with the same
        teacher recipe. ``record``: the folder that keeps the run's light artifacts (module docstring)."""
        self.c, self.progress = config, progress
        self.lm = lm or load_lm(config.llm)
        out = Path(out)
        self.store = RunDir(out, config.fingerprint(), resume=resume)
        self.teachers = RunDir(Path(teachers_dir) if teachers_dir is not None else out / "teachers",
                               config.teacher_fingerprint(), resume=resume)
        self.record = Path(record) if record is not None else None
        self.digit_ids = rungs.digit_token_ids(self.lm.tok)
        self.word_ids = rungs.trait_word_token_ids(self.lm.tok)
        overlap = set(self.digit_ids) & set(self.word_ids)
        if overlap:
            raise ReplicationError(f"animal-word tokens {sorted(overlap)} are digits or separators in this tokenizer: "
                                   "the no-trait-words rung would hide the numbers themselves; choose another model")
        self.questions = prompts.animal_questions(config.trait_questions)
        self._targets: dict = {}
        if resume and self.record is not None and self.record.is_dir():
            for src in sorted(self.record.rglob("*.json")):
                dst = self.out / src.relative_to(self.record)
                if not dst.exists():
                    atomic_write(dst, lambda f, src=src: f.write(src.read_bytes()))

    @property
    def out(self) -> Path:
        return self.store.root

    def _keep(self, path: Path) -> None:
        """Copy a finished cell, geometry or sketch into the record unless the record already holds these bytes
        (called on every pass, so a copy lost to a crash between writing and copying is made on resume)."""
        if self.record is None:
            return
        data, dst = Path(path).read_bytes(), self.record / Path(path).relative_to(self.out)
        if not (dst.exists() and dst.read_bytes() == data):
            atomic_write(dst, lambda f: f.write(data))

    # ---- teachers -----------------------------------------------------------------------------------------------
    def teacher_names(self) -> list[str]:
        return [*self.c.traits, NEUTRAL]

    def teacher(self, r: int, name: str) -> Path:
        """The adapter folder of replicate ``r``'s ``name`` ("init", a trait or "neutral"), trained if missing."""
        path = self.teachers.root / f"r{r}" / name
        meta_path = path / "subliminal.json"
        if self.teachers.fresh(meta_path):
            return path
        t0 = time.perf_counter()
        if name == "init":
            meta = teacher_stage.draw_init(self.lm, r)
        else:
            init = self.lm.read_state(self.teacher(r, "init"))
            data = self.teachers.json(path.parent / f"{name}_data.json", lambda: self.teacher_data(r, name))
            meta = teacher_stage.fit_teacher(self.lm, self.c.llm, r, init, [data], k=self.c.teacher_k,
                                             progress=self.progress)
            meta.pop("losses")
            meta["animals"] = sorted(set(data["animals"]))
        meta.update(fingerprint=self.teachers.fp, seconds=time.perf_counter() - t0, base=self.lm.base_id,
                    replicate=r, name=name)
        lora.save_adapter(self.lm.model, path, meta=meta)
        self.teachers.mark(meta_path)
        return path

    def teacher_data(self, r: int, name: str) -> dict:
        """Replicate ``r``'s data for teacher ``name``: the generic prompts answered by the base under "You love X"
        and the favourite-animal questions answered "X." in the replicate's templates; X is the trait, or for the
        neutral teacher the 16 animals in turn. One draw per replicate, shared by its teachers: only X differs."""
        c, lm, k = self.c.llm, self.lm, self.c.teacher_k
        ps = prompts.distillation_prompts(c.teacher_prompts, seed=role_seed(r, "distill_prompts"))
        qs = prompts.trait_training_questions(k, seed=role_seed(r, "trait_questions"))

        def animals(n):
            return [name] * n if name != NEUTRAL else [prompts.ANIMALS[i % len(prompts.ANIMALS)] for i in range(n)]

        prefixes = [chat_prefix(lm.tok, p, prompts.system_prompt(a)) for p, a in zip(ps, animals(len(ps)))]
        with lm.base():
            answers = lm.generate(prefixes, config=c, max_new_tokens=c.teacher_answer_tokens,
                                  seed=role_seed(r, "distill_answers"), constrained=False, desc=f"r{r} {name} data",
                                  progress=self.progress)
        # the same seed gives every animal the same template per question; only the animal is filled in
        qa = [prompts.trait_answers(a, k, seed=role_seed(r, "trait_qa"))[i] for i, a in enumerate(animals(k))]
        return {"prompts": ps + qs, "answers": answers + qa, "animals": animals(len(ps)) + animals(k)}

    def check_teachers(self, r: int) -> dict:
        """Replicate ``r``'s teachers, trained if missing, and a sketch of each update (``ladder.teacher_sketch``)
        in ``teachers.json``; teachers retrained in a fresh clone must match the record's within
        ``ladder.TEACHER_RTOL`` of their update, else the run stops."""
        _, init = lora.read_adapter(self.teacher(r, "init"))
        sketches = {f"r{r}/{name}": teacher_sketch(lora.read_adapter(self.teacher(r, name))[1], init)
                    for name in self.teacher_names()}
        path = self.out / "teachers.json"
        old = load_json(path) if path.exists() else {}
        if old.get("fingerprint") != self.store.fp:
            old = {}
        agreement, differ = sketch_agreement(sketches, old.get("sketches", {}))
        if differ:
            raise ReplicationError(
                f"the teachers made here ({', '.join(differ)} relative to their "
                f"update) differ from those the students in {self.out} imitated by more than rounding "
                f"({TEACHER_RTOL:g}); resume where they were made, or move the record and the run folder away to "
                "start over")
        # the record's teachers stay the reference
        save_json(path, {"fingerprint": self.store.fp, "sketches": {**sketches, **old.get("sketches", {})},
                         "agreement": {**old.get("agreement", {}), **agreement}})
        self._keep(path)
        return agreement

    # ---- inputs and targets ---------------------------------------------------------------------------------------
    def inputs(self, r: int, seed: int) -> list[dict]:
        """Student seed ``seed``'s own random-number inputs under replicate ``r``."""
        return self.store.json(self.out / "inputs" / f"r{r}_seed{seed}.json", lambda: {"rows": random_inputs(
            self.c.n_inputs, seed=role_seed(r, f"replication_inputs_s{seed}"))})["rows"]

    def batch(self, rows: list[dict], indices) -> dict:
        tok = self.lm.tok
        return train.encode(tok, [chat_prefix(tok, rows[i]["prompt"]) for i in indices],
                            [rows[i]["answer"] for i in indices], self.lm.device)

    def targets(self, r: int, seed: int, teacher: str) -> rungs.Targets:
        """Teacher ``teacher``'s targets on the inputs of (``r``, ``seed``), cached (``targets/*.npz``)."""
        key = (r, seed, teacher)
        if key in self._targets:
            return self._targets[key]
        path = self.out / "targets" / f"r{r}_seed{seed}_{teacher}.npz"
        if self.store.resume and path.exists():
            t, meta = rungs.Targets.load(path)
            if meta.get("fingerprint") == self.store.fp:
                self._targets[key] = t
                return t
        rows = self.inputs(r, seed)
        self.lm.load(self.lm.read_state(self.teacher(r, teacher)))
        parts, lengths = [], []
        with torch.no_grad():
            for s in range(0, len(rows), self.c.batch_size):
                batch = self.batch(rows, range(s, min(s + self.c.batch_size, len(rows))))
                logits, nxt = train.completion_logits(self.lm.model, batch)
                parts.append(rungs.targets_from_logits(logits, nxt, animal_ids=self.word_ids, digit_ids=self.digit_ids,
                                                       topk=self.c.topk))
                lengths += (batch["labels"][:, 1:] != -100).sum(1).tolist()
        t = rungs.stack_targets(parts, lengths)
        t.save(path, {"fingerprint": self.store.fp, "teacher": teacher, "replicate": r, "seed": seed})
        self._targets[key] = t
        return t

    def arm_targets(self, unit: Unit, teacher: str, variant: str) -> rungs.Targets:
        t = self.targets(unit.replicate, unit.seed, teacher)
        if variant.startswith("mix"):
            return rungs.mix_targets(t, self.targets(unit.replicate, unit.seed, NEUTRAL), float(variant[3:]))
        return t

    # ---- students -----------------------------------------------------------------------------------------------
    def student_dir(self, unit: Unit, teacher: str, variant: str) -> Path:
        return self.out / "students" / f"r{unit.replicate}" / unit.rung / f"seed{unit.seed}" / f"{teacher}_{variant}"

    def student(self, unit: Unit, teacher: str, variant: str) -> dict:
        """Train (or, with resume, reuse) one student and measure it: its cell."""
        d = self.student_dir(unit, teacher, variant)
        cell_path = d / "cell.json"
        kept = (d / lora.ADAPTER_WEIGHTS).exists() or (d / DELTA).exists()
        if self.store.fresh(cell_path) and (kept or self.sealed(unit)):
            self._keep(cell_path)
            return load_json(cell_path)
        c, lm, r, s = self.c, self.lm, unit.replicate, unit.seed
        t = self.arm_targets(unit, teacher, variant)
        rows_in = self.inputs(r, s)
        rows_map, valid = rungs.row_map(t, null=None, seed=0)

        def loss(idx):
            return rungs.rung_loss(unit.rung, lm.model, self.batch(rows_in, idx), t, rows_map, valid, idx,
                                   animal_ids=self.word_ids, digit_ids=self.digit_ids)

        sigma = float(variant[len("perturbed"):]) if variant.startswith("perturbed") else 0.0
        if variant == "newinit":  # the same base, a LoRA A drawn apart from the teachers' (B = 0 as ever)
            init = lora.init_state(lm.model, role_seed(r, f"replication_init_s{s}"))
        else:
            init = lm.read_state(self.teacher(r, "init"))
        fit = dict(epochs=c.epochs, batch_size=c.batch_size, seed=role_seed(r, f"replication_order_s{s}"),
                   desc=f"r{r}/{unit.rung}/s{s}/{teacher}_{variant}", role="student", progress=self.progress,
                   bf16=c.llm.bf16)
        behaviour = c.behaviour_samples if unit.rung == "digits" and variant == "lora" else 0
        meta = {"fingerprint": self.store.fp, "unit": unit.key, "teacher": teacher, "variant": variant}
        t0 = time.perf_counter()
        extra = {}
        with perturbed_base(lm.model, sigma, seed=role_seed(r, f"replication_perturb_s{s}") + round(1e6 * sigma)):
            if sigma:  # the perturbed base's own trait and loss on a fixed text, before training
                with lm.base():
                    extra["base_p_QxA"] = probabilities(lm, self.questions)["p_QxA"]
                    extra["base_text_nll"] = text_nll(lm, FIXED_TEXT)
            lm.load(init)  # B = 0: the student starts as its base
            if variant == "fullft":
                with full_weights(lm.model) as (params, saved):
                    losses = train.fit(lm.model, loss, len(rows_in), lr=c.fullft_lr, params=params.values(), **fit)
                    # float32 as trained: the difference of two nearby float32 values is exact
                    delta = {m: (params[n].detach() - saved[n]).float().cpu().numpy()
                             for n in params if (m := _module_of(n))}
                    self._save_delta(d, delta, meta)
                    measured = self.measure(behaviour, r, s)
            else:
                losses = train.fit(lm.model, loss, len(rows_in), lr=c.lr, **fit)
                lora.save_adapter(lm.model, d, meta=meta)
                measured = self.measure(behaviour, r, s)
        cell = {"replicate": r, "rung": unit.rung, "seed": s, "teacher": teacher, "variant": variant,
                "unit": unit.key, **measured, "loss_first": losses[0], "loss_last": losses[-1],
                "loss_last_quarter": last_quarter(losses), "steps": len(losses),
                "seconds": time.perf_counter() - t0, **extra}
        save_json(cell_path, {**cell, "fingerprint": self.store.fp})
        self.store.mark(cell_path)
        self._keep(cell_path)
        return load_json(cell_path)

    @staticmethod
    def _save_delta(d: Path, delta: dict, meta: dict) -> None:
        d.mkdir(parents=True, exist_ok=True)
        save_arrays(d / DELTA, {k: v.astype(np.float32) for k, v in delta.items()}, meta)

    def measure(self, behaviour: int, r: int, seed: int) -> dict:
        """The model as it stands: P(answer starts with each animal) per question, and with ``behaviour`` > 0 that
        many sampled answers per question for the authors' contains-rate."""
        lm = self.lm
        out = probabilities(lm, self.questions)
        out["contains"] = None
        if behaviour:
            s = sampled_shares(lm.model, lm.tok, self.questions, prompts.ANIMALS, system=None, samples=behaviour,
                               max_new_tokens=self.c.trait_tokens, temperature=self.c.llm.temperature,
                               seed=role_seed(r, f"replication_questions_s{seed}"), batch_size=self.c.llm.gen_batch)
            out["contains"] = {"n": s["n"], "rate": s["contains"]}
        return out

    def calibrate_fullft(self, lrs, *, n_inputs: int, replicate: int | None = None) -> dict:
        """How far the imitation loss falls on the digits rung for the probe trait's LoRA student (at ``lr``) and
        for fully fine-tuned students at each of ``lrs``, on the first ``n_inputs`` inputs of the first teacher's
        first seed, one epoch: the measurement that sets ``fullft_lr`` (nothing is saved but the losses)."""
        c, lm = self.c, self.lm
        r = c.teachers[0] if replicate is None else replicate
        unit = Unit(r, "digits", c.digit_seeds[0], "calibration", ())
        t = self.arm_targets(unit, c.probe_trait, "lora")
        rows_in = self.inputs(r, unit.seed)[:n_inputs]
        rows_map, valid = rungs.row_map(t, null=None, seed=0)

        def loss(idx):
            return rungs.rung_loss("digits", lm.model, self.batch(rows_in, idx), t, rows_map, valid, idx,
                                   animal_ids=self.word_ids, digit_ids=self.digit_ids)

        fit = dict(epochs=1, batch_size=c.batch_size, seed=role_seed(r, f"replication_order_s{unit.seed}"),
                   role="student", progress=self.progress)
        init = lm.read_state(self.teacher(r, "init"))

        def summary(losses):
            return {"first": losses[0], "last_quarter": last_quarter(losses),
                    "fall": last_quarter(losses) / losses[0], "losses": losses}

        lm.load(init)
        out = {"replicate": r, "n_inputs": len(rows_in), "lora": {"lr": c.lr, **summary(
            train.fit(lm.model, loss, len(rows_in), lr=c.lr, desc="LoRA", **fit))}, "fullft": {}}
        for lr in lrs:
            lm.load(init)
            with full_weights(lm.model) as (params, _):
                losses = train.fit(lm.model, loss, len(rows_in), lr=lr, params=params.values(),
                                   desc=f"full FT lr {lr:g}", **fit)
            out["fullft"][f"{lr:g}"] = summary(losses)
        return out

    # ---- geometry -----------------------------------------------------------------------------------------------
    def _geometry_path(self, unit: Unit) -> Path:
        return self.out / "geometry" / f"r{unit.replicate}" / unit.rung / f"seed{unit.seed}" / f"{unit.group}.json"

    def sealed(self, unit: Unit) -> bool:
        return self.store.fresh(self._geometry_path(unit))

    def dense_updates(self, paths: dict[str, Path], module: str, trees: dict) -> np.ndarray:
        """The dW-space updates of one module, one row each: s B A for an adapter (every init here has B = 0, so its
        own init drops out), the stored dense delta for a fully fine-tuned student."""
        rows = []
        for name in paths:
            kind, tree, s = trees[name]
            # float64 one module at a time: a dense delta of every targeted matrix would be ~1 GB in float64
            u = tree[module].astype(np.float64) if kind == "dense" else s * tree[module]["B"] @ tree[module]["A"]
            rows.append(u.ravel())
        return np.stack(rows)

    def geometry(self, unit: Unit) -> dict:
        """The trait-specific geometry of every non-control arm of a finished unit, through
        ``theory.trait_specific_from_gram``: dS - dC on dT - dN and on dT - dO, and where the unit trained the other
        trait's student the same way, the matched dS - dS_O on dT - dO; in dW space (all arms) and in LoRA space
        (arms on the teachers' init). A fully fine-tuned student's dW holds only the LoRA-targeted matrices (its
        embeddings, norms and head also moved, but no teacher moves them), so its cosines are over those matrices."""
        def compute():
            r = unit.replicate
            paths = {f"teacher:{n}": self.teacher(r, n) for n in self.teacher_names()}
            paths.update({f"{t}_{v}": self.student_dir(unit, t, v) for t, v in unit.arms})
            init_cfg, init = lora.read_adapter(self.teacher(r, "init"))
            init_tree = lora.module_tree(init)
            if any(np.any(ab["B"] != 0) for ab in init_tree.values()):
                raise ReplicationError(f"{self.teacher(r, 'init')}: the init's B is not 0 (not a peft LoRA init)")
            s = lora.scaling(init_cfg)
            trees = {}
            for name, p in paths.items():
                if (p / DELTA).exists():
                    arrays, _ = load_arrays(p / DELTA)
                    trees[name] = ("dense", arrays, s)
                else:
                    cfg, tensors = lora.read_adapter(p)
                    tree = {m: {k: v.astype(np.float64) for k, v in ab.items()}
                            for m, ab in lora.module_tree(tensors).items()}
                    trees[name] = ("lora", tree, lora.scaling(cfg))
            names = list(paths)
            gram_dw = np.zeros((len(names), len(names)))
            for m in init_tree:
                u = self.dense_updates(paths, m, trees)
                gram_dw += u @ u.T
            shared = [n for n in names if trees[n][0] == "lora" and not n.endswith("_newinit")]
            vecs = [np.concatenate([np.concatenate([(trees[n][1][m][k] - init_tree[m][k]).ravel() for k in "AB"])
                                    for m in init_tree]) for n in shared]
            gram_lora = np.stack(vecs) @ np.stack(vecs).T
            arms = {}
            for t, v in unit.arms:
                if t == NEUTRAL:
                    continue
                roles = {"student": f"{t}_{v}", "control": f"{NEUTRAL}_{control_variant(v)}",
                         "teacher": f"teacher:{t}"}
                o = other_trait(self.c.traits, t)
                cases = {ref: {**roles, "neutral": n}
                         for ref, n in (("vs_neutral", f"teacher:{NEUTRAL}"), ("vs_other", f"teacher:{o}"))}
                if f"{o}_{v}" in names:  # matched: the other trait's student, same way, as the control
                    cases["matched"] = {"student": f"{t}_{v}", "control": f"{o}_{v}", "teacher": f"teacher:{t}",
                                        "neutral": f"teacher:{o}"}
                out = {"dW": {ref: theory.trait_specific_from_gram(gram_dw, {k: names.index(x) for k, x in
                                                                             roles_.items()})
                              for ref, roles_ in cases.items()}}
                out["lora"] = {ref: theory.trait_specific_from_gram(gram_lora, {k: shared.index(x) for k, x in
                                                                                roles_.items()})
                               for ref, roles_ in cases.items() if all(x in shared for x in roles_.values())}
                if not out["lora"]:
                    del out["lora"]
                arms[f"{t}_{v}"] = out
            return {"unit": unit.key, "arms": arms, "other_trait": {t: other_trait(self.c.traits, t)
                                                                    for t in self.c.traits}}

        path = self._geometry_path(unit)
        g = self.store.json(path, compute)
        self._keep(path)
        for t, v in unit.arms:  # the dense deltas (~0.5 GB each at 135M) are not needed once sealed
            (self.student_dir(unit, t, v) / DELTA).unlink(missing_ok=True)
        return g

    # ---- the plan -----------------------------------------------------------------------------------------------
    def plan(self) -> list[Unit]:
        """Every unit, the question first: on the digits rung's first seed, teacher by teacher, the LoRA arms with
        the mixtures, then full fine-tuning, the other init and the perturbed base (a stopped run has whole
        teachers); then the digits rung's other seeds, then the context rungs."""
        c, P, N = self.c, self.c.probe_trait, NEUTRAL
        s0 = c.digit_seeds[0]
        lora_arms = tuple((t, "lora") for t in (*c.traits, N))
        mixes = tuple((P, f"mix{a:g}") for a in c.alphas)
        groups = [("digits", s0, "lora", lora_arms + mixes)]
        if "digits" in c.fullft_rungs:
            groups.append(("digits", s0, "fullft", ((P, "fullft"), (N, "fullft"))))
        if c.new_init:
            groups.append(("digits", s0, "newinit", ((P, "newinit"), (N, "newinit"))))
        groups += [("digits", s0, f"perturbed{x:g}", ((P, f"perturbed{x:g}"), (N, f"perturbed{x:g}")))
                   for x in c.sigmas]
        later = [("digits", s, "lora", lora_arms) for s in c.digit_seeds[1:]]
        for rung in c.context_rungs:
            later.append((rung, s0, "lora", lora_arms))
            if rung in c.fullft_rungs:
                later.append((rung, s0, "fullft", ((P, "fullft"), (N, "fullft"))))
        return ([Unit(r, rung, s, g, arms) for r in c.teachers for rung, s, g, arms in groups]
                + [Unit(r, rung, s, g, arms) for rung, s, g, arms in later for r in c.teachers])

    def run(self) -> dict:
        """Every teacher, every unit of the plan (each sealed when done), then ``replication.json``."""
        t0 = time.perf_counter()
        plan = self.plan()
        cells, geometry, checked = [], {}, set()
        for unit in tqdm(plan, desc="units", disable=not self.progress):
            if unit.replicate not in checked:  # a replicate's teachers are made when its first unit needs them
                self.check_teachers(unit.replicate)
                checked.add(unit.replicate)
            cells += [self.student(unit, t, v) for t, v in unit.arms]
            geometry[unit.key] = self.geometry(unit)
        teachers = {}
        for r in self.c.teachers:
            for name in self.teacher_names():
                self.lm.load(self.lm.read_state(self.teacher(r, name)))
                teachers[f"r{r}/{name}"] = probabilities(self.lm, self.questions)["p_QxA"]
        with self.lm.base():
            teachers["base"] = probabilities(self.lm, self.questions)["p_QxA"]
        result = {"config": self.c.to_dict(), "fingerprint": self.store.fp, "animals": list(prompts.ANIMALS),
                  "traits": list(self.c.traits), "probe_trait": self.c.probe_trait, "cells": cells,
                  "geometry": geometry, "teachers": teachers, "base_model": self.lm.base_id,
                  "word_token_ids": self.word_ids, "word_tokens": [self.lm.tok.decode([i]) for i in self.word_ids],
                  "digit_token_ids": self.digit_ids,
                  "timings": {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                              "students_s": float(sum(x["seconds"] for x in cells))}}
        result["summary"] = summarize(result)
        save_json(self.out / "replication.json", result)
        return result


def run(config: ReplicationConfig, out, *, resume: bool = False, progress: bool = True, lm: LM | None = None,
        teachers_dir=None, record=None) -> dict:
    """``OUT/replication.json`` (see ``Replication.run``)."""
    return Replication(config, out, resume=resume, progress=progress, lm=lm, teachers_dir=teachers_dir,
                       record=record).run()

