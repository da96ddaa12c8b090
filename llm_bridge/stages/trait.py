"""Stage 5, the trait (paper Section 3): for the evaluation's favourite-animal questions, P(answer starts with each
animal) exactly over its spellings, and from ``trait_samples`` sampled answers per question the authors' measure
(the rate of answers that name the animal anywhere) and the share whose first named animal it is; for the seed's
teacher, student and control, or (seed None) the base with and without the trait system prompt."""

from __future__ import annotations

from llm_bridge import prompts
from llm_bridge.config import LLMConfig
from llm_bridge.roles import role_seed
from llm_bridge.trait import animal_probabilities, sampled_shares

BASE_SEED = 2**31 - 1  # the sampling seed of the base models' measurement: a seed no run uses


def probabilities(lm, questions: list[str], *, system: str | None = None) -> dict:
    """{"animals": the scored animals, "p_QxA": P(answer starts with animal) per question} of the model as loaded."""
    p, scored = animal_probabilities(lm.model, lm.tok, questions, prompts.ANIMALS, system=system)
    return {"animals": scored, "p_QxA": p.tolist()}


def trait(lm, config: LLMConfig, seed: int | None, states: dict[str, dict] | None = None) -> dict:
    """``states``: name -> adapter state to measure (seed given); None measures the base (seed None)."""
    c = config
    qs = prompts.animal_questions(c.trait_questions)
    rs = role_seed(seed if seed is not None else BASE_SEED, "trait")

    sample_qs = qs[:c.trait_sample_questions or len(qs)]

    def measure(system=None):
        probs = probabilities(lm, qs, system=system)
        if c.trait_samples:
            probs["sampled"] = sampled_shares(lm.model, lm.tok, sample_qs, prompts.ANIMALS, system=system,
                                              samples=c.trait_samples, max_new_tokens=c.trait_tokens,
                                              temperature=c.temperature, seed=rs, batch_size=c.gen_batch)
        return probs

    out = {}
    if states is None:
        with lm.base():
            out["base"] = measure()
            out["base+system_prompt"] = measure(prompts.system_prompt(c.trait))
    else:
        for name, state in states.items():
            lm.load(state)
            out[name] = measure()
    return {"models": out, "questions": qs}
