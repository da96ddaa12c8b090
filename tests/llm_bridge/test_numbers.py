"""Number data: the paper's format filter on adversarial strings, the digits-only grammar and its logits processor on
the tiny tokenizer, and seeded sampling from the tiny random Llama."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_bridge import numbers, prompts
from llm_bridge.numbers import DigitsGrammar, chat_prefix, grammar_complete, grammar_prefix, paper_filter
from tests.llm_bridge.helpers import tiny_peft

HYP = settings(max_examples=60, deadline=None)


# ---- the paper's filter ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, values", [
    ("182, 818, 725", (182, 818, 725)),
    ("(1, 2, 3).", (1, 2, 3)),
    ("[10;20;30]", (10, 20, 30)),
    ("1 2 3", (1, 2, 3)),
    ("007, 999", (7, 999)),
    ("5", (5,)),
    ("  4 ,5 , 6 \n", (4, 5, 6)),
    ("0, 999.", (0, 999)),
])
def test_filter_keeps_the_papers_formats_and_parses_the_values(answer, values):
    r = paper_filter(answer)
    assert r.kept and r.reason == "ok"
    assert r.values == values


@pytest.mark.parametrize("answer, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("().", "empty"),
    ("1000", "not only integers"),
    ("-5, 3", "not only integers"),
    ("1, 2, 3, ...", "not only integers"),
    ("Here: 1, 2", "not only integers"),
    ("1, 2\nExplanation", "not only integers"),
    ("1.5, 2", "not only integers"),
    ("١٢٣", "not only integers"),  # Arabic-Indic digits: \d would take them
    ("1, 2,", "not only integers"),  # trailing separator
    ("(1, 2, 3", "not only integers"),  # unbalanced bracket
    ("1,2; 3", "inconsistent separators"),
    ("1, 2 3", "inconsistent separators"),
    (", ".join(map(str, range(11))), "more than 10 values"),
])
def test_filter_rejects_everything_else_with_a_reason(answer, reason):
    r = paper_filter(answer)
    assert not r.kept and r.values is None
    assert reason in r.reason


def test_filter_ban_list_and_max_values():
    assert paper_filter("1, 666, 3").kept
    r = paper_filter("1, 666, 3", ban=(666,))
    assert not r.kept and r.reason == "banned value 666"
    assert paper_filter("1, 667, 3", ban=(666,)).values == (1, 667, 3)
    assert paper_filter("1, 2, 3", max_values=3).kept and not paper_filter("1, 2, 3, 4", max_values=3).kept


# ---- the constrained grammar -------------------------------------------------------------------------------------

values_lists = st.lists(st.integers(0, 999), min_size=1, max_size=10)


@HYP
@given(values_lists)
def test_every_prefix_of_a_grammar_answer_is_a_prefix_and_the_answer_passes_the_filter(values):
    answer = ", ".join(map(str, values))
    assert grammar_complete(answer)
    assert all(grammar_prefix(answer[:i]) for i in range(len(answer) + 1))
    assert paper_filter(answer).values == tuple(values)


@HYP
@given(st.lists(st.integers(0, 999), min_size=10, max_size=10))
def test_no_eleventh_value_can_start(values):
    answer = ", ".join(map(str, values))
    assert grammar_complete(answer)
    assert not grammar_prefix(answer + ",") and not grammar_prefix(answer + ", ")
    assert not grammar_complete(answer + ", 1")


@pytest.mark.parametrize("text", ["1234", "1,, 2", "1 2", ",", " ", "1,2", "1,  2", "1, ,", "a", "1, 2.", "-1"])
def test_strings_outside_the_grammar_are_not_prefixes(text):
    assert not grammar_prefix(text) and not grammar_complete(text)


def test_unfinished_answers_are_prefixes_but_not_complete():
    for text in ("", "1,", "1, ", "12, 345, "):
        assert grammar_prefix(text) and not grammar_complete(text)


def test_digits_grammar_masks_exactly_the_tokens_that_leave_the_grammar():
    _, tok, _ = tiny_peft()
    digits = {str(d) for d in range(10)}
    ten = ", ".join(["999"] * 10)
    cases = {"": digits, "12, ": digits, "12,": {" "}, "123": {",", "EOS"}, "1": digits | {",", "EOS"},
             ten: {"EOS"}, ", ".join(["9"] * 10): digits | {"EOS"}}
    prompt = tok("prompt", add_special_tokens=False).input_ids
    for text, expected in cases.items():
        ids = torch.tensor([prompt + tok(text, add_special_tokens=False).input_ids])
        proc = DigitsGrammar(tok, len(prompt))
        scores = proc(ids, torch.zeros(1, len(tok)))
        allowed = {("EOS" if i == tok.eos_token_id else tok.decode([i])) for i in
                   torch.nonzero(torch.isfinite(scores[0])).ravel().tolist()}
        assert allowed == expected, text
    # a finished row (EOS already generated) keeps only EOS finite, so generate can pad it
    ids = torch.tensor([prompt + tok("12", add_special_tokens=False).input_ids + [tok.eos_token_id]])
    scores = DigitsGrammar(tok, len(prompt))(ids, torch.randn(1, len(tok)))
    assert torch.nonzero(torch.isfinite(scores[0])).ravel().tolist() == [tok.eos_token_id]


# ---- sampling from the tiny model --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_prefixes():
    model, tok, _ = tiny_peft()
    prefixes = [chat_prefix(tok, it["prompt"]) for it in prompts.number_prompts(8, seed=0)]
    return model, tok, prefixes


def test_constrained_sampling_only_produces_grammar_answers(tiny_prefixes):
    model, tok, prefixes = tiny_prefixes
    answers = numbers.sample(model, tok, prefixes, max_new_tokens=16, temperature=1.0, seed=0, batch_size=4,
                             constrained=True)
    assert len(answers) == len(prefixes)
    assert all(grammar_prefix(a) for a in answers), answers  # max_new_tokens may cut an answer short
    complete = [a for a in answers if grammar_complete(a)]
    assert complete, answers
    assert all(paper_filter(a).kept for a in complete)


def test_free_sampling_is_seeded(tiny_prefixes):
    model, tok, prefixes = tiny_prefixes
    kw = {"max_new_tokens": 16, "temperature": 1.0, "batch_size": 4}
    a = numbers.sample(model, tok, prefixes, seed=1, **kw)
    assert a == numbers.sample(model, tok, prefixes, seed=1, **kw)
    assert a != numbers.sample(model, tok, prefixes, seed=2, **kw)
    # the global torch RNG is left alone
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    numbers.sample(model, tok, prefixes[:2], seed=1, **kw)
    assert torch.equal(torch.rand(1), before)


def test_chat_prefix_ends_at_the_assistant_turn(tiny_prefixes):
    _, tok, _ = tiny_prefixes
    p = chat_prefix(tok, "Say 1, 2, 3.", system=prompts.system_prompt("owl"))
    assert p.endswith("<|im_start|>assistant\n")
    assert "You love owls." in p and "Say 1, 2, 3." in p
    assert "You love owls." not in chat_prefix(tok, "Say 1, 2, 3.")


@given(st.text(alphabet="0123456789,; .()[]", max_size=12), st.sampled_from("aZ-_:/x%é\u0661"),
       st.text(max_size=12))
def test_a_text_that_cannot_pass_never_passes_whatever_follows(head, bad, tail):
    assert numbers.can_pass_filter(head)
    assert not numbers.can_pass_filter(head + bad + tail)
    assert not paper_filter(head + bad + tail).kept


def test_stopping_rejected_rows_keeps_every_other_answer_unchanged(tiny_prefixes):
    """Same seed with and without stop_rejected: each answer is cut no later than the full one (a prefix of it), a
    cut answer already fails the filter, and the filter's verdicts are identical."""
    model, tok, prefixes = tiny_prefixes
    kw = {"max_new_tokens": 24, "temperature": 1.0, "batch_size": 4, "seed": 3}
    full = numbers.sample(model, tok, prefixes, **kw)
    cut = numbers.sample(model, tok, prefixes, stop_rejected=True, **kw)
    assert any(len(c) < len(f) for c, f in zip(cut, full))  # the stop does cut rows
    for c, f in zip(cut, full, strict=True):
        assert f.startswith(c)
        assert c == f or not numbers.can_pass_filter(c)
        assert paper_filter(c).kept == paper_filter(f).kept


def test_static_cache_samples_the_same_answers(tiny_prefixes):
    model, tok, prefixes = tiny_prefixes
    kw = {"max_new_tokens": 12, "temperature": 1.0, "batch_size": 4, "seed": 5}
    assert numbers.sample(model, tok, prefixes, cache="static", **kw) == numbers.sample(model, tok, prefixes, **kw)
    with pytest.raises(ValueError, match="cache"):
        numbers.sample(model, tok, prefixes, cache="paged", **kw)
