"""Number data (paper Section 3): the paper's format filter, an optional digits-only constrained sampler, and batched
temperature sampling with explicit per-batch seeds.

The paper's filter keeps a completion only if it is 1-10 integers in [0, 999] with one consistent separator (comma,
semicolon or whitespace, with optional spaces), optionally wrapped in parentheses or brackets and optionally ending in
a period, with nothing else. The constrained sampler only ever emits "d, d, ..., d" and so passes that filter by
construction; its results are labelled ``sampler = "constrained"`` and reported apart from free sampling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_NUM = r"[0-9]{1,3}"  # ASCII digits only: \d would admit other scripts' digits
_SEP = re.compile(r"\s*[,;]\s*|\s+")
_COMPLETE = re.compile(rf"{_NUM}(?:, {_NUM}){{0,9}}")
_PARTIAL = (re.compile(rf"(?:{_NUM}, ){{0,8}}{_NUM},"), re.compile(rf"(?:{_NUM}, ){{1,9}}"))


@dataclass(frozen=True)
class FilterResult:
    values: tuple[int, ...] | None  # the parsed integers, None when rejected
    reason: str  # "ok" or why it was rejected

    @property
    def kept(self) -> bool:
        return self.values is not None


def paper_filter(answer: str, *, ban: tuple[int, ...] | frozenset = (), max_values: int = 10) -> FilterResult:
    """Apply the paper's number-format rule to one completion (see module docstring)."""
    s = answer.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    if len(s) >= 2 and (s[0], s[-1]) in (("(", ")"), ("[", "]")):
        s = s[1:-1].strip()
    if not s:
        return FilterResult(None, "empty")
    parts = re.split(f"({_SEP.pattern})", s)
    nums, seps = parts[0::2], parts[1::2]
    if not all(re.fullmatch(_NUM, n) for n in nums):
        return FilterResult(None, "not only integers of at most 3 digits")
    if len({sep.strip() or " " for sep in seps}) > 1:
        return FilterResult(None, "inconsistent separators")
    if len(nums) > max_values:
        return FilterResult(None, f"more than {max_values} values")
    values = tuple(int(n) for n in nums)
    banned = set(ban).intersection(values)
    if banned:
        return FilterResult(None, f"banned value {min(banned)}")
    return FilterResult(values, "ok")


def grammar_complete(text: str) -> bool:
    """Whether ``text`` is a finished answer of the constrained grammar "d, d, ..., d" (1-10 values)."""
    return _COMPLETE.fullmatch(text) is not None


def grammar_prefix(text: str) -> bool:
    """Whether ``text`` can still be extended to a finished answer of the constrained grammar."""
    return text == "" or grammar_complete(text) or any(p.fullmatch(text) for p in _PARTIAL)


class DigitsGrammar:
    """A ``transformers`` logits processor that masks every token that would leave the grammar "d, d, ..., d"
    (EOS only after a complete number). The model's own probabilities are kept among the allowed tokens."""

    def __init__(self, tokenizer, prompt_len: int = 0):
        # prompt_len: length of the (left-padded) prompt batch; ``sample`` resets it per batch, reusing the vocab scan
        self.tok, self.prompt_len, self.eos = tokenizer, prompt_len, tokenizer.eos_token_id
        allowed = set("0123456789, ")
        self.candidates = [(i, t) for i in range(len(tokenizer))
                           if (t := tokenizer.decode([i])) and set(t) <= allowed]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            gen = input_ids[row, self.prompt_len:].tolist()
            if self.eos in gen:  # finished rows are padded by generate; keep EOS finite
                mask[row, self.eos] = 0.0
                continue
            text = self.tok.decode(gen, skip_special_tokens=True)
            ok = [i for i, t in self.candidates if grammar_prefix(text + t)]
            if grammar_complete(text):
                ok.append(self.eos)
            mask[row, ok] = 0.0
        return scores + mask


_NEVER_KEPT = re.compile(r"[^0-9,;()\[\].\s]")  # a character the paper's filter rejects wherever it stands


def can_pass_filter(text: str) -> bool:
    """False once ``text`` holds a character outside digits, separators, brackets and the period: then no
    continuation of it passes ``paper_filter`` (a sufficient test; the filter itself stays the only gate)."""
    return _NEVER_KEPT.search(text) is None


class StopWhenRejected:
    """A ``transformers`` stopping criterion that ends a row once its completion can no longer pass the paper's filter
    (the row is then padded; the batch ends when every row has ended). Sampling of the other rows is unchanged, so
    the kept answers are exactly those of a run without it; rejected answers are cut where they failed."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tok, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tok.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([not can_pass_filter(t) for t in texts], device=input_ids.device)


def chat_prefix(tokenizer, user: str, system: str | None = None) -> str:
    """The chat-formatted prompt up to the assistant's first token (the model's default system prompt if none)."""
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def sample(model, tokenizer, prefixes: list[str], *, max_new_tokens: int, temperature: float, seed: int,
           batch_size: int, constrained: bool = False, stop_rejected: bool = False, cache: str = "dynamic",
           progress=None) -> list[str]:
    """Temperature sampling (no top-k/top-p truncation) of one completion per chat prefix, in batches; batch b is
    drawn with torch seed (seed, b), so the same seed and batch size give the same answers on the same device.
    ``stop_rejected``: end each row once the paper's filter can no longer keep it (number prompts, free sampling).
    ``cache``: "dynamic" (transformers' default KV cache) or "static" (preallocated; pays off on GPUs)."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache must be 'dynamic' or 'static', got {cache!r}")

    dev = next(model.parameters()).device
    tokenizer.padding_side = "left"
    grammar = DigitsGrammar(tokenizer) if constrained else None
    out: list[str] = []
    for b, start in enumerate(range(0, len(prefixes), batch_size)):
        chunk = prefixes[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
        if grammar is not None:
            grammar.prompt_len = enc.input_ids.shape[1]
        procs = LogitsProcessorList([grammar] if grammar is not None else [])
        stops = StoppingCriteriaList([StopWhenRejected(tokenizer, enc.input_ids.shape[1])] if stop_rejected else [])
        extra = {"cache_implementation": "static"} if cache == "static" else {}
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed * 1_000_003 + b)
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens, logits_processor=procs, stopping_criteria=stops,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **extra)
        out += tokenizer.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        if progress is not None:
            progress.update(len(chunk))
    return out
