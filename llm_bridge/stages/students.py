"""Stage 3, the students (paper Section 3): SFT on number answers from EXACTLY the teacher's LoRA init. The student
learns the teacher's kept numbers, the control the base's, with the same example count and example order."""

from __future__ import annotations

from llm_bridge import train
from llm_bridge.config import LLMConfig
from llm_bridge.numbers import chat_prefix
from llm_bridge.roles import role_seed


def matched_examples(kept_teacher: list[dict], kept_base: list[dict], source: str, *, seed: int,
                     max_examples: int | None = None) -> list[dict]:
    """The ``source``'s ("teacher" or "base") kept rows, cut to the smaller kept count of the two (and to
    ``max_examples``, the authors' cap)."""
    n = min(len(kept_teacher), len(kept_base), max_examples or len(kept_teacher))
    if n == 0:
        raise RuntimeError(f"seed {seed}: no number answer passed the filter for teacher or base; raise "
                           "number_prompts or use --sampler constrained")
    return (kept_teacher if source == "teacher" else kept_base)[:n]


def fit_student(lm, config: LLMConfig, seed: int, init: dict, examples: list[dict], *, name: str,
                progress: bool = True) -> dict:
    """SFT from ``init`` on the rows' answers after their prompts (no system prompt); the model holds the student
    afterwards. Every student of a seed draws the same example order. Returns the adapter's metadata."""
    lm.load(init)
    pre = [chat_prefix(lm.tok, e["prompt"]) for e in examples]
    ans = [e["answer"].strip() for e in examples]

    def loss(idx):
        return train.completion_sft_loss(lm.model, lm.tok, [pre[i] for i in idx], [ans[i] for i in idx], lm.device)

    losses = train.fit(lm.model, loss, len(examples), epochs=config.student_epochs, batch_size=config.batch_size,
                       lr=config.student_lr, seed=role_seed(seed, "student_order"), desc=f"{name} s{seed}",
                       role="student", warmup_steps=config.warmup_steps, max_grad_norm=config.max_grad_norm,
                       progress=progress, bf16=config.bf16)
    return {"role": name, "seed": seed, "examples": len(examples), "losses": losses}
