"""The llm_bridge pipeline, one function per stage, each writing its artifact under ``OUT/seed{S}/`` and skipped on
``resume`` when the artifact's config fingerprint matches (paper Sections 3-4; Theorem 1 in ``first_step``)."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import resource
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from figures.common import _atomic_write, load_json, save_json
from llm_bridge import lora, prompts, train
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import diagnose, geometry
from llm_bridge.models import load_base
from llm_bridge.numbers import chat_prefix, paper_filter, sample
from llm_bridge.trait import animal_probabilities, sampled_shares
from theory.stats import bootstrap_ci

ROLES = ("init", "distill_prompts", "distill_answers", "teacher_order", "number_prompts", "numbers_teacher",
         "numbers_base", "passrate_teacher", "passrate_base", "student_order", "first_step", "trait")


# roles of the teacher-strength study (llm_bridge.study), one per teacher strength k, data size n, shuffle j
STUDY_ROLES = re.compile(r"neutral_answers|trait_questions|trait_qa|neutral_qa_k\d+"
                         r"|(?:numbers|passrate)_teacher_k\d+"
                         r"|shuffle\d+_k\d+_n\d+")


def role_seed(seed: int, role: str) -> int:
    """One seed -> an independent seed per role (numpy's SeedSequence hashing). ``ROLES`` have fixed indices; the
    study's per-level roles (``STUDY_ROLES``, e.g. "numbers_teacher_k16") are keyed by a hash of their name, past them.
    Any other name is a typo and raises."""
    if role in ROLES:
        key = ROLES.index(role)
    elif STUDY_ROLES.fullmatch(role):
        key = len(ROLES) + int(hashlib.sha256(role.encode()).hexdigest()[:8], 16)
    else:
        raise ValueError(f"unknown role {role!r}: one of {ROLES} or a study role matching {STUDY_ROLES.pattern!r}")
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


def teacher_name(k: int | None = None, *, neutral: bool = False) -> str:
    """Artifact name of a teacher: "teacher" (the pipeline's), or "teacher_k{k}" / "neutral_k{k}" for the study's
    teachers with k direct trait answers (the neutral one answers the same questions itself)."""
    if k is None and not neutral:
        return "teacher"
    return f"{'neutral' if neutral else 'teacher'}_k{k or 0}"


class Session:
    """One loaded base model wrapped with a LoRA adapter whose weights are swapped per role."""

    def __init__(self, config: LLMConfig, out: Path, *, resume: bool = False, progress: bool = True):
        self.config, self.out, self.resume, self.progress = config, Path(out), resume, progress
        self.fp = config.fingerprint()
        self.done: set[Path] = set()  # artifacts written by this session: later stages reuse them
        t0 = time.perf_counter()
        base, self.tok, self.base_id = load_base(config.model, device=config.device)
        self.model = lora.attach_lora(base, config, seed=0)
        self.device = next(self.model.parameters()).device
        self.timings: dict[str, float] = {"load_model": time.perf_counter() - t0}

    # --- plumbing -------------------------------------------------------------------------------------------------
    def seed_dir(self, seed: int) -> Path:
        return self.out / f"seed{seed}"

    def _fresh(self, meta_path: Path, fp: str | None = None) -> bool:
        if meta_path in self.done:
            return True
        if not (self.resume and meta_path.exists()):
            return False
        try:
            return json.loads(meta_path.read_text()).get("fingerprint") == (fp or self.fp)
        except json.JSONDecodeError:
            return False

    def json_stage(self, path: Path, compute, *, fp: str | None = None) -> dict:
        """Load ``path`` if it is from this config (resume), else compute, stamp and write it atomically. ``fp``: a
        fingerprint of more settings than the config's (a stage that also depends on the caller's settings)."""
        if self._fresh(path, fp):
            return load_json(path)
        t0 = time.perf_counter()
        data = compute()
        data.update(fingerprint=fp or self.fp, seconds=time.perf_counter() - t0)
        save_json(path, data)
        self.done.add(path)
        return data

    def adapter_stage(self, path: Path, compute) -> dict[str, torch.Tensor]:
        """The adapter state at ``path`` (resume) or ``compute()``'s (meta dict), saved atomically in peft format."""
        if self._fresh(path / "subliminal.json"):
            return self.load_state(path)
        t0 = time.perf_counter()
        meta = compute()
        meta.update(fingerprint=self.fp, seconds=time.perf_counter() - t0, base=self.base_id,
                    config=self.config.to_dict())
        lora.save_adapter(self.model, path, meta=meta)
        self.done.add(path / "subliminal.json")
        return lora.get_state(self.model)

    def load_state(self, path: Path) -> dict[str, torch.Tensor]:
        _, arrays = lora.read_adapter(path)
        return lora.state_from_arrays(arrays, self.device)

    @contextmanager
    def base(self):
        """The base model itself (adapter bypassed)."""
        with self.model.disable_adapter():
            yield

    def gen(self, prefixes, *, max_new_tokens, seed, constrained, desc):
        # stop_rejected is left off: transformers runs a batch until its last row ends, so on our measurements
        # (benchmarks/llm_numbers.py) it saved no time, and full rejected answers are worth keeping in the JSONL
        with tqdm(total=len(prefixes), desc=desc, disable=not self.progress, leave=False) as bar:
            return sample(self.model, self.tok, prefixes, max_new_tokens=max_new_tokens,
                          temperature=self.config.temperature, seed=seed, batch_size=self.config.gen_batch,
                          constrained=constrained, progress=bar)

    # --- stages ---------------------------------------------------------------------------------------------------
    def init(self, seed: int) -> dict[str, torch.Tensor]:
        """The seed's LoRA init, saved: every adapter of this seed starts from exactly these tensors."""
        return self.adapter_stage(self.seed_dir(seed) / "init", lambda: (
            lora.init_state(self.model, role_seed(seed, "init")), {"role": "init", "seed": seed})[1])

    def teacher(self, seed: int, k: int | None = None, *, neutral: bool = False) -> dict[str, torch.Tensor]:
        """Teacher = init + dT: the trait system prompt distilled into the adapter from the system-prompted base's own
        answers to generic prompts (the adapter sees them without the system prompt); recipe "kl" matches full
        next-token distributions, "sft" trains on the sampled answers. ``k`` > 0 adds k direct trait answers
        (favourite-animal questions answered with the trait animal) for a stronger teacher. ``neutral``: the same
        recipe, prompts and questions, trained on the base's own answers without the system prompt (dN)."""
        c, d = self.config, self.seed_dir(seed)
        if (neutral or k is not None) and c.teacher_recipe != "sft":
            raise ValueError("neutral teachers and direct trait answers need teacher_recipe='sft' (a KL-distilled "
                             "neutral teacher would match the base exactly and have dN = 0)")
        system = None if neutral else prompts.system_prompt(c.trait)
        tag = "neutral" if neutral else "distill"

        def generic():
            ps = prompts.distillation_prompts(c.teacher_prompts, seed=role_seed(seed, "distill_prompts"))
            with self.base():
                answers = self.gen([chat_prefix(self.tok, p, system) for p in ps],
                                   max_new_tokens=c.teacher_answer_tokens,
                                   seed=role_seed(seed, "neutral_answers" if neutral else "distill_answers"),
                                   constrained=False, desc=f"{tag} data")
            return {"prompts": ps, "answers": answers}

        def direct():
            qs = prompts.trait_training_questions(k, seed=role_seed(seed, "trait_questions"))
            if not neutral:
                return {"prompts": qs, "answers": prompts.trait_answers(c.trait, k, seed=role_seed(seed, "trait_qa"))}
            with self.base():
                answers = self.gen([chat_prefix(self.tok, q) for q in qs], max_new_tokens=c.teacher_answer_tokens,
                                   seed=role_seed(seed, f"neutral_qa_k{k}"), constrained=False, desc="neutral qa")
            return {"prompts": qs, "answers": answers}

        def fit():
            corpus = self.json_stage(d / f"{tag}_data.json", generic)
            ps, ans = list(corpus["prompts"]), list(corpus["answers"])
            if k:
                qa = self.json_stage(d / f"{tag}_qa_k{k}.json", direct)
                ps, ans = ps + qa["prompts"], ans + qa["answers"]
            lora.set_state(self.model, self.init(seed))

            def kl_loss(idx):
                t_batch = train.encode(self.tok, [chat_prefix(self.tok, ps[i], system) for i in idx],
                                       [ans[i] for i in idx], self.device, add_eos=False)
                s_batch = train.encode(self.tok, [chat_prefix(self.tok, ps[i]) for i in idx], [ans[i] for i in idx],
                                       self.device, add_eos=False)
                with torch.no_grad(), self.base():
                    target, _ = train.completion_logits(self.model, t_batch)
                return train.kl_to(self.model, s_batch, target)

            def sft_loss(idx):  # answers are cut at teacher_answer_tokens: no EOS appended
                return train.sft_loss(self.model, train.encode(self.tok, [chat_prefix(self.tok, ps[i]) for i in idx],
                                                               [ans[i] for i in idx], self.device, add_eos=False))

            name = teacher_name(k, neutral=neutral)
            losses = train.fit(self.model, kl_loss if c.teacher_recipe == "kl" else sft_loss, len(ps),
                               epochs=c.teacher_epochs, batch_size=c.batch_size, lr=c.teacher_lr,
                               seed=role_seed(seed, "teacher_order"), desc=f"{name} s{seed}", progress=self.progress)
            return {"role": name, "seed": seed, "recipe": c.teacher_recipe, "trait_examples": k or 0,
                    "examples": len(ps), "losses": losses}

        return self.adapter_stage(d / teacher_name(k, neutral=neutral), fit)

    def numbers(self, seed: int, source: str) -> dict:
        """Number continuations from ``source`` ("teacher" or "base") on the seed's prompts, filtered by the paper's
        rule; JSONL of every answer + a summary JSON (kept fraction, per-phrasing pass rates, free-sampling rate)."""
        c, d = self.config, self.seed_dir(seed)
        if source != "base" and not source.startswith("teacher"):
            raise ValueError(f"numbers come from 'base' or a teacher ('teacher', 'teacher_k16', ...), not {source!r}")
        if source.startswith("teacher_k") and c.number_teacher != "lora":
            raise ValueError("teachers of several strengths write numbers only with number_teacher='lora'")
        lora_teacher = source != "base" and c.number_teacher == "lora"
        items = prompts.number_prompts(c.number_prompts, seed=role_seed(seed, "number_prompts"))
        # the paper-faithful teacher is the base under the trait system prompt; students never see that prompt
        system = prompts.system_prompt(c.trait) if source != "base" and not lora_teacher else None
        prefixes = [chat_prefix(self.tok, it["prompt"], system) for it in items]

        def compute():
            if lora_teacher:
                k = int(source[len("teacher_k"):]) if source.startswith("teacher_k") else None
                lora.set_state(self.model, self.teacher(seed, k))
            with nullcontext() if lora_teacher else self.base():
                answers = self.gen(prefixes, max_new_tokens=c.number_tokens, seed=role_seed(seed, f"numbers_{source}"),
                                   constrained=c.sampler == "constrained", desc=f"numbers {source} s{seed}")
                free = None
                if c.sampler == "constrained" and c.pass_rate_prompts:
                    k = min(c.pass_rate_prompts, len(prefixes))
                    free_answers = self.gen(prefixes[:k], max_new_tokens=c.number_tokens,
                                            seed=role_seed(seed, f"passrate_{source}"), constrained=False,
                                            desc=f"pass rate {source} s{seed}")
                    free = _pass_rates(items[:k], [paper_filter(a, ban=c.ban).kept for a in free_answers])
            filtered = [paper_filter(a, ban=c.ban) for a in answers]
            rows = [{**it, "answer": a, "kept": f.kept, "reason": f.reason, "values": f.values}
                    for it, a, f in zip(items, answers, filtered, strict=True)]
            text = "".join(json.dumps(r) + "\n" for r in rows)
            _atomic_write(d / f"numbers_{source}.jsonl", lambda fh: fh.write(text.encode()))
            rates = _pass_rates(items, [f.kept for f in filtered])
            return {"source": source, "teacher": c.number_teacher if source != "base" else None,
                    "sampler": c.sampler, **rates, "free_sampling": free if c.sampler == "constrained" else rates}

        return self.json_stage(d / f"numbers_{source}.json", compute)

    def kept_examples(self, seed: int, source: str) -> list[dict]:
        self.numbers(seed, source)
        return [r for r in read_jsonl(self.seed_dir(seed) / f"numbers_{source}.jsonl") if r["kept"]]

    def student(self, seed: int, source: str) -> dict[str, torch.Tensor]:
        """Student ("teacher" numbers) or control ("base" numbers): SFT from the seed's init on completion tokens.
        Both use the same number of examples (the smaller kept count) and the same example order."""
        def examples():
            kept = {src: self.kept_examples(seed, src) for src in ("teacher", "base")}
            n = min(map(len, kept.values()))
            if n == 0:
                raise RuntimeError(f"seed {seed}: no number answer passed the filter for teacher or base; raise "
                                   "number_prompts or use --sampler constrained")
            return kept[source][:n]

        return self.fit_student(seed, "student" if source == "teacher" else "control", examples)

    def fit_student(self, seed: int, name: str, examples) -> dict[str, torch.Tensor]:
        """SFT on number answers from the seed's init, saved as adapter ``name``. ``examples()`` gives the kept rows
        (called only when the adapter must be trained). Every student of a seed draws the same example order."""
        c = self.config

        def fit():
            ex = examples()
            lora.set_state(self.model, self.init(seed))
            pre = [chat_prefix(self.tok, e["prompt"]) for e in ex]
            ans = [e["answer"].strip() for e in ex]

            def loss(idx):
                return train.sft_loss(self.model, train.encode(self.tok, [pre[i] for i in idx], [ans[i] for i in idx],
                                                               self.device))

            losses = train.fit(self.model, loss, len(ex), epochs=c.student_epochs, batch_size=c.batch_size,
                               lr=c.student_lr, seed=role_seed(seed, "student_order"), desc=f"{name} s{seed}",
                               progress=self.progress)
            return {"role": name, "seed": seed, "examples": len(ex), "losses": losses}

        return self.adapter_stage(self.seed_dir(seed) / name, fit)

    def diagnostic(self, seed: int) -> dict:
        d = self.seed_dir(seed)

        def compute():
            self.student(seed, "teacher")
            self.student(seed, "base")
            return diagnose(d / "teacher", d / "student", d / "control", d / "init")

        return self.json_stage(d / "diagnostic.json", compute)

    def first_step(self, seed: int) -> dict:
        """Theorem 1 check: teacher = theta_0 + eps dT (LoRA space); one student gradient step at theta_0 on
        (a) the teacher's full next-token distributions on number prompts + the teacher's kept answers (the theorem's
        setting), (b) the teacher's sampled answers (the paper's practice). Geometry of -grad against dT."""
        c = self.config

        def compute():
            init, teacher = self.init(seed), self.teacher(seed)
            kept = self.kept_examples(seed, "teacher")
            dT = {k: (teacher[k] - init[k]).cpu().numpy() for k in init}
            bs, nb = c.first_step_batch_size, c.first_step_batches
            batches = [kept[i:i + bs] for i in range(0, min(len(kept), bs * nb), bs)]
            rows = []
            for eps in c.first_step_eps:
                for b, ex in enumerate(batches):
                    pre = [chat_prefix(self.tok, e["prompt"]) for e in ex]
                    batch = train.encode(self.tok, pre, [e["answer"].strip() for e in ex], self.device)
                    lora.set_state(self.model, lora.interpolate(init, teacher, eps))
                    with torch.no_grad():
                        target, _ = train.completion_logits(self.model, batch)
                    samples = sample(self.model, self.tok, pre, max_new_tokens=c.number_tokens,
                                     temperature=c.temperature, seed=role_seed(seed, "first_step") + b,
                                     batch_size=len(pre), constrained=c.sampler == "constrained")
                    lora.set_state(self.model, init)
                    for kind, loss in (("soft", lambda: train.kl_to(self.model, batch, target)),
                                       ("sampled", lambda: train.sft_loss(self.model, train.encode(
                                           self.tok, pre, [s.strip() for s in samples], self.device)))):
                        g = train.lora_gradient(self.model, loss())
                        step = {k: -v.cpu().numpy() for k, v in g.items()}
                        rows.append({"eps": eps, "batch": b, "kind": kind, **geometry(step, dT)})
            return {"rows": rows}

        return self.json_stage(self.seed_dir(seed) / "first_step.json", compute)

    def trait(self, seed: int | None) -> dict:
        """P(animal) and sampled shares for the seed's teacher/student/control, or (seed None) the base model with
        and without the trait system prompt (the paper-faithful teacher)."""
        c = self.config
        qs = prompts.animal_questions(c.trait_questions)
        path = self.out / "trait_base.json" if seed is None else self.seed_dir(seed) / "trait.json"
        rs = role_seed(seed if seed is not None else 2**31 - 1, "trait")  # base models: a seed no run uses

        def measure(system=None):
            probs, scored = animal_probabilities(self.model, self.tok, qs, prompts.ANIMALS, system=system)
            shares = sampled_shares(self.model, self.tok, qs, prompts.ANIMALS, system=system, samples=c.trait_samples,
                                    max_new_tokens=c.trait_tokens, temperature=c.temperature, seed=rs,
                                    batch_size=c.gen_batch)
            return {"animals": scored, "p_QxA": probs.tolist(), "sampled": shares}

        def compute():
            out = {}
            if seed is None:
                with self.base():
                    out["base"] = measure()
                    out["base+system_prompt"] = measure(prompts.system_prompt(c.trait))
            else:
                states = {"teacher": self.teacher(seed), "student": self.student(seed, "teacher"),
                          "control": self.student(seed, "base")}
                for name, st in states.items():
                    lora.set_state(self.model, st)
                    out[name] = measure()
            return {"models": out, "questions": qs}

        return self.json_stage(path, compute)


def _pass_rates(items, kept: list[bool]) -> dict:
    """Kept count and fraction, overall and by each part of the prompt's phrasing."""
    per_part = {}
    for p, part in enumerate(("intro", "ask", "format", "tail")):
        by: dict[int, list[bool]] = {}
        for it, k in zip(items, kept, strict=True):
            by.setdefault(it["phrasing"][p], []).append(k)
        per_part[part] = {str(v): float(np.mean(ks)) for v, ks in sorted(by.items())}
    return {"n": len(kept), "kept": int(sum(kept)), "kept_fraction": float(np.mean(kept)) if kept else float("nan"),
            "pass_rate_by_phrasing": per_part}


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the numbers stage first (python -m llm_bridge numbers)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i} is not valid JSON ({e.msg}); delete the file and rerun the numbers stage") \
                from e
        if not isinstance(r, dict) or not {"prompt", "answer", "kept"} <= set(r):
            raise ValueError(f"{path}:{i} lacks the prompt/answer/kept fields of a numbers JSONL row")
        rows.append(r)
    return rows


def model_slug(model: str) -> str:
    """The model's part of run and figure names ("smollm2-135m", or the id's / path's last component)."""
    return {"smollm2": "smollm2-135m"}.get(model, Path(model).name.replace("_", "-").lower())


def run_name(config: LLMConfig) -> str:
    model = model_slug(config.model)
    return f"llm_{config.preset_name}_{model}_{config.sampler}_seeds{len(config.seeds)}_{config.fingerprint()}"


def run(config: LLMConfig, out, *, resume: bool = False, progress: bool = True, session: Session | None = None) -> dict:
    """Every stage for every seed, then ``results.json`` (the summary the figure draws)."""
    t0 = time.perf_counter()
    s = session or Session(config, out, resume=resume, progress=progress)
    stage_s: dict[str, float] = {}
    for seed in tqdm(config.seeds, desc="seeds", disable=not progress):
        for name, fn in (("teacher", lambda: s.teacher(seed)), ("numbers", lambda: (s.numbers(seed, "teacher"),
                                                                                    s.numbers(seed, "base"))),
                         ("students", lambda: (s.student(seed, "teacher"), s.student(seed, "base"))),
                         ("diagnostic", lambda: s.diagnostic(seed)), ("first_step", lambda: s.first_step(seed)),
                         ("trait", lambda: s.trait(seed))):
            t = time.perf_counter()
            fn()
            stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    s.trait(None)
    stage_s["trait"] += time.perf_counter() - t
    res = summarize(config, s.out)
    res["timings"] = {"wall_s": time.perf_counter() - t0, "load_model_s": s.timings["load_model"], "stages_s": stage_s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "note": "stage times are 0-ish for stages reused on --resume"}
    res["environment"] = {"device": str(s.device), "torch": torch.__version__, "python": platform.python_version(),
                          "machine": platform.machine(), "threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name() if s.device.type == "cuda" else None}
    res["base_model"] = s.base_id
    save_json(s.out / "results.json", res)
    return res


def mean_ci(v) -> dict:
    v = np.asarray(v, float)
    return {"mean": float(v.mean()), "ci95": bootstrap_ci(v), "n": int(v.size), "values": v.tolist()}


def summarize(config: LLMConfig, out) -> dict:
    """Across seeds: geometry (mean and 95% bootstrap CI over seeds), first-step signs, trait probabilities."""
    out = Path(out)
    seeds = config.seeds
    diag = {s: load_json(out / f"seed{s}" / "diagnostic.json") for s in seeds}
    res: dict = {"config": config.to_dict(), "preset": config.preset_name, "run": run_name(config), "geometry": {}}
    for space in ("dW", "lora"):
        g = {}
        for who in ("student", "control"):
            g[who] = {q: mean_ci([diag[s][space]["overall"][who][q] for s in seeds])
                      for q in ("cos", "normalized_projection")}
        g["student_minus_control_cos"] = mean_ci([diag[s][space]["overall"]["student"]["cos"]
                                                   - diag[s][space]["overall"]["control"]["cos"] for s in seeds])
        for kind in ("layer", "module"):
            labels = list(diag[seeds[0]][space][kind])
            g[kind] = {lab: {who: mean_ci([diag[s][space][kind][lab][who]["cos"] for s in seeds])
                             for who in ("student", "control")} for lab in labels}
        res["geometry"][space] = g
    res["params"] = {k: diag[seeds[0]][k] for k in ("params_lora", "params_dW", "modules", "r", "scaling")}
    # first step
    fs = [r for s in seeds for r in load_json(out / f"seed{s}" / "first_step.json")["rows"]]
    res["first_step"] = {kind: {str(eps): {"fraction_nonnegative": float(np.mean([r["inner"] >= 0 for r in rows])),
                                           "n": len(rows), "cos": mean_ci([r["cos"] for r in rows]),
                                           "normalized_projection": mean_ci([r["normalized_projection"] / eps
                                                                              for r in rows])}
                                for eps in config.first_step_eps
                                if (rows := [r for r in fs if r["kind"] == kind and r["eps"] == eps])}
                         for kind in ("soft", "sampled")}
    # numbers
    res["numbers"] = {}
    for src in ("teacher", "base"):
        nums = [load_json(out / f"seed{s}" / f"numbers_{src}.json") for s in seeds]
        free = [n["free_sampling"]["kept_fraction"] for n in nums if n["free_sampling"]]
        res["numbers"][src] = {"kept_fraction": mean_ci([n["kept_fraction"] for n in nums]),
                               "free_sampling_kept_fraction": mean_ci(free or [float("nan")])}
    res["numbers"]["student_examples"] = [json.loads((out / f"seed{s}" / "student" / "subliminal.json").read_text())
                                          ["examples"] for s in seeds]
    # trait: P(target) per model, pooled over seeds x questions
    target = config.trait
    base = load_json(out / "trait_base.json")["models"]
    per_seed = {s: load_json(out / f"seed{s}" / "trait.json")["models"] for s in seeds}

    def p_target(m):
        if target not in m["animals"]:
            return [float("nan")]
        j = m["animals"].index(target)
        return [row[j] for row in m["p_QxA"]]

    trait = {"target": target, "scored_animals": base["base"]["animals"]}
    for name in ("base", "base+system_prompt"):
        trait[name] = {"p_target": mean_ci(p_target(base[name])), "sampled_share": base[name]["sampled"]["share"]
                       .get(target)}
    for name in ("teacher", "student", "control"):
        vals = [p for s in seeds for p in p_target(per_seed[s][name])]
        trait[name] = {"p_target": mean_ci(vals),
                       "sampled_share": float(np.mean([per_seed[s][name]["sampled"]["share"].get(target, np.nan)
                                                       for s in seeds]))}
    res["trait"] = trait
    return res
