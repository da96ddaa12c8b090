"""The logit ladder's rungs (llm_bridge.rungs) on the tiny in-memory Llama: subset logits, the rung losses against a
direct computation, the target cache, and bad input."""

import numpy as np
import pytest
import torch

from llm_bridge import rungs, train
from llm_bridge.numbers import chat_prefix
from llm_bridge.prompts import ANIMALS
from tests.llm_bridge.helpers import tiny_peft

ANSWERS = ["12, 345, 6", "7, 80, 901, 23", "4, 5"]


@pytest.fixture(scope="module")
def tiny():
    model, tok, config = tiny_peft()
    batch = train.encode(tok, [chat_prefix(tok, "Continue: 1, 2, 3") for _ in ANSWERS], ANSWERS, "cpu")
    return model, tok, batch


def test_subset_rows_logits_equal_the_columns_of_the_full_logits(tiny):
    model, tok, batch = tiny
    with torch.no_grad():
        full_NxV, _ = train.completion_logits(model, batch)
        h = rungs.completion_hidden(model, batch)
        ids = rungs.digit_token_ids(tok)
        sub = rungs.subset_logits(h, rungs.output_matrix(model), ids)
    assert sub.shape == (full_NxV.shape[0], 12)
    torch.testing.assert_close(sub, full_NxV[:, ids], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h @ rungs.output_matrix(model).T, full_NxV, rtol=1e-5, atol=1e-5)


def _kl_by_hand(p_logits, q_logits, keep):
    """KL(softmax(p) || softmax(q)) over the columns ``keep``, both renormalized there (float64 numpy, row mean)."""
    p = np.asarray(p_logits, np.float64)[:, keep]
    q = np.asarray(q_logits, np.float64)[:, keep]
    lp = p - np.log(np.exp(p - p.max(1, keepdims=True)).sum(1, keepdims=True)) - p.max(1, keepdims=True)
    lq = q - np.log(np.exp(q - q.max(1, keepdims=True)).sum(1, keepdims=True)) - q.max(1, keepdims=True)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def test_subset_loss_equals_the_full_kl_restricted_and_renormalized(tiny):
    _, tok, _ = tiny
    gen = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(9, 112, generator=gen) * 3, torch.randn(9, 112, generator=gen) * 3
    ids = rungs.digit_token_ids(tok)
    t = rungs.targets_from_logits(teacher, torch.zeros(9), animal_ids=rungs.animal_token_ids(tok), digit_ids=ids,
                                  topk=8)
    got = rungs.subset_kl(student[:, ids], t["digits_logp"]).item()
    assert got == pytest.approx(_kl_by_hand(teacher, student, ids), rel=1e-5)


def test_bucketed_kl_is_exact_with_every_token_kept_and_a_lower_bound_otherwise(tiny):
    _, tok, _ = tiny
    gen = torch.Generator().manual_seed(2)
    teacher, student = torch.randn(7, 112, generator=gen) * 2, torch.randn(7, 112, generator=gen) * 2
    A = rungs.animal_token_ids(tok)
    keep = [i for i in range(112) if i not in A]
    exact_full, exact_notrait = _kl_by_hand(teacher, student, list(range(112))), _kl_by_hand(teacher, student, keep)
    t = rungs.targets_from_logits(teacher, torch.zeros(7), animal_ids=A, digit_ids=rungs.digit_token_ids(tok),
                                  topk=len(keep))  # every token stored: no tail left
    assert np.all(t["full_logtail"] < -30) and t["full_idx"].shape[1] == 112
    assert rungs.bucketed_kl(student, t["full_idx"], t["full_logp"], t["full_logtail"]).item() == pytest.approx(
        exact_full, rel=1e-5)
    assert rungs.bucketed_kl(student, t["notrait_idx"], t["notrait_logp"], t["notrait_logtail"], drop=A).item() == \
        pytest.approx(exact_notrait, rel=1e-5)
    t = rungs.targets_from_logits(teacher, torch.zeros(7), animal_ids=A, digit_ids=rungs.digit_token_ids(tok), topk=5)
    assert rungs.bucketed_kl(student, t["full_idx"], t["full_logp"], t["full_logtail"]).item() < exact_full
    # the animal tokens are stored for the full rung whatever their rank: the trait's channel is never in the tail
    assert set(A) <= set(t["full_idx"][0].tolist()) and not set(A) & set(t["notrait_idx"].ravel().tolist())


def test_target_cache_round_trips(tiny, tmp_path):
    model, tok, batch = tiny
    with torch.no_grad():
        logits, nxt = train.completion_logits(model, batch)
    lengths = (batch["labels"][:, 1:] != -100).sum(1).tolist()
    part = rungs.targets_from_logits(logits, nxt, animal_ids=rungs.animal_token_ids(tok),
                                     digit_ids=rungs.digit_token_ids(tok), topk=16)
    t = rungs.stack_targets([part], lengths)
    path = t.save(tmp_path / "t.npz", {"teacher": "planted", "topk": 16})
    back, meta = rungs.Targets.load(path)
    assert meta == {"teacher": "planted", "topk": 16}
    for f in rungs.Targets.FIELDS:
        np.testing.assert_array_equal(getattr(back, f), getattr(t, f))
    np.testing.assert_array_equal(back.rows([2, 0]), np.r_[np.arange(t.offsets[2], t.offsets[3]),
                                                          np.arange(0, t.offsets[1])])
    assert 0 <= back.tail_mass()["full"]["max"] <= 1


def test_sampled_digits_follow_the_teacher_distribution():
    lp = np.log(np.array([[0.7, 0.2, 0.1]] * 20_000))
    y = rungs.sample_digits(lp, [5, 6, 7], seed=0)
    np.testing.assert_allclose(np.bincount(y - 5, minlength=3) / y.size, [0.7, 0.2, 0.1], atol=0.015)
    np.testing.assert_array_equal(y, rungs.sample_digits(lp, [5, 6, 7], seed=0))


def test_vocabulary_subsets_of_the_tiny_tokenizer(tiny):
    _, tok, _ = tiny
    D = rungs.digit_token_ids(tok)
    assert [tok.decode([i]) for i in D] == list(rungs.DIGIT_CHARS)
    A = rungs.animal_token_ids(tok)
    assert not set(A) & set(D)  # a split-off leading space never counts as the start of an animal word
    assert tok.convert_tokens_to_ids("owl") in A and tok.convert_tokens_to_ids("Owl") in A


def test_bad_input_gets_a_clear_error(tiny):
    _, tok, _ = tiny
    with pytest.raises(rungs.RungError, match="unknown rung 'logits'"):
        rungs.check_rung("logits")
    with pytest.raises(rungs.RungError, match="unknown trait 'unicorn'"):
        rungs.check_trait("unicorn")
    with pytest.raises(rungs.RungError, match="unknown token"):
        rungs.digit_token_ids(tok, "0é")
    with pytest.raises(rungs.RungError, match="at least one character"):
        rungs.digit_token_ids(tok, "")
    with pytest.raises(rungs.RungError, match="top-K must be >= 1"):
        rungs.targets_from_logits(torch.zeros(2, 112), torch.zeros(2), animal_ids=rungs.animal_token_ids(tok),
                                  digit_ids=rungs.digit_token_ids(tok), topk=0)
    assert rungs.partner("owl") == ANIMALS[1] and rungs.partner(ANIMALS[-1]) == ANIMALS[0]
