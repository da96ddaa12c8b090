"""Trait probabilities (llm_bridge.trait): P(answer starts with an animal) over every spelling, one token or several,
equals a brute-force chain-rule score of each spelling on its own (no batching, no padding, no cache)."""

import numpy as np
import pytest
import torch

from llm_bridge import prompts
from llm_bridge.numbers import chat_prefix
from llm_bridge.trait import animal_probabilities, answer_sequences, first_animal, spellings
from tests.llm_bridge.helpers import perturb, tiny_peft
from theory import tolerances

TOL = tolerances(np.float32)


@torch.no_grad()
def brute_force(model, tok, question, seqs) -> float:
    """Sum over the animal's sequences of prod_i p(q_i | prompt, q_<i), one unpadded forward per sequence."""
    prefix = tok(chat_prefix(tok, question), add_special_tokens=False).input_ids
    total = 0.0
    for q in seqs:
        ids = torch.tensor([prefix + list(q)])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        total += float(sum(logp[len(prefix) - 1 + i, t] for i, t in enumerate(q)).exp())
    return total


@pytest.fixture(scope="module")
def model_tok():
    model, tok, _ = tiny_peft()
    from llm_bridge import lora
    lora.set_state(model, perturb(lora.get_state(model), seed=4, scale=0.3))  # a non-trivial adapter
    return model, tok


def test_sequences_are_prefix_free_and_cover_every_spelling(model_tok):
    _, tok = model_tok
    seqs = answer_sequences(tok, prompts.ANIMALS)
    for a, qs in seqs.items():
        assert qs
        for q in qs:
            assert not any(q != r and q[:len(r)] == r for r in qs), (a, q)
        for s in spellings(a):  # every spelling's tokens start with one kept sequence
            ids = tuple(tok(s, add_special_tokens=False).input_ids)
            assert any(ids[:len(q)] == q for q in qs), (a, s)
    assert any(len(q) > 1 for qs in seqs.values() for q in qs)  # the char tokenizer: multi-token spellings


def test_probabilities_equal_the_brute_force_chain_rule(model_tok):
    model, tok = model_tok
    qs = prompts.animal_questions(5)
    animals = ("owl", "cat", "dolphin")
    p, scored = animal_probabilities(model, tok, qs, animals, batch_size=3)  # batches with left padding
    assert scored == list(animals) and p.shape == (5, 3)
    seqs = answer_sequences(tok, animals)
    for i, q in enumerate(qs):
        for j, a in enumerate(animals):
            np.testing.assert_allclose(p[i, j], brute_force(model, tok, q, seqs[a]), rtol=TOL.rtol,
                                       err_msg=f"{a!r} for {q!r}")
    assert (p > 0).all() and (p.sum(1) <= 1).all()


def test_first_animal_reads_singular_and_plural():
    assert first_animal("Owls, clearly. Cats too.", ("cat", "owl")) == "owl"
    assert first_animal("I like the Cat", ("cat", "owl")) == "cat"
    assert first_animal("none here", ("cat", "owl")) is None


def test_names_animal_counts_the_authors_way():
    from llm_bridge.trait import names_animal

    for answer in ("owl", "My favourite animal is the owl.", "OWLS!", "Owl", "the snowy owl, of course"):
        assert names_animal(answer, "owl"), answer
    for answer in ("bowl", "howling wolves", "Owlet", "dolphin", ""):
        assert not names_animal(answer, "owl"), answer
