"""Trait evaluation (paper Section 3): for paraphrases of "In one word, what is your favorite animal?", the
probability that the answer starts with each animal, and the share of sampled answers that name it.

P(answer starts with animal a) is exact over the animal's spellings ("owl", "Owl", " owls", "OWL", ...), whether one
token or several (SmolLM2 spells "Owl" as "O" + "wl"): each spelling's token sequence is scored by the chain rule
(one extra forward pass per question batch reads every continuation at once, on the prompt's KV cache). The
sequences kept are prefix-free ("owl" covers "owl" + "s"), so they are disjoint events and their sum is exact."""

from __future__ import annotations

import copy
import re

import numpy as np
import torch

from llm_bridge.numbers import chat_prefix, sample


def spellings(animal: str) -> list[str]:
    """The spellings the exact prefix probability counts: lower-case and capitalized, singular and plural, with and
    without a leading space. Not all-caps ("OWL" costs many tokens to score and is rare); the sampled contains-rate
    (``sampled_shares``) matches every case."""
    forms = {animal, animal.capitalize(), animal + "s", animal.capitalize() + "s"}
    return sorted(forms | {" " + f for f in forms})


def answer_sequences(tokenizer, animals) -> dict[str, list[tuple[int, ...]]]:
    """For each animal, the token sequences of its spellings (tokenized as the start of an answer), made prefix-free:
    a sequence that extends another of the same animal is dropped (the shorter one's event contains it)."""
    out = {}
    for a in animals:
        seqs = sorted({tuple(tokenizer(s, add_special_tokens=False).input_ids) for s in spellings(a)}, key=len)
        kept: list[tuple[int, ...]] = []
        for q in seqs:
            if q and not any(q[:len(k)] == k for k in kept):
                kept.append(q)
        out[a] = kept
    return out


@torch.no_grad()
def animal_probabilities(model, tokenizer, questions, animals, *, system: str | None = None,
                         batch_size: int = 16) -> tuple[np.ndarray, list[str]]:
    """(P_QxA: probability that the answer to question q starts with animal a, the scored animals)."""
    seqs = answer_sequences(tokenizer, animals)
    scored = [a for a in animals if seqs[a]]
    # every proper prefix ("path") of a multi-token sequence needs the next-token distribution after it; a forward
    # over each MAXIMAL path (one no other path extends) yields all of its prefixes' distributions at once
    paths = {q[:i] for a in scored for q in seqs[a] for i in range(1, len(q))}
    maximal = sorted((p for p in paths if not any(o != p and o[:len(p)] == p for o in paths)),
                     key=lambda p: (len(p), p))
    by_len: dict[int, list[tuple[int, ...]]] = {}
    for p in maximal:
        by_len.setdefault(len(p), []).append(p)
    dev = next(model.parameters()).device
    tokenizer.padding_side = "left"
    rows = []
    for s in range(0, len(questions), batch_size):
        prefixes = [chat_prefix(tokenizer, q, system) for q in questions[s:s + batch_size]]
        enc = tokenizer(prefixes, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
        out = model(**enc, use_cache=bool(paths))
        logp_first = torch.log_softmax(out.logits[:, -1].float(), -1)  # left padding: last position = next token
        B = logp_first.shape[0]
        logp_after: dict[tuple[int, ...], torch.Tensor] = {}  # path -> (B, V) log-probs of the token after it
        for i, (L, group) in enumerate(sorted(by_len.items())):
            # row b * n + j = question b, path j of this length, on a copy of the prompts' KV cache
            cache = out.past_key_values if i == len(by_len) - 1 else copy.deepcopy(out.past_key_values)
            n = len(group)
            cache.batch_repeat_interleave(n)
            mask = torch.cat([enc.attention_mask.repeat_interleave(n, 0),
                              torch.ones(B * n, L, dtype=enc.attention_mask.dtype, device=dev)], 1)
            logits = model(input_ids=torch.tensor(group, device=dev).repeat(B, 1), attention_mask=mask,
                           past_key_values=cache).logits.view(B, n, L, -1)
            for j, p in enumerate(group):
                for t in range(1, L + 1):
                    if p[:t] not in logp_after:
                        logp_after[p[:t]] = torch.log_softmax(logits[:, j, t - 1].float(), -1)

        def logp(q):
            lp = logp_first[:, q[0]]
            for i in range(1, len(q)):
                lp = lp + logp_after[q[:i]][:, q[i]]
            return lp

        rows.append(torch.stack([torch.stack([logp(q).exp() for q in seqs[a]]).sum(0) for a in scored], -1)
                    .cpu().double().numpy())
    return np.concatenate(rows), scored


def _name(animal: str) -> re.Pattern:
    return re.compile(rf"\b{re.escape(animal)}s?\b", re.IGNORECASE)


def first_animal(answer: str, animals) -> str | None:
    """The animal the answer names first (singular or plural, any case), or None."""
    hits = [(m.start(), a) for a in animals if (m := _name(a).search(answer))]
    return min(hits)[1] if hits else None


def names_animal(answer: str, animal: str) -> bool:
    """Does the answer name the animal anywhere (singular or plural, any case, as a whole word)? The authors' count."""
    return _name(animal).search(answer) is not None


def sampled_shares(model, tokenizer, questions, animals, *, system: str | None, samples: int, max_new_tokens: int,
                   temperature: float, seed: int, batch_size: int) -> dict:
    """Sampled answers, ``samples`` per question: the share whose first named animal is each animal ("share"), and
    the authors' measure, the rate of answers that name each animal anywhere ("contains", overall and per question:
    "contains_QxA", the rows of ``questions``)."""
    prefixes = [chat_prefix(tokenizer, q, system) for q in questions for _ in range(samples)]
    answers = sample(model, tokenizer, prefixes, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                     batch_size=batch_size)
    firsts = [first_animal(a, animals) for a in answers]
    hits_NxA = np.array([[names_animal(ans, a) for a in animals] for ans in answers], float).reshape(
        len(questions), samples, len(animals))
    return {"n": len(answers), "samples_per_question": samples, "animals": list(animals),
            "share": {a: firsts.count(a) / len(answers) for a in animals},
            "none": firsts.count(None) / len(answers),
            "contains": dict(zip(animals, hits_NxA.mean((0, 1)).tolist())),
            "contains_QxA": hits_NxA.mean(1).tolist(), "examples": answers[:5]}
