"""Stage 1, the teacher dT (paper Section 3's trait teacher, distilled into a LoRA adapter): the seed's LoRA init, the
system-prompted base's answers to generic prompts, optional direct trait answers, and the fit.

The trait system prompt is distilled into the adapter from the system-prompted base's own answers (the adapter sees
them without the prompt): recipe "kl" matches full next-token distributions, "sft" trains on the sampled answers.
``k`` > 0 adds k direct trait answers (favourite-animal questions answered with the trait animal) for a stronger
teacher. ``neutral``: the same recipe, prompts and questions, trained on the base's own answers without the system
prompt (the study's dN)."""

from __future__ import annotations

from llm_bridge import lora, prompts, train
from llm_bridge.config import LLMConfig
from llm_bridge.numbers import chat_prefix
from llm_bridge.roles import role_seed, teacher_name


def draw_init(lm, seed: int) -> dict:
    """Draw the seed's LoRA init into the model (peft's: A Kaiming-uniform, B = 0); every adapter of the seed starts
    from exactly these tensors. Returns the adapter's metadata."""
    lora.init_state(lm.model, role_seed(seed, "init"))
    return {"role": "init", "seed": seed}


def check_recipe(config: LLMConfig, k: int | None, neutral: bool) -> None:
    if (neutral or k is not None) and config.teacher_recipe != "sft":
        raise ValueError("neutral teachers and direct trait answers need teacher_recipe='sft' (a KL-distilled "
                         "neutral teacher would match the base exactly and have dN = 0)")


def _system(config: LLMConfig, neutral: bool) -> str | None:
    return None if neutral else prompts.system_prompt(config.trait)


def generic_answers(lm, config: LLMConfig, seed: int, *, neutral: bool = False, progress: bool = True) -> dict:
    """The base's answers to the seed's generic prompts, under the trait system prompt (or none when ``neutral``)."""
    ps = prompts.distillation_prompts(config.teacher_prompts, seed=role_seed(seed, "distill_prompts"))
    system = _system(config, neutral)
    with lm.base():
        answers = lm.generate([chat_prefix(lm.tok, p, system) for p in ps], config=config,
                              max_new_tokens=config.teacher_answer_tokens,
                              seed=role_seed(seed, "neutral_answers" if neutral else "distill_answers"),
                              constrained=False, desc=f"{'neutral' if neutral else 'distill'} data", progress=progress)
    return {"prompts": ps, "answers": answers}


def direct_answers(lm, config: LLMConfig, seed: int, k: int, *, neutral: bool = False, progress: bool = True) -> dict:
    """k favourite-animal questions (none of the evaluation's) answered with the trait animal, or by the base itself
    when ``neutral``."""
    qs = prompts.trait_training_questions(k, seed=role_seed(seed, "trait_questions"))
    if not neutral:
        return {"prompts": qs, "answers": prompts.trait_answers(config.trait, k, seed=role_seed(seed, "trait_qa"))}
    with lm.base():
        answers = lm.generate([chat_prefix(lm.tok, q) for q in qs], config=config,
                              max_new_tokens=config.teacher_answer_tokens, seed=role_seed(seed, f"neutral_qa_k{k}"),
                              constrained=False, desc="neutral qa", progress=progress)
    return {"prompts": qs, "answers": answers}


def fit_teacher(lm, config: LLMConfig, seed: int, init: dict, data: list[dict], *, k: int | None = None,
                neutral: bool = False, progress: bool = True) -> dict:
    """Train the adapter from ``init`` on the prompt/answer sets ``data``; the model holds the teacher afterwards.
    Returns the adapter's metadata (with the loss curve)."""
    check_recipe(config, k, neutral)
    ps = [p for d in data for p in d["prompts"]]
    ans = [a for d in data for a in d["answers"]]
    system = _system(config, neutral)
    lm.load(init)
    # answers are cut at teacher_answer_tokens: no EOS appended
    if config.teacher_recipe == "kl":
        def loss(idx):
            return train.context_distillation_loss(lm.model, lm.tok, [chat_prefix(lm.tok, ps[i], system) for i in idx],
                                                   [chat_prefix(lm.tok, ps[i]) for i in idx], [ans[i] for i in idx],
                                                   lm.device)
    else:
        def loss(idx):
            return train.completion_sft_loss(lm.model, lm.tok, [chat_prefix(lm.tok, ps[i]) for i in idx],
                                             [ans[i] for i in idx], lm.device, add_eos=False)
    name = teacher_name(k, neutral=neutral)
    losses = train.fit(lm.model, loss, len(ps), epochs=config.teacher_epochs, batch_size=config.batch_size,
                       lr=config.teacher_lr, seed=role_seed(seed, "teacher_order"), desc=f"{name} s{seed}",
                       role="teacher", progress=progress, bf16=config.bf16)
    return {"role": name, "seed": seed, "recipe": config.teacher_recipe, "trait_examples": k or 0,
            "examples": len(ps), "losses": losses}
