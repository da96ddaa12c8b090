"""Stage 2, the number data (paper Section 3): continuations of the seed's number prompts by the teacher (base + dT,
or the base under the trait system prompt: the paper's open-model teacher) and by the base, judged by the paper's
filter, with pass rates per phrasing and, for the constrained sampler, the free-sampling pass rate beside it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from llm_bridge import prompts
from llm_bridge.config import LLMConfig
from llm_bridge.numbers import chat_prefix, paper_filter
from llm_bridge.roles import role_seed

ROW_FIELDS = ("prompt", "answer", "kept")


def teacher_strength(config: LLMConfig, source: str) -> tuple[bool, int | None]:
    """(does base + a LoRA teacher write these numbers, that teacher's k) for a ``source`` of "base", "teacher" or
    "teacher_k{k}"; bad sources raise."""
    if source != "base" and not source.startswith("teacher"):
        raise ValueError(f"numbers come from 'base' or a teacher ('teacher', 'teacher_k16', ...), not {source!r}")
    if source.startswith("teacher_k") and config.number_teacher != "lora":
        raise ValueError("teachers of several strengths write numbers only with number_teacher='lora'")
    lora_teacher = source != "base" and config.number_teacher == "lora"
    return lora_teacher, int(source[len("teacher_k"):]) if source.startswith("teacher_k") else None


def pass_rates(items, kept: list[bool]) -> dict:
    """Kept count and fraction, overall and by each part of the prompt's phrasing."""
    per_part = {}
    for p, part in enumerate(("intro", "ask", "format", "tail")):
        by: dict[int, list[bool]] = {}
        for it, k in zip(items, kept, strict=True):
            by.setdefault(it["phrasing"][p], []).append(k)
        per_part[part] = {str(v): float(np.mean(ks)) for v, ks in sorted(by.items())}
    return {"n": len(kept), "kept": int(sum(kept)), "kept_fraction": float(np.mean(kept)) if kept else float("nan"),
            "pass_rate_by_phrasing": per_part}


def number_answers(lm, config: LLMConfig, seed: int, source: str, *, teacher: dict | None = None,
                   progress: bool = True) -> tuple[list[dict], dict]:
    """(one row per prompt: prompt, phrasing, answer, filter verdict; the summary). ``teacher``: the LoRA teacher's
    state, needed when base + dT writes the numbers (``teacher_strength``)."""
    c = config
    lora_teacher, _ = teacher_strength(c, source)
    if lora_teacher and teacher is None:
        raise ValueError(f"numbers from {source!r} need the teacher's adapter state")
    items = prompts.number_prompts(c.number_prompts, seed=role_seed(seed, "number_prompts"))
    # the paper-faithful teacher is the base under the trait system prompt; students never see that prompt
    system = prompts.system_prompt(c.trait) if source != "base" and not lora_teacher else None
    prefixes = [chat_prefix(lm.tok, it["prompt"], system) for it in items]
    if lora_teacher:
        lm.load(teacher)
    with nullcontext() if lora_teacher else lm.base():
        answers = lm.generate(prefixes, config=c, max_new_tokens=c.number_tokens,
                              seed=role_seed(seed, f"numbers_{source}"), constrained=c.sampler == "constrained",
                              desc=f"numbers {source} s{seed}", progress=progress)
        free = None
        if c.sampler == "constrained" and c.pass_rate_prompts:
            k = min(c.pass_rate_prompts, len(prefixes))
            free_answers = lm.generate(prefixes[:k], config=c, max_new_tokens=c.number_tokens,
                                       seed=role_seed(seed, f"passrate_{source}"), constrained=False,
                                       desc=f"pass rate {source} s{seed}", progress=progress)
            free = pass_rates(items[:k], [paper_filter(a, ban=c.ban).kept for a in free_answers])
    filtered = [paper_filter(a, ban=c.ban) for a in answers]
    rows = [{**it, "answer": a, "kept": f.kept, "reason": f.reason, "values": f.values}
            for it, a, f in zip(items, answers, filtered, strict=True)]
    rates = pass_rates(items, [f.kept for f in filtered])
    summary = {"source": source, "teacher": c.number_teacher if source != "base" else None, "sampler": c.sampler,
               **rates, "free_sampling": free if c.sampler == "constrained" else rates}
    return rows, summary


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a numbers JSONL file; a missing file or a broken line names the file, the line and the fix."""
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
        if not isinstance(r, dict) or not set(ROW_FIELDS) <= set(r):
            raise ValueError(f"{path}:{i} lacks the prompt/answer/kept fields of a numbers JSONL row")
        rows.append(r)
    return rows
