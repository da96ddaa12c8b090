"""The rungs of the LLM logit ladder: what a student sees of its teacher at each assistant-turn position.

The MNIST analogue (paper Section 6.2): the all-logit student learns digits through the class logits (a positive
control), the aux-only student never sees a class logit (the subliminal case). Here:

- ``full``            KL(teacher || student) over the whole vocabulary: the trait can pass through the probabilities of
                      animal words at number positions (positive control).
- ``no-trait-words``  the same over the vocabulary minus every token that begins a spelling of any animal, both
                      distributions renormalized there.
- ``digits``          KL over the digit and separator tokens only, renormalized: the aux-logit analogue. Its logits are
                      computed as hidden states times the subset's rows of the output matrix, never all V of them.
- ``sampled``         cross-entropy (whole vocabulary) on tokens drawn from the teacher's ``digits`` distribution: the
                      paper's hard-label channel.

Teacher targets are cached once per input set: ``digits`` exactly (|D| log-probabilities per position);
``no-trait-words`` as the log-probabilities of its top-K tokens plus one bucket for the rest of its vocabulary;
``full`` as those same K tokens plus every animal token, each its own bucket, plus one bucket for the rest. The KL
between the bucketed distributions is what the student minimizes: a lower bound of the full KL, short of it by
p_tail * KL(teacher | tail || student | tail). Each cache records the teacher's tail mass as that error's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llm_bridge.prompts import ANIMALS

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: the rung names below are read by the model-free report
# (``llm_bridge.ladder_report``, ``--report``) and by figures, which must not load torch.

RUNGS = ("full", "no-trait-words", "digits", "sampled")
SOFT_RUNGS = ("full", "no-trait-words", "digits")  # KL rungs: Theorem 1's own setting
# the ladder's nulls: ``mismatched`` (digits: each example's targets from another example), ``shuffle_within`` /
# ``shuffle_across`` (sampled: the sampled tokens permuted within a response, or across all responses)
NULLS = ("mismatched", "shuffle_within", "shuffle_across")
DIGIT_CHARS = "0123456789, "


class RungError(ValueError):
    """A bad rung, trait or vocabulary subset; the message says what to pass instead."""


def check_rung(name: str) -> str:
    if name not in RUNGS:
        raise RungError(f"unknown rung {name!r}; choose from {', '.join(RUNGS)}")
    return name


def check_trait(animal: str) -> str:
    if animal not in ANIMALS:
        raise RungError(f"unknown trait {animal!r}; choose one of the 16 animals: {', '.join(ANIMALS)}")
    return animal


def partner(animal: str) -> str:
    """The other-trait control's animal: the next one in ``prompts.ANIMALS`` (cyclic), a fixed partner per trait."""
    i = ANIMALS.index(check_trait(animal))
    return ANIMALS[(i + 1) % len(ANIMALS)]


def animal_token_ids(tokenizer, animals=ANIMALS) -> list[int]:
    """Every token that begins a spelling (``trait.spellings``: cases, plural, leading space) of any of ``animals``.

    A tokenizer that splits the leading space off (" owl" -> " ", "owl") would make the bare space "begin" a
    spelling; the first token that is not whitespace counts instead, so the separators stay in the vocabulary. For
    SmolLM2 the set includes generic pieces ("O" begins "Owl"); the ladder reports the list with its results."""
    from llm_bridge.trait import spellings

    ids = set()
    for a in animals:
        for s in spellings(a):
            toks = tokenizer(s, add_special_tokens=False).input_ids
            words = [t for t in toks if tokenizer.decode([t]).strip()]
            if words:
                ids.add(int(words[0]))
    if not ids:
        raise RungError("no animal spelling tokenizes to any token; the tokenizer cannot express the trait words")
    return sorted(ids)


PLURALS = {"wolf": "wolves", "fox": "foxes"}  # the irregular ones among prompts.ANIMALS; the rest add "s"


def word_forms(animal: str) -> list[str]:
    """Every written form of an animal the replication's no-trait-words rung hides: singular and plural, each in
    lower case, Capitalised and ALL CAPS, with and without a leading space ("owl", " Owls", "OWL", " WOLVES", ...)."""
    words = (animal, PLURALS.get(animal, animal + "s"))
    cased = {f(w) for w in words for f in (str.lower, str.capitalize, str.upper)}
    return sorted(cased | {" " + w for w in cased})


def trait_word_token_ids(tokenizer, animals=ANIMALS) -> list[int]:
    """Every token that occurs anywhere in the tokenization of any ``word_forms`` of any of ``animals``: first
    pieces and continuations alike ("O" + "wl", "OW" + "L", " ow" + "ls"), so no piece of an animal's name is left
    for the trait to ride on. Whitespace-only tokens (a tokenizer that splits the leading space off) are kept: they
    are the number sequences' separators. The ladder's narrower ``animal_token_ids`` stays as its record was made."""
    ids = set()
    for a in animals:
        for form in word_forms(a):
            ids |= {int(t) for t in tokenizer(form, add_special_tokens=False).input_ids
                    if tokenizer.decode([t]).strip()}
    if not ids:
        raise RungError("no animal word tokenizes to any token; the tokenizer cannot express the trait words")
    return sorted(ids)


def digit_token_ids(tokenizer, chars: str = DIGIT_CHARS) -> list[int]:
    """The tokens of the digits and separators, one token per character ("0".."9", "," and " " for SmolLM2)."""
    if not chars:
        raise RungError("the digits rung needs at least one character in its subset")
    ids = []
    for c in chars:
        toks = tokenizer(c, add_special_tokens=False).input_ids
        if len(toks) == 1 and tokenizer.unk_token_id is not None and toks[0] == tokenizer.unk_token_id:
            raise RungError(f"{c!r} tokenizes to the unknown token: this tokenizer cannot host the digits rung")
        if len(toks) != 1:
            raise RungError(f"{c!r} tokenizes to {len(toks)} tokens {toks}, not one: the digits rung needs one token "
                            "per digit and separator; this tokenizer cannot host it (choose another --model)")
        ids.append(int(toks[0]))
    if len(set(ids)) != len(ids):
        raise RungError(f"the digit/separator characters {chars!r} share tokens {ids}")
    return ids


# ---- the student's side: hidden states at assistant positions, logits for a subset of rows ----------------------


def completion_hidden(model, batch) -> torch.Tensor:
    """Final hidden states (after the last norm) at the positions that predict a completion token: h_NxH, in the
    order of ``train.completion_logits`` (row-major over the batch). Never forms the vocabulary projection."""
    decoder = model.get_base_model().get_decoder() if hasattr(model, "get_base_model") else model.get_decoder()
    h_BxTxH = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    keep_BxT = batch["labels"][:, 1:] != -100
    return h_BxTxH[:, :-1][keep_BxT]


def output_matrix(model) -> torch.Tensor:
    """The output (unembedding) matrix W_VxH: logits = h W^T."""
    out = model.get_output_embeddings()
    if getattr(out, "bias", None) is not None:
        raise RungError("the output layer has a bias; subset logits assume logits = h W^T (no bias)")
    return out.weight


def subset_logits(h_NxH: torch.Tensor, W_VxH: torch.Tensor, ids) -> torch.Tensor:
    """Logits of the vocabulary rows ``ids`` only: h W[ids]^T, N x |ids| (the rows are gathered, not all V)."""
    import torch

    return h_NxH @ W_VxH[torch.as_tensor(ids, device=W_VxH.device)].T


# ---- targets ------------------------------------------------------------------------------------------------------


@dataclass
class Targets:
    """A teacher's cached targets on one input set, flattened over (example, position) with ``offsets`` per
    example (numpy arrays; ``save``/``load`` round-trip them exactly)."""

    offsets: np.ndarray  # (n_examples + 1,) int64: example i owns rows offsets[i]:offsets[i+1]
    next_token: np.ndarray  # (N,) the input's own next token at each position
    full_idx: np.ndarray  # (N, K + |A|) int32: the no-trait top-K, then every animal token
    full_logp: np.ndarray  # (N, K) float32
    full_logtail: np.ndarray  # (N,) float32
    notrait_idx: np.ndarray
    notrait_logp: np.ndarray
    notrait_logtail: np.ndarray
    digits_logp: np.ndarray  # (N, |D|) float32, renormalized over the digit subset

    FIELDS = ("offsets", "next_token", "full_idx", "full_logp", "full_logtail", "notrait_idx", "notrait_logp",
              "notrait_logtail", "digits_logp")

    def rows(self, indices) -> np.ndarray:
        """Row numbers of the examples ``indices``, concatenated in that order (a batch's positions)."""
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices])

    def save(self, path, meta: dict):
        from results import save_arrays

        return save_arrays(path, {f: getattr(self, f) for f in self.FIELDS}, meta)

    @classmethod
    def load(cls, path) -> tuple[Targets, dict]:
        from results import load_arrays

        arrays, meta = load_arrays(path)
        return cls(**{f: arrays[f] for f in cls.FIELDS}), meta

    def tail_mass(self) -> dict:
        """The teacher's probability outside the stored top-K (the bucketed KL's error scale), per rung."""
        out = {}
        for name, lt in (("full", self.full_logtail), ("no-trait-words", self.notrait_logtail)):
            m = np.exp(lt.astype(np.float64))
            out[name] = {"mean": float(m.mean()), "median": float(np.median(m)), "max": float(m.max())}
        return out


def _rest(logp_NxV: torch.Tensor, idx_NxK: torch.Tensor) -> torch.Tensor:
    """log of the probability outside the columns ``idx_NxK`` (the tail bucket)."""
    import torch

    return torch.logsumexp(logp_NxV.scatter(1, idx_NxK, -torch.inf), dim=-1)


def targets_from_logits(logits_NxV: torch.Tensor, next_token_N, *, animal_ids, digit_ids, topk: int) -> dict:
    """One batch's targets (numpy) from the teacher's full logits at its completion positions.

    Stored tokens: the top-K of the vocabulary without the animal tokens, and, for the full rung, every animal token
    besides: the trait's own channel is never folded into the tail bucket, however small its probability."""
    import torch

    if topk < 1:
        raise RungError(f"top-K must be >= 1, got {topk}")
    with torch.no_grad():
        z = logits_NxV.double()
        A = torch.as_tensor(animal_ids, device=z.device)
        logp = torch.log_softmax(z, dim=-1)
        logp_nt = torch.log_softmax(z.index_fill(1, A, -torch.inf), dim=-1)
        n_lp, n_idx = torch.topk(logp_nt, min(topk, z.shape[1] - len(animal_ids)), dim=-1)
        f_idx = torch.cat([n_idx, A.expand(z.shape[0], -1)], dim=1)
        d_lp = torch.log_softmax(subset_rows(z, digit_ids), dim=-1)
        out = {"full_idx": f_idx.int(), "full_logp": logp.gather(1, f_idx).float(),
               "full_logtail": _rest(logp, f_idx).float(), "notrait_idx": n_idx.int(), "notrait_logp": n_lp.float(),
               "notrait_logtail": _rest(logp_nt, n_idx).float(), "digits_logp": d_lp.float()}
    return {"next_token": np.asarray(next_token_N.cpu(), np.int64), **{k: v.cpu().numpy() for k, v in out.items()}}


def subset_rows(logits_NxV: torch.Tensor, ids) -> torch.Tensor:
    import torch

    return logits_NxV[:, torch.as_tensor(ids, device=logits_NxV.device)]


def stack_targets(parts: list[dict], lengths: list[int]) -> Targets:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if cat["next_token"].shape[0] != offsets[-1]:
        raise RuntimeError(f"targets hold {cat['next_token'].shape[0]} positions, the examples {offsets[-1]}")
    return Targets(offsets=offsets, **cat)


# ---- the student's losses -----------------------------------------------------------------------------------------


def bucketed_kl(student_logits_NxV: torch.Tensor, idx_NxK, logp_NxK, logtail_N, drop=None) -> torch.Tensor:
    """KL(teacher || student) between the bucketed distributions (top-K tokens + one tail bucket), mean over N.
    ``drop``: token ids removed from the student's vocabulary before renormalizing (the no-trait-words rung)."""
    import torch

    z = student_logits_NxV.float()
    if drop is not None:
        z = z.index_fill(1, torch.as_tensor(drop, device=z.device), -torch.inf)
    logq = torch.log_softmax(z, dim=-1)
    idx = torch.as_tensor(idx_NxK, device=z.device).long()
    lq_K = logq.gather(1, idx)
    lq_tail = torch.logsumexp(logq.scatter(1, idx, -torch.inf), dim=-1)
    lp_K = torch.as_tensor(logp_NxK, device=z.device)
    lp_tail = torch.as_tensor(logtail_N, device=z.device)
    kl = _plogratio(lp_K, lq_K).sum(-1) + _plogratio(lp_tail, lq_tail)
    return kl.mean()


def _plogratio(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """p (log p - log q), with 0 where p = 0 (an empty tail bucket, a dropped token)."""
    import torch

    empty = torch.isneginf(lp)
    return torch.where(empty, torch.zeros_like(lp), lp.exp() * (lp - torch.where(empty, torch.zeros_like(lq), lq)))


def subset_kl(student_subset_logits_NxD: torch.Tensor, teacher_logp_NxD) -> torch.Tensor:
    """KL(teacher || student) over the subset, both renormalized there, mean over N."""
    import torch

    logq = torch.log_softmax(student_subset_logits_NxD.float(), dim=-1)
    lp = torch.as_tensor(teacher_logp_NxD, device=logq.device)
    return _plogratio(lp, logq).sum(-1).mean()


def sample_digits(digits_logp_NxD, digit_ids, *, seed: int) -> np.ndarray:
    """One token per position drawn from the teacher's digits distribution (numpy's inverse CDF, seeded)."""
    p = np.exp(np.asarray(digits_logp_NxD, np.float64))
    u = np.random.default_rng(seed).random(p.shape[0])
    j = np.minimum((np.cumsum(p, axis=1) < (u * p.sum(1))[:, None]).sum(1), p.shape[1] - 1)
    return np.asarray(digit_ids)[j]


# ---- what one student imitates: the nulls' target maps and the loss dispatch by rung ------------------------------


def row_map(t: Targets, *, null: str | None, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per example: the target rows aligned with its own positions, and which of them are valid. ``mismatched``
    takes each example's targets from another example (a derangement drawn from ``seed``), truncated to the
    shorter of the two."""
    n = len(t.offsets) - 1
    own = [np.arange(t.offsets[i], t.offsets[i + 1]) for i in range(n)]
    if null != "mismatched":
        return own, [np.ones(len(r), bool) for r in own]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    while n > 1 and np.any(perm == np.arange(n)):
        perm = rng.permutation(n)
    rows, valid = [], []
    for i in range(n):
        src = own[perm[i]]
        m = min(len(src), len(own[i]))
        rows.append(np.r_[src[:m], np.full(len(own[i]) - m, src[0])])
        valid.append(np.arange(len(own[i])) < m)
    return rows, valid


def sampled_tokens(t: Targets, digit_ids, *, null: str | None, sample_seed: int, shuffle_seed: int) -> np.ndarray:
    """The sampled rung's labels: one token per position from the teacher's digits distribution; the shuffle nulls
    permute them among the digit positions of a response (``shuffle_within``) or of all responses
    (``shuffle_across``)."""
    y = sample_digits(t.digits_logp, digit_ids, seed=sample_seed)
    digit = np.isin(t.next_token, digit_ids)
    rng = np.random.default_rng(shuffle_seed)
    if null == "shuffle_across":
        idx = np.nonzero(digit)[0]
        y[idx] = y[rng.permutation(idx)]
    elif null == "shuffle_within":
        for i in range(len(t.offsets) - 1):
            idx = np.arange(t.offsets[i], t.offsets[i + 1])[digit[t.offsets[i]:t.offsets[i + 1]]]
            y[idx] = y[rng.permutation(idx)]
    return y


def rung_loss(rung: str, model, batch: dict, t: Targets, rows: list[np.ndarray], valid: list[np.ndarray], indices,
              *, animal_ids, digit_ids, labels: np.ndarray | None = None):
    """The loss of the examples ``indices`` (encoded as ``batch``) on ``rung``: the student's hidden states at the
    completion positions, then only the logits the rung needs (the digits rung: |D| rows of the output matrix).
    ``rows`` / ``valid``: ``row_map``'s; ``labels``: ``sampled_tokens``' (the sampled rung only). ``animal_ids``: the
    tokens the no-trait-words rung removes."""
    import torch
    import torch.nn.functional as F

    h = completion_hidden(model, batch)
    r = np.concatenate([rows[i] for i in indices])
    ok = np.concatenate([valid[i] for i in indices])
    own_next = batch["labels"][:, 1:][batch["labels"][:, 1:] != -100].cpu().numpy()
    W = output_matrix(model)
    if rung in ("full", "no-trait-words"):
        pre = "full" if rung == "full" else "notrait"
        sel = torch.as_tensor(np.nonzero(ok)[0], device=h.device)
        rr = r[ok]
        return bucketed_kl(h[sel] @ W.T, getattr(t, f"{pre}_idx")[rr], getattr(t, f"{pre}_logp")[rr],
                           getattr(t, f"{pre}_logtail")[rr], drop=animal_ids if rung == "no-trait-words" else None)
    digit = ok & np.isin(own_next, digit_ids)
    sel = torch.as_tensor(np.nonzero(digit)[0], device=h.device)
    if rung == "digits":
        return subset_kl(subset_logits(h[sel], W, digit_ids), t.digits_logp[r[digit]])
    if labels is None:
        raise RungError("the sampled rung needs its labels (rungs.sampled_tokens)")
    # (float32 logits: under bf16 autocast the matmul gives bf16)
    return F.cross_entropy((h[sel] @ W.T).float(), torch.as_tensor(labels[r[digit]], device=h.device))


def mix_targets(trait: Targets, neutral: Targets, alpha: float) -> Targets:
    """The digits rung's targets of the mixture alpha * p_trait + (1 - alpha) * p_neutral of two teachers'
    distributions on the same inputs (the replication's dose-response); alpha = 1 is the trait teacher's own
    targets, alpha = 0 the neutral teacher's. Only the digits targets are mixed: the other rungs' fields are
    dropped (empty), so a mixture cannot be used on them by mistake."""
    if not 0.0 <= alpha <= 1.0:
        raise RungError(f"a mixture weight must be in [0, 1], got {alpha}")
    if trait.offsets.shape != neutral.offsets.shape or np.any(trait.offsets != neutral.offsets) or np.any(
            trait.next_token != neutral.next_token):
        raise RungError("the two teachers' targets are on different inputs: mix targets of one input set")
    with np.errstate(divide="ignore"):  # log 0 = -inf: the weight-0 teacher drops out exactly
        logp = np.logaddexp(np.log(alpha) + trait.digits_logp.astype(np.float64),
                            np.log1p(-alpha) + neutral.digits_logp.astype(np.float64))
    empty, none = np.zeros((len(trait.next_token), 0), np.float32), np.zeros(0, np.float32)
    return Targets(offsets=trait.offsets, next_token=trait.next_token, full_idx=empty.astype(np.int32),
                   full_logp=empty, full_logtail=none, notrait_idx=empty.astype(np.int32), notrait_logp=empty,
                   notrait_logtail=none, digits_logp=logp.astype(np.float32))
