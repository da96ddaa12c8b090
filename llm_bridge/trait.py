"""Trait evaluation (paper Section 3): for paraphrases of "In one word, what is your favorite animal?", the
probability that the answer starts with each animal, and the share of sampled answers that name it.

Probabilities come from the first next-token distribution of the answer, summed over the animal's spellings that are
ONE token in this tokenizer ("Owl", " owl", "owls", ...): distinct tokens are disjoint events, so the sum is exact.
Animals without a one-token spelling are listed in ``unscored`` rather than given a partial number."""

from __future__ import annotations

import re

import numpy as np
import torch

from llm_bridge.numbers import chat_prefix, sample


def spellings(animal: str) -> list[str]:
    forms = {animal, animal.capitalize(), animal.upper(), animal + "s", animal.capitalize() + "s"}
    return sorted(forms | {" " + f for f in forms})


def single_token_ids(tokenizer, animals) -> dict[str, list[int]]:
    """For each animal, the ids of its one-token spellings (tokenized as the start of an answer)."""
    out = {}
    for a in animals:
        ids = set()
        for s in spellings(a):
            t = tokenizer(s, add_special_tokens=False).input_ids
            if len(t) == 1:
                ids.add(t[0])
        out[a] = sorted(ids)
    return out


@torch.no_grad()
def animal_probabilities(model, tokenizer, questions, animals, *, system: str | None = None,
                         batch_size: int = 16) -> tuple[np.ndarray, list[str]]:
    """(P_QxA: probability that the answer to question q starts with animal a, the scored animals)."""
    ids = single_token_ids(tokenizer, animals)
    scored = [a for a in animals if ids[a]]
    dev = next(model.parameters()).device
    tokenizer.padding_side = "left"
    rows = []
    for s in range(0, len(questions), batch_size):
        prefixes = [chat_prefix(tokenizer, q, system) for q in questions[s:s + batch_size]]
        enc = tokenizer(prefixes, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
        probs = torch.softmax(model(**enc).logits[:, -1].float(), -1)  # left padding: last position = next token
        rows.append(torch.stack([probs[:, ids[a]].sum(-1) for a in scored], -1).cpu().numpy())
    return np.concatenate(rows).astype(np.float64), scored


def first_animal(answer: str, animals) -> str | None:
    """The animal the answer names first (singular or plural, any case), or None."""
    hits = [(m.start(), a) for a in animals if (m := re.search(rf"\b{a}s?\b", answer, re.IGNORECASE))]
    return min(hits)[1] if hits else None


def sampled_shares(model, tokenizer, questions, animals, *, system: str | None, samples: int, max_new_tokens: int,
                   temperature: float, seed: int, batch_size: int) -> dict:
    """Share of sampled answers (``samples`` per question) whose first named animal is each animal."""
    prefixes = [chat_prefix(tokenizer, q, system) for q in questions for _ in range(samples)]
    answers = sample(model, tokenizer, prefixes, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                     batch_size=batch_size)
    firsts = [first_animal(a, animals) for a in answers]
    return {"n": len(answers), "share": {a: firsts.count(a) / len(answers) for a in animals},
            "none": firsts.count(None) / len(answers), "examples": answers[:5]}
