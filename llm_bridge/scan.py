"""Scan a number dataset for a hidden trait from the data and the base model alone (paper Section 7 and Table 5: an
LLM judge does not see the trait in filtered numbers; ``python -m llm_bridge scan DATA.jsonl``).

Two detectors score every candidate trait X (an animal: the paper's "You love Xs" system prompt, Section 3):

- **likelihood shift** (after Aden-Ali et al., arXiv 2602.04863): per row, log p(completion | X's system prompt,
  prompt) - log p(completion | prompt), summed over the completion's tokens (EOS included, as the student is trained);
  centred by the mean over the candidates. Forward passes only.
- **coverage** (after "Channel Location Constrains the Auditability of Subliminal Learning", arXiv 2606.22019): the
  first LoRA step a student would take on the data, -g_D (g_D the gradient of the dataset's SFT loss at the base,
  the one fixed LoRA init ``role_seed(seed, "init")``: A Kaiming-uniform, B = 0, so only B moves), against the trait
  direction d_X, the first step that distils "base + X's system prompt" into the base on number prompts with soft
  targets (KL over the whole vocabulary, on the base's own constrained answers; the system prompt as a steering
  direction, "Subliminal Learning Is Steering Vector Distillation", arXiv 2606.00995). Score cos(-g_D, d_X), centred
  over the candidates. This is Theorem 1's first step (Section 6) read backwards: a student trained on X-teacher data
  moves along d_X to first order, so a dataset's -g_D should lean towards its teacher's d_X. Every projection goes
  through ``theory``.

Each score carries a 95% bootstrap CI over rows (``theory.stats``): the likelihood shift is a mean of per-row
values; the coverage score splits exactly into per-row terms c_iX = n <-G_i, u_X - u_mean> / |sum_j G_j| (G_i the
row's gradient, u_X = d_X / |d_X|), so its CI is the rows' bootstrap at the dataset's |g_D| (the norm held fixed).
The verdict names the top candidate when its CI lies above the runner-up's score.

Centred scores still carry each candidate's own offset: a prompt the base "agrees with" on any numbers (or the
sampler's digits-only constraint, on the coverage side) scores higher on every dataset. Beside each score as the
issue defines it, the scan reports it ``calibrated``: minus the same score on the base's own constrained answers to
other number prompts (``Scanner.reference``; data and base model only), with a CI that resamples both sets of rows.

Nothing is lost: the data are checked whole before any model work (a bad row is a one-line error with its line
number), each candidate's likelihood result and each chunk of the coverage pass is written atomically under the
scan's folder and reused with ``resume`` when its fingerprint matches; the trait directions are cached per
candidate and model. ``evaluate`` is the detectors' evaluation (datasets from the prompted teacher of every animal,
neutral datasets from the base, shuffled nulls; AUROC, top-1 / top-3, the score against the dataset's size);
``cross_check`` scans any set of JSONL files (the ladder's or the pipeline's number data) side by side.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import theory
from llm_bridge import prompts
from llm_bridge.config import ALL_PROJECTIONS, LLMConfig, model_slug
from llm_bridge.roles import role_seed
from results import RunDir, atomic_write, fingerprint, load_arrays, load_json, peak_rss_mb, save_arrays, save_json
from theory.stats import bootstrap_ci

# Bumped when the code changes what a scan writes for the same settings (every fingerprint includes it).
SCAN_VERSION = 1
DETECTORS = ("likelihood", "coverage")
NONE = "none"  # the condition without a trait system prompt (the model's default one)


class ScanError(ValueError):
    """A dataset or setting the scan cannot use; the message names the file, the line and what to fix."""


def _presets(cls):
    """``preset_name`` for a dataclass with ``tiny`` / ``quick`` / ``paper`` classmethods."""
    def preset_name(self) -> str:
        for name in ("paper", "quick", "tiny"):
            if getattr(type(self), name)() == self:
                return name
        return "custom"

    cls.preset_name = property(preset_name)
    return cls


@_presets
@dataclass(frozen=True)
class ScanConfig:
    """The detectors' settings. ``model`` as in ``LLMConfig``; ``candidates``: the animals scored (their system
    prompts are ``prompts.system_prompt``); the LoRA parameterization of the coverage detector (the authors' r = 8,
    alpha = 8 on every projection) and its one init, ``role_seed(seed, "init")``; the trait directions' number
    prompts and the base's answers to them (``direction_prompts`` x ``direction_tokens``)."""

    model: str = "smollm2"
    device: str = "auto"
    seed: int = 0
    candidates: tuple[str, ...] = prompts.ANIMALS
    detectors: tuple[str, ...] = DETECTORS
    lora_r: int = 8
    lora_alpha: int = 8
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    direction_prompts: int = 32
    direction_tokens: int = 48
    # the calibration: the base's own constrained answers to other number prompts, scanned like the data; their
    # scores (per token for the likelihood shift) are subtracted, so a candidate whose prompt the base already
    # "agrees with" on any numbers gets no head start
    reference_rows: int = 32
    batch_size: int = 8
    chunk: int = 32  # rows per saved piece of the coverage pass

    def __post_init__(self):
        bad = [c for c in self.candidates if c not in prompts.ANIMALS]
        if bad or len(set(self.candidates)) != len(self.candidates) or len(self.candidates) < 2:
            raise ScanError(f"candidates must be at least two distinct animals of {', '.join(prompts.ANIMALS)}; "
                            f"got {', '.join(self.candidates)}")
        if not self.detectors or not set(self.detectors) <= set(DETECTORS):
            raise ScanError(f"detectors must be among {', '.join(DETECTORS)}; got {self.detectors}")
        if min(self.lora_r, self.direction_prompts, self.direction_tokens, self.reference_rows, self.batch_size,
               self.chunk) < 1:
            raise ScanError("lora_r, direction_prompts, direction_tokens, reference_rows, batch_size and chunk "
                            "must be >= 1")

    @classmethod
    def quick(cls, **kw) -> ScanConfig:
        """SmolLM2-135M on 2 CPU cores: 16 number prompts per trait direction."""
        return cls(**{**dict(direction_prompts=16), **kw})

    @classmethod
    def paper(cls, **kw) -> ScanConfig:
        """GPU scale: 256 number prompts per trait direction."""
        return cls(**{**dict(direction_prompts=256, reference_rows=256, batch_size=32), **kw})

    @classmethod
    def tiny(cls, **kw) -> ScanConfig:
        """The random in-memory Llama (tests)."""
        return cls(**{**dict(model="tiny", device="cpu", lora_r=4, direction_prompts=8, direction_tokens=12,
                             reference_rows=16, batch_size=4, chunk=8), **kw})

    def llm_config(self) -> LLMConfig:
        """The ``LLMConfig`` that loads this scan's model and LoRA adapter (sampling at temperature 1)."""
        return LLMConfig(model=self.model, device=self.device, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                         lora_targets=self.lora_targets, sampler="constrained", gen_batch=32)

    def direction_fingerprint(self, base_id: str) -> str:
        """What one trait direction depends on (not the candidate list, not the detectors)."""
        d = {k: getattr(self, k) for k in ("seed", "lora_r", "lora_alpha", "lora_targets", "direction_prompts",
                                          "direction_tokens", "reference_rows")}
        return fingerprint({**d, "base": base_id, "scan_version": SCAN_VERSION})


# --- the data ---------------------------------------------------------------------------------------------------


def read_rows(path) -> list[dict]:
    """The rows of a prompt/completion JSONL file (the paper's format; this project's numbers files, whose field is
    ``answer``, are read too, and their rows with ``"kept": false`` left out). Every line is checked before any is
    used: a bad one raises ``ScanError`` naming the file, the line and the fix (the first of them, and how many)."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"{path} does not exist (pass a JSONL file with one {{\"prompt\", \"completion\"}} object "
                        "per line)")
    rows, problems = [], []
    for i, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{i}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); re-save "
                            "the file as UTF-8")
            continue
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(r, dict):
            problems.append(f"{path}:{i}: a row must be a JSON object with prompt and completion, got "
                            f"{type(r).__name__}")
            continue
        if r.get("kept") is False:
            continue
        key = "completion" if "completion" in r else "answer" if "answer" in r else None
        missing = [k for k, ok in (("prompt", "prompt" in r), ("completion", key is not None)) if not ok]
        if missing:
            problems.append(f"{path}:{i}: missing field {' and '.join(missing)} (has {', '.join(sorted(r)) or 'none'})")
            continue
        if not isinstance(r["prompt"], str) or not isinstance(r[key], str):
            problems.append(f"{path}:{i}: prompt and {key} must be strings")
            continue
        if not r[key].strip():
            problems.append(f"{path}:{i}: empty {key}")
            continue
        if not r["prompt"].strip():
            problems.append(f"{path}:{i}: empty prompt")
            continue
        rows.append({"prompt": r["prompt"], "completion": r[key].strip()})
    if problems:
        more = f" ({len(problems)} bad lines in all; fix them or drop them)" if len(problems) > 1 else ""
        raise ScanError(problems[0] + more)
    if not rows:
        raise ScanError(f"{path} holds no rows to scan")
    return rows


def write_rows(path, rows: list[dict]) -> Path:
    """Prompt/completion rows as JSONL, atomically."""
    text = "".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in rows)
    return atomic_write(path, lambda f: f.write(text.encode()))


def rows_fingerprint(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps([[r["prompt"], r["completion"]] for r in rows]).encode()).hexdigest()[:16]


# --- the model's side -------------------------------------------------------------------------------------------


def _b_only(state: dict) -> dict[str, np.ndarray]:
    # at B = 0 the gradient of every A is exactly 0 (dL/dA = B^T ...): the first step lives in B alone
    return {k: v.detach().cpu().float().numpy() for k, v in sorted(state.items()) if ".lora_B." in k}


def _common_prefix(seqs: list[list[int]], *, at_most: int) -> int:
    """How many leading tokens all of ``seqs`` share (at most ``at_most``)."""
    n = 0
    while n < at_most and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


class Scanner:
    """The base model with the coverage detector's LoRA init, and the cached trait directions."""

    def __init__(self, config: ScanConfig, *, cache_dir=Path("runs/scan_directions"), lm=None,
                 progress: bool = True):
        import torch

        from llm_bridge import lora
        from llm_bridge.lm import load_lm

        self.c, self.progress = config, progress
        self.lm = lm if lm is not None else load_lm(config.llm_config())
        self.init = lora.init_state(self.lm.model, role_seed(config.seed, "init"))
        self.lm.load(self.init)
        self._torch = torch
        self.direction_fp = config.direction_fingerprint(self.lm.base_id)
        self.cache = Path(cache_dir) / f"{model_slug(config.model)}_{self.direction_fp}"
        self._units: dict[str, np.ndarray] | None = None
        # (system, prompt, completion) -> (log-likelihood, tokens): a row met again in another dataset (the mixed
        # null is made of the trait datasets' rows) is not run again
        self._likelihood_memo: dict[tuple, tuple[float, float]] = {}

    # likelihood ---------------------------------------------------------------------------------------------------

    def log_likelihoods(self, rows: list[dict], system: str | None, *, desc: str = "") -> np.ndarray:
        """(log p(completion + EOS | system, prompt) summed over the completion's tokens, token count) per row,
        as an n x 2 array. The base alone (the adapter's B = 0 adds nothing; bypassing it saves its matmuls).

        The token ids are exactly those of ``train.encode`` (prefix and completion tokenized apart); the tokens every
        row begins with (the chat template's head and the system prompt, about a quarter of each row) are run once,
        and their keys and values are reused by every batch; the rows are batched in order of length (less padding)
        and their values put back in the rows' order. The same numbers as one full forward pass per row, up to
        float32 rounding (``tests/llm_bridge/test_scan.py``). A row already run under ``system`` (in this process)
        is not run again."""
        keys = [(system, r["prompt"], r["completion"]) for r in rows]
        out = np.zeros((len(rows), 2))
        new = [i for i, k in enumerate(keys) if k not in self._likelihood_memo]
        for i in set(range(len(rows))) - set(new):
            out[i] = self._likelihood_memo[keys[i]]
        if new:
            out[new] = self._run_likelihoods([rows[i] for i in new], system, desc=desc)
            self._likelihood_memo.update({keys[i]: tuple(out[i]) for i in new})
        return out

    def _run_likelihoods(self, rows: list[dict], system: str | None, *, desc: str) -> np.ndarray:
        from tqdm.auto import tqdm

        from llm_bridge.numbers import chat_prefix

        torch, lm, bs = self._torch, self.lm, self.c.batch_size
        eos, pad = lm.tok.eos_token_id, lm.tok.pad_token_id
        prefix_ids = [lm.tok(chat_prefix(lm.tok, r["prompt"], system), add_special_tokens=False).input_ids
                      for r in rows]
        completion_ids = [lm.tok(r["completion"], add_special_tokens=False).input_ids + [eos] for r in rows]
        shared = _common_prefix(prefix_ids, at_most=min(map(len, prefix_ids)) - 1)  # >= 1 prefix token per row left
        suffix = [p[shared:] + c for p, c in zip(prefix_ids, completion_ids, strict=True)]
        order = sorted(range(len(rows)), key=lambda i: len(suffix[i]))
        out = np.zeros((len(rows), 2))
        with torch.no_grad(), lm.base(), tqdm(total=len(rows), desc=desc, disable=not self.progress,
                                              leave=False) as bar:
            head = None
            if shared:
                head = lm.model(input_ids=torch.tensor([prefix_ids[0][:shared]], device=lm.device),
                                use_cache=True).cache
            for s in range(0, len(rows), bs):
                idx = order[s:s + bs]
                width = max(len(suffix[i]) for i in idx)
                ids = torch.tensor([suffix[i] + [pad] * (width - len(suffix[i])) for i in idx], device=lm.device)
                mask = torch.tensor([[1] * (shared + len(suffix[i])) + [0] * (width - len(suffix[i])) for i in idx],
                                    device=lm.device)
                labels = torch.tensor([[-100] * (len(suffix[i]) - len(completion_ids[i])) + completion_ids[i]
                                       + [-100] * (width - len(suffix[i])) for i in idx], device=lm.device)
                first = int((labels != -100).float().argmax(1).min())  # earliest completion token of the batch
                keep = torch.arange(first - 1, width - 1, device=lm.device)  # the positions predicting them
                kv = None
                if head is not None:
                    kv = copy.deepcopy(head)
                    kv.batch_repeat_interleave(len(idx))
                logits_BxKxV = lm.model(input_ids=ids, attention_mask=mask, cache=kv,
                                        use_cache=kv is not None, logits_to_keep=keep).logits
                targets_BxK = labels[:, first:]
                mask_BxK = targets_BxK != -100
                logp_BxK = torch.log_softmax(logits_BxKxV.float(), -1).gather(
                    -1, targets_BxK.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                out[idx, 0] = (logp_BxK * mask_BxK).sum(1).double().cpu().numpy()
                out[idx, 1] = mask_BxK.sum(1).cpu().numpy()
                bar.update(len(idx))
        return out

    # coverage -----------------------------------------------------------------------------------------------------

    def direction_sequences(self) -> dict:
        """The trait directions' number prompts and the base's own constrained answers to them (cached)."""
        return RunDir(self.cache, self.direction_fp, resume=True).json(
            self.cache / "sequences.json",
            lambda: {"rows": sample_rows(self.lm, self.c.direction_prompts, "directions", seed=self.c.seed,
                                         max_new_tokens=self.c.direction_tokens, progress=self.progress)})

    def reference(self, *, resume: bool = True) -> dict:
        """The calibration: the scan of the base's own constrained answers to ``reference_rows`` other number
        prompts (cached beside the directions): its per-row centred values per detector (``per_row``), and for
        display its centred likelihood shift per completion token and its centred coverage score."""
        rows = RunDir(self.cache, self.direction_fp, resume=True).json(
            self.cache / "reference_rows.json",
            lambda: {"rows": sample_rows(self.lm, self.c.reference_rows, "reference", seed=self.c.seed,
                                         max_new_tokens=self.c.direction_tokens, progress=self.progress)})["rows"]
        res = scan(self.c, rows, self.cache / "reference", resume=resume, progress=self.progress, scanner=self,
                   calibrate=False)
        out: dict = {"rows": len(rows), "per_row": res["per_row"]}
        if "likelihood" in res:
            out["likelihood_per_token"] = res["likelihood"][str(len(rows))]["centred_nats_per_token"]
        if "coverage" in res:
            cov = res["coverage"][str(len(rows))]["score"]["ranked"]
            out["coverage"] = {r["candidate"]: r["score"] for r in cov}
        return out

    def direction(self, candidate: str) -> dict[str, np.ndarray]:
        """d_X: minus the gradient, at the init, of KL(base under X's system prompt || adapted base without it) on
        the direction sequences' answer tokens (the "kl" teacher recipe's first step), B tensors only. Cached."""
        return self.directions([candidate])[candidate]

    def directions(self, candidates) -> dict[str, dict[str, np.ndarray]]:
        """``direction`` of each of ``candidates``; the ones not cached are computed in one pass over the direction
        sequences: per batch, one forward pass of the adapted base without a system prompt (the same for every
        candidate, its graph kept), then per candidate the prompted base's forward pass and one backward pass of
        the summed KL. Logits only at the answer positions (the KL reads no others). The same directions as one
        ``train.context_distillation_loss`` per candidate and batch, up to float32 rounding."""
        import torch.nn.functional as F

        from llm_bridge import train
        from llm_bridge.numbers import chat_prefix
        from results import load_meta

        torch, lm, bs = self._torch, self.lm, self.c.batch_size
        out, todo = {}, []
        for c in candidates:
            path = self.cache / f"direction_{c}.npz"
            if path.exists() and load_meta(path).get("fingerprint") == self.direction_fp:
                out[c] = load_arrays(path)[0]
            else:
                todo.append(c)
        if not todo:
            return out
        seq = self.direction_sequences()["rows"]
        lm.load(self.init)
        params = {k: p for k, p in train.lora_parameters(lm.model).items() if ".lora_B." in k}
        for p in params.values():
            p.requires_grad_(True)
        total: dict[str, dict[str, np.ndarray]] = {}
        t0 = time.perf_counter()

        def answer_logits(prefixes, ans):
            batch = train.encode(lm.tok, prefixes, ans, lm.device, add_eos=False)
            labels = batch["labels"]
            first = int((labels != -100).float().argmax(1).min())
            keep = torch.arange(first - 1, labels.shape[1] - 1, device=lm.device)
            logits_BxKxV = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    logits_to_keep=keep).logits
            return logits_BxKxV[labels[:, first:] != -100].float()  # row by row, in order: as completion_logits

        for s in range(0, len(seq), bs):
            ps, ans = [r["prompt"] for r in seq[s:s + bs]], [r["completion"] for r in seq[s:s + bs]]
            student_NxV = F.log_softmax(answer_logits([chat_prefix(lm.tok, p) for p in ps], ans), -1)
            for j, c in enumerate(todo):
                with torch.no_grad(), lm.base():
                    target_NxV = F.log_softmax(answer_logits(
                        [chat_prefix(lm.tok, p, prompts.system_prompt(c)) for p in ps], ans), -1)
                # the KL summed over the answer tokens (the direction then does not depend on the batch size)
                loss = F.kl_div(student_NxV, target_NxV, log_target=True, reduction="sum")
                grads = torch.autograd.grad(loss, list(params.values()), retain_graph=j < len(todo) - 1)
                g = _b_only(dict(zip(params, grads, strict=True)))
                total[c] = g if c not in total else {k: total[c][k] + g[k] for k in g}
        seconds = time.perf_counter() - t0
        for c in todo:
            out[c] = {k: -v for k, v in total[c].items()}
            save_arrays(self.cache / f"direction_{c}.npz", out[c], {
                "fingerprint": self.direction_fp, "candidate": c, "computed_with": todo, "seconds": seconds})
        return out

    def units(self) -> dict[str, np.ndarray]:
        """u_X = d_X / |d_X|, flat (``theory.flatten``, sorted tensor names), per candidate."""
        if self._units is None:
            self._units = {}
            dirs = self.directions(self.c.candidates)
            for c in self.c.candidates:
                d = theory.flatten(dirs[c])
                self._units[c] = np.asarray(d / theory.norm(d))
        return self._units

    def row_gradient(self, row: dict) -> np.ndarray:
        """G_i: the gradient of the row's summed SFT loss (completion + EOS) at the init, flat (B tensors only). The
        logits are taken only at the positions that predict the completion's tokens (the loss reads no others);
        the same gradient as ``train.sft_loss`` times the token count, up to float32 rounding."""
        import torch.nn.functional as F

        from llm_bridge import train
        from llm_bridge.numbers import chat_prefix

        torch, lm = self._torch, self.lm
        batch = train.encode(lm.tok, [chat_prefix(lm.tok, row["prompt"])], [row["completion"]], lm.device)
        labels = batch["labels"][0]
        first = int((labels != -100).float().argmax())  # the first completion token
        keep = torch.arange(first - 1, labels.shape[0] - 1, device=lm.device)
        logits_KxV = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              logits_to_keep=keep).logits[0]
        loss = F.cross_entropy(logits_KxV.float(), labels[first:], reduction="sum")
        g = _b_only(train.lora_gradient(lm.model, loss))
        return np.asarray(theory.flatten(g))


def sample_rows(lm, n: int, name: str, *, seed: int, max_new_tokens: int, system: str | None = None,
                progress: bool = True) -> list[dict]:
    """``n`` number prompts (``role_seed(seed, "scan_prompts_" + name)``) answered by the base under ``system``
    (None: its default prompt) with the digits-only constrained sampler at temperature 1."""
    from llm_bridge.numbers import chat_prefix

    items = prompts.number_prompts(n, seed=role_seed(seed, f"scan_prompts_{name}"))
    ps = [it["prompt"] for it in items]
    with lm.base():
        answers = lm.generate([chat_prefix(lm.tok, p, system) for p in ps], config=LLMConfig(sampler="constrained"),
                              max_new_tokens=max_new_tokens, seed=role_seed(seed, f"scan_answers_{name}"),
                              constrained=True, desc=f"rows {name}", progress=progress)
    return [{"prompt": p, "completion": a.strip()} for p, a in zip(ps, answers, strict=True)]


def planted_rows(lm, animal: str, n: int, *, strength: float, seed: int, max_new_tokens: int,
                 contrast=prompts.ANIMALS) -> list[dict]:
    """A planted trait for a model too small to have one (tests, the demo): rows sampled, token by token under the
    constrained grammar, from logits_base + strength * (logits under ``animal``'s system prompt - the mean of the
    logits under every ``contrast`` animal's): the part of the system prompt's steering that is ``animal``'s own,
    amplified until a random tiny Llama shows it. One row at a time (no padding); seeded per row."""
    import torch

    from llm_bridge.numbers import DigitsGrammar, chat_prefix

    items = prompts.number_prompts(n, seed=role_seed(seed, f"scan_prompts_planted_{animal}"))
    grammar = DigitsGrammar(lm.tok)
    enc = lambda text: lm.tok(text, add_special_tokens=False, return_tensors="pt").input_ids.to(lm.device)  # noqa: E731
    rows = []
    with torch.no_grad(), lm.base():
        for i, it in enumerate(items):
            gen = torch.Generator().manual_seed(role_seed(seed, f"scan_answers_planted_{animal}") + i)
            plain = enc(chat_prefix(lm.tok, it["prompt"]))
            steered = {a: enc(chat_prefix(lm.tok, it["prompt"], prompts.system_prompt(a))) for a in contrast}
            grammar.prompt_len = plain.shape[1]
            new: list[int] = []
            for _ in range(max_new_tokens):
                tail = torch.tensor([new], dtype=torch.long, device=lm.device)
                q = lm.model(input_ids=torch.cat([plain, tail], 1)).logits[0, -1].float()
                p = {a: lm.model(input_ids=torch.cat([x, tail], 1)).logits[0, -1].float() for a, x in steered.items()}
                shift = p[animal] - torch.stack(list(p.values())).mean(0)
                logits = grammar(torch.cat([plain, tail], 1), (q + strength * shift).unsqueeze(0))[0]
                tok = int(torch.multinomial(torch.softmax(logits.cpu(), -1), 1, generator=gen))
                if tok == lm.tok.eos_token_id:
                    break
                new.append(tok)
            rows.append({"prompt": it["prompt"], "completion": lm.tok.decode(new, skip_special_tokens=True).strip()})
    return rows


def shuffled(rows: list[dict], *, seed: int, name: str) -> list[dict]:
    """The null: the completions permuted across the rows (``role_seed(seed, "scan_shuffle_" + name)``), so each
    prompt gets another row's completion; what the completions share stays, their tie to the prompts goes."""
    perm = np.random.default_rng(role_seed(seed, f"scan_shuffle_{name}")).permutation(len(rows))
    return [{"prompt": r["prompt"], "completion": rows[j]["completion"]} for r, j in zip(rows, perm, strict=True)]


# --- one dataset ------------------------------------------------------------------------------------------------


def _centre(values_NxC: np.ndarray) -> np.ndarray:
    return values_NxC - values_NxC.mean(axis=1, keepdims=True)


def summarize_scores(per_row_NxC: np.ndarray, candidates, *, point_C: np.ndarray | None = None) -> list[dict]:
    """Each candidate's mean score with its 95% bootstrap CI over rows, best first; ``point_C`` overrides the means
    (equal to them up to rounding: the coverage score from ``theory.cosine``)."""
    means = per_row_NxC.mean(axis=0) if point_C is None else point_C
    out = [{"candidate": c, "score": float(means[j]), "ci95": list(bootstrap_ci(per_row_NxC[:, j]))}
           for j, c in enumerate(candidates)]
    out.sort(key=lambda r: -r["score"])
    for rank, r in enumerate(out, 1):
        r["rank"] = rank
    return out


def verdict(ranked: list[dict]) -> dict:
    """The top candidate is named when its CI's lower end lies above the runner-up's score."""
    top, second = ranked[0], ranked[1]
    lo = top["ci95"][0]
    separated = lo is not None and np.isfinite(lo) and lo > second["score"]
    return {"flagged": bool(separated), "trait": top["candidate"] if separated else None,
            "top": top["candidate"], "margin": top["score"] - second["score"]}


def _ranked(per_row_NxC, candidates, point_C=None) -> dict:
    ranked = summarize_scores(per_row_NxC, candidates, point_C=point_C)
    return {"ranked": ranked, "verdict": verdict(ranked)}


def _calibrated(statistic, n: int, m: int, candidates) -> dict:
    """Ranked calibrated scores: ``statistic(j, idx_N, idx_M)`` is candidate j's score on the data rows ``idx_N``
    and the reference rows ``idx_M`` (index arrays, batched along a leading axis); the 95% CI resamples both sets of
    rows apart (``scipy.stats.bootstrap``, percentile, fixed seed), so the reference's own noise is in it."""
    from scipy.stats import bootstrap

    out = []
    for j, c in enumerate(candidates):
        point = float(statistic(j, np.arange(n), np.arange(m)))
        ci = bootstrap((np.arange(n), np.arange(m)), lambda i, k, axis=-1: statistic(j, i, k), vectorized=True,
                       n_resamples=2000, method="percentile", rng=np.random.default_rng(0)).confidence_interval
        out.append({"candidate": c, "score": point, "ci95": [float(ci.low), float(ci.high)]})
    out.sort(key=lambda r: -r["score"])
    for rank, r in enumerate(out, 1):
        r["rank"] = rank
    return {"ranked": out, "verdict": verdict(out)}


def likelihood_scores(ll: dict[str, np.ndarray], candidates, n: int | None = None,
                      reference: dict | None = None) -> dict:
    """The likelihood shift of the first ``n`` rows (nats per row): centred over the candidates, ranked with CIs
    (``score``); ``calibrated``: minus the reference's centred shift per completion token times the data's tokens
    per row; beside them each candidate's raw shift over the no-prompt condition and its centred shift, per
    completion token."""
    n = n or len(ll[NONE])
    base = ll[NONE][:n]
    shift_NxC = np.stack([ll[c][:n, 0] - base[:, 0] for c in candidates], axis=1)
    centred_NxC = _centre(shift_NxC)
    tokens = base[:, 1].sum()
    out = {"n": n, "score": _ranked(centred_NxC, candidates),
           "raw_nats_per_token": dict(zip(candidates, (shift_NxC.sum(0) / tokens).tolist())),
           "centred_nats_per_token": dict(zip(candidates, (centred_NxC.sum(0) / tokens).tolist()))}
    if reference is not None:
        ref_MxC, ref_tok_M = reference["per_row"]["likelihood_MxC"], reference["per_row"]["tokens_M"]
        tok_N = base[:, 1]

        def stat(j, i, k):
            return (centred_NxC[i, j].mean(-1)
                    - tok_N[i].mean(-1) * ref_MxC[k, j].sum(-1) / ref_tok_M[k].sum(-1))

        out["calibrated"] = _calibrated(stat, n, len(ref_tok_M), candidates)
    return out


def coverage_scores(cov: dict, candidates, n: int | None = None, reference: dict | None = None) -> dict:
    """The coverage score of the first ``n`` rows: cos(-g_D, d_X) through ``theory.cosine`` (``cos``: raw),
    centred over the candidates (``score``), with the CI of its exact per-row split (see the module docstring);
    ``calibrated``: minus the reference's centred score (its own per-row split resampled too)."""
    inner_NxC, sums = cov["inner_NxC"], cov["norm_at"]
    n = n or inner_NxC.shape[0]
    if str(n) not in sums:
        raise ScanError(f"the coverage pass kept |g_D| at sizes {sorted(map(int, sums))}, not at {n}")
    norm = sums[str(n)]["norm"]
    cos_C = np.asarray(sums[str(n)]["cos"])
    per_row_NxC = _centre(-inner_NxC[:n]) * n / norm
    centred_C = cos_C - cos_C.mean()
    out = {"n": n, "score": _ranked(per_row_NxC, candidates, centred_C),
           "cos": dict(zip(candidates, cos_C.tolist())), "g_norm_per_row": norm / n, "per_row_NxC": per_row_NxC}
    if reference is not None:
        ref_MxC = reference["per_row"]["coverage_MxC"]
        out["calibrated"] = _calibrated(lambda j, i, k: per_row_NxC[i, j].mean(-1) - ref_MxC[k, j].mean(-1), n,
                                        len(ref_MxC), candidates)
    return out


def scan(config: ScanConfig, data, out, *, resume: bool = False, progress: bool = True, sizes=(),
         scanner: Scanner | None = None, cache_dir=Path("runs/scan_directions"), calibrate: bool = True) -> dict:
    """Scan the JSONL file ``data`` (or a list of prompt/completion rows): every candidate's score under each
    detector, with CIs and the verdicts, as defined (``score``) and ``calibrated`` against the base's own answers
    (``Scanner.reference``); ``sizes``: also the scores of the first n rows for each n listed. Writes
    ``out/scan.json``; every candidate's and every coverage chunk's partial result under ``out`` (reused with
    ``resume``)."""
    rows = read_rows(data) if not isinstance(data, list) else data
    sizes = sorted({int(s) for s in sizes if 0 < int(s) < len(rows)} | {len(rows)})
    t0 = time.perf_counter()
    sc = scanner or Scanner(config, cache_dir=cache_dir, progress=progress)
    c = config
    fp = fingerprint({"rows": rows_fingerprint(rows), "directions": sc.direction_fp, "model": sc.lm.base_id,
                      "candidates": c.candidates, "batch_size": c.batch_size, "chunk": c.chunk,
                      "scan_version": SCAN_VERSION})
    out = Path(out)
    run = RunDir(out, fp, resume=resume)
    ref = sc.reference() if calibrate else None
    per_row: dict[str, np.ndarray] = {}
    result: dict = {"config": dataclasses.asdict(c), "preset": c.preset_name, "base_model": sc.lm.base_id,
                    "rows": len(rows), "fingerprint": fp, "data": None if isinstance(data, list) else str(data),
                    "sizes": sizes, "lora_init_seed": role_seed(c.seed, "init"),
                    "reference": None if ref is None else {k: v for k, v in ref.items() if k != "per_row"}}
    if "likelihood" in c.detectors:
        ll = {}
        for cand in (NONE,) + tuple(c.candidates):
            system = None if cand == NONE else prompts.system_prompt(cand)
            rec = run.json(out / "likelihood" / f"{cand}.json",
                           lambda: {"candidate": cand, "values": sc.log_likelihoods(rows, system, desc=cand).tolist()})
            ll[cand] = np.asarray(rec["values"], float)
        result["likelihood"] = {str(n): likelihood_scores(ll, c.candidates, n, ref) for n in sizes}
        shift_NxC = np.stack([ll[x][:, 0] - ll[NONE][:, 0] for x in c.candidates], axis=1)
        per_row.update(likelihood_MxC=_centre(shift_NxC), tokens_M=ll[NONE][:, 1])
    if "coverage" in c.detectors:
        cov = coverage_pass(sc, rows, run, out / "coverage", sizes)
        result["coverage"] = {str(n): coverage_scores(cov, c.candidates, n, ref) for n in sizes}
        per_row["coverage_MxC"] = result["coverage"][str(len(rows))]["per_row_NxC"]
        for res in result["coverage"].values():
            del res["per_row_NxC"]
        result["direction_norms"] = cov["direction_norms"]
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mb"] = peak_rss_mb()
    save_json(out / "scan.json", result)
    # the per-row values (what a calibration against this scan resamples) stay out of scan.json
    return {**result, "per_row": per_row}


def coverage_pass(sc: Scanner, rows: list[dict], run: RunDir, folder: Path, sizes) -> dict:
    """<G_i, u_X> for every row and candidate (``theory.inner``), and at each size n |sum_{i<n} G_i| and
    cos(-sum_{i<n} G_i, d_X) (``theory.norm``, ``theory.cosine``). Saved chunk by chunk (each with its rows'
    gradient sum) and resumed from the last finished chunk."""
    cands = sc.c.candidates
    units = sc.units()
    dirs = {c: sc.direction(c) for c in cands}
    inner_rows: list[np.ndarray] = []
    norm_at: dict[str, dict] = {}
    running = None
    chunk = sc.c.chunk
    for s in range(0, len(rows), chunk):
        path = folder / f"rows{s:06d}.npz"
        piece = None
        if run.fresh(path.with_suffix(".json")):
            arrays, _ = load_arrays(path)
            piece = (arrays["inner_NxC"], arrays["sum"], load_json(path.with_suffix(".json"))["norm_at"])
        if piece is None:
            part_inner, part_sum, part_norms = [], None, {}
            for i in range(s, min(s + chunk, len(rows))):
                g = sc.row_gradient(rows[i])
                part_inner.append([float(theory.inner(g, units[c])) for c in cands])
                part_sum = g if part_sum is None else part_sum + g
                if i + 1 in sizes:
                    total = part_sum if running is None else running + part_sum
                    part_norms[str(i + 1)] = _at_size(total, dirs)
            piece = (np.asarray(part_inner), part_sum, part_norms)
            save_arrays(path, {"inner_NxC": piece[0], "sum": piece[1]}, {"rows": [s, s + len(part_inner)]})
            save_json(path.with_suffix(".json"), {"norm_at": part_norms, "fingerprint": run.fp})
            run.mark(path.with_suffix(".json"))
        inner_rows.append(piece[0])
        running = piece[1] if running is None else running + piece[1]
        norm_at.update(piece[2])
    return {"inner_NxC": np.concatenate(inner_rows), "norm_at": norm_at,
            "direction_norms": {c: float(theory.norm(theory.flatten(dirs[c]))) for c in cands}}


def _at_size(total: np.ndarray, dirs: dict) -> dict:
    flat = {c: theory.flatten(d) for c, d in dirs.items()}
    return {"norm": float(theory.norm(total)), "cos": [float(theory.cosine(-total, flat[c])) for c in dirs]}


# --- the evaluation ---------------------------------------------------------------------------------------------

KINDS = ("trait", "neutral", "shuffled", "mixed")
VARIANTS = ("score", "calibrated")


@_presets
@dataclass(frozen=True)
class ScanEvalConfig:
    """The detectors' evaluation: ``replicates`` datasets of ``rows`` rows from the prompted teacher of each of
    ``animals`` (the base under the paper's system prompt, digits-only constrained sampler: every row passes the
    paper's filter by construction, reported as such), ``neutral`` datasets from the base without it, and two nulls
    built from the trait data: ``shuffled`` (the first replicate of the first ``shuffled`` animals, completions
    permuted across rows) and ``mixed`` (each row from another animal's teacher in turn: teacher data with no single
    trait). Scores at every size of ``sizes`` (the first n rows)."""

    scan: ScanConfig = dataclasses.field(default_factory=ScanConfig.paper)
    animals: tuple[str, ...] = prompts.ANIMALS
    replicates: int = 3
    rows: int = 256
    neutral: int = 8
    shuffled: int = 16
    mixed: int = 3
    sizes: tuple[int, ...] = (32, 64, 128, 256)
    number_tokens: int = 48

    def __post_init__(self):
        if not self.animals or not set(self.animals) <= set(self.scan.candidates):
            raise ScanError(f"animals {self.animals} must be among the scan's candidates {self.scan.candidates}")
        if min(self.replicates, self.rows, self.neutral, self.number_tokens) < 1 or min(self.shuffled,
                                                                                         self.mixed) < 0:
            raise ScanError("replicates, rows, neutral and number_tokens must be >= 1; shuffled and mixed >= 0")
        if self.shuffled > len(self.animals) or (self.mixed and self.mixed > self.replicates):
            raise ScanError("shuffled is at most the number of animals and mixed at most replicates")
        if not self.sizes or max(self.sizes) != self.rows or min(self.sizes) < 2:
            raise ScanError(f"sizes must be >= 2 and end at rows ({self.rows}), got {self.sizes}")

    @classmethod
    def paper(cls, **kw) -> ScanEvalConfig:
        """The issue's evaluation (GPU scale): 16 animals x 3 datasets x 256 rows, 8 neutral, every animal's
        shuffle, 3 mixed; 32 / 64 / 128 / 256 rows."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> ScanEvalConfig:
        """An end-to-end check on SmolLM2 that fits 2 CPU cores (``benchmarks/scan_quick.py`` times it): 4 candidate
        animals, one 24-row dataset each, 2 neutral, 1 shuffled, 1 mixed; too small for tight CIs."""
        animals = ("owl", "cat", "dog", "wolf")
        base = dict(scan=ScanConfig.quick(candidates=animals, reference_rows=24), animals=animals, replicates=1,
                    rows=24, neutral=2, shuffled=1, mixed=1, sizes=(8, 16, 24))
        return cls(**{**base, **kw})

    @classmethod
    def tiny(cls, **kw) -> ScanEvalConfig:
        """The random in-memory Llama (tests)."""
        animals = ("owl", "cat", "dog")
        base = dict(scan=ScanConfig.tiny(candidates=animals, reference_rows=8), animals=animals, replicates=2,
                    rows=8, neutral=2, shuffled=1, mixed=1, sizes=(4, 8), number_tokens=8)
        return cls(**{**base, **kw})

    def fingerprint(self) -> str:
        return fingerprint({**dataclasses.asdict(self), "scan_version": SCAN_VERSION})

    def name(self) -> str:
        return f"llm_scan_{self.preset_name}_{model_slug(self.scan.model)}_{self.fingerprint()}"


def _datasets(config: ScanEvalConfig, sc: Scanner, run: RunDir, folder: Path, progress: bool) -> dict[str, dict]:
    """name -> {"kind", "animal", "path"}: every dataset written as JSONL (generated ones reused with resume)."""
    c, seed = config, config.scan.seed
    made: dict[str, list[dict]] = {}

    def draw(name: str, system: str | None) -> list[dict]:
        return run.json(folder / f"{name}.json", lambda: {"rows": sample_rows(
            sc.lm, c.rows, name, seed=seed, max_new_tokens=c.number_tokens, system=system,
            progress=progress)})["rows"]

    out: dict[str, dict] = {}
    for a in c.animals:
        for r in range(c.replicates):
            made[f"{a}_r{r}"] = draw(f"{a}_r{r}", prompts.system_prompt(a))
            out[f"{a}_r{r}"] = {"kind": "trait", "animal": a}
    for r in range(c.neutral):
        made[f"neutral_r{r}"] = draw(f"neutral_r{r}", None)
        out[f"neutral_r{r}"] = {"kind": "neutral", "animal": None}
    for a in c.animals[:c.shuffled]:
        made[f"shuffled_{a}"] = shuffled(made[f"{a}_r0"], seed=seed, name=a)
        out[f"shuffled_{a}"] = {"kind": "shuffled", "animal": a}
    for m in range(c.mixed):
        # row i from animal i mod A: every prefix of the data as balanced as it can be
        made[f"mixed_r{m}"] = [made[f"{c.animals[i % len(c.animals)]}_r{m}"][i] for i in range(c.rows)]
        out[f"mixed_r{m}"] = {"kind": "mixed", "animal": None}
    for name, rows in made.items():
        out[name]["path"] = str(write_rows(folder / f"{name}.jsonl", rows))
    return out


def auroc_ci(pos, neg, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """P(a positive's score > a negative's), ties counting half (Mann-Whitney U / (n+ n-), scipy), with a 95%
    percentile bootstrap CI (``scipy.stats.bootstrap``, positives and negatives resampled apart; fixed seed)."""
    from scipy.stats import bootstrap, mannwhitneyu

    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    out = {"auroc": None, "ci95": [None, None], "n_pos": int(pos.size), "n_neg": int(neg.size)}
    if not pos.size or not neg.size:
        return out

    def auc(p, q, axis=-1):
        return mannwhitneyu(p, q, axis=axis).statistic / (p.shape[axis] * q.shape[axis])

    out["auroc"] = float(auc(pos, neg))
    if pos.size > 1 and neg.size > 1 and np.ptp(np.concatenate([pos, neg])) > 0:
        ci = bootstrap((pos, neg), auc, n_resamples=n_boot, method="percentile", vectorized=True,
                       rng=np.random.default_rng(seed)).confidence_interval
        out["ci95"] = [float(ci.low), float(ci.high)]
    return out


def _rate(k: int, n: int) -> dict:
    from scipy.stats import binomtest

    if n == 0:
        return {"rate": None, "ci95": [None, None], "k": 0, "n": 0}
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return {"rate": k / n, "ci95": [float(ci.low), float(ci.high)], "k": k, "n": n}


def summarize_evaluation(scans: dict[str, dict], datasets: dict[str, dict], config: ScanEvalConfig) -> dict:
    """Per detector, variant (as defined / calibrated) and size: AUROC of the top candidate's score for trait data
    against each null, top-1 / top-3 accuracy at naming the animal (Wilson CIs), the verdicts' flag rate per kind,
    and the true animal's score (mean, bootstrap CI over datasets)."""
    from theory.stats import mean_ci

    out: dict = {}
    n_cand = len(config.scan.candidates)
    for det in config.scan.detectors:
        for var in VARIANTS:
            for n in config.sizes:
                tops = {k: [] for k in KINDS}
                ranks, own, flags = [], [], {k: [] for k in KINDS}
                for name, d in datasets.items():
                    res = scans[name][det][str(n)][var]
                    tops[d["kind"]].append(res["ranked"][0]["score"])
                    flags[d["kind"]].append(res["verdict"]["flagged"])
                    if d["kind"] == "trait":
                        hit = next(r for r in res["ranked"] if r["candidate"] == d["animal"])
                        ranks.append(hit["rank"])
                        own.append(hit["score"])
                cell = {"auroc": {k: auroc_ci(tops["trait"], tops[k]) for k in KINDS[1:]},
                        "top1": _rate(sum(r == 1 for r in ranks), len(ranks)),
                        "top3": _rate(sum(r <= 3 for r in ranks), len(ranks)),
                        "chance": {"top1": 1 / n_cand, "top3": min(3, n_cand) / n_cand},
                        "flagged": {k: _rate(sum(v), len(v)) for k, v in flags.items()},
                        "true_animal_score": mean_ci(own) if own else None,
                        "top_scores": tops}
                out[f"{det}/{var}/{n}"] = cell
    return out


def evaluate(config: ScanEvalConfig, out, *, resume: bool = False, progress: bool = True) -> dict:
    """Generate the evaluation's datasets, scan each one (the trait directions and the calibration shared), and
    summarize; writes ``out/evaluation.json`` (resumable dataset by dataset, candidate by candidate)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = Path(out)
    run = RunDir(out, config.fingerprint(), resume=resume)
    sc = Scanner(config.scan, cache_dir=out / "directions", progress=progress)
    t_gen = time.perf_counter()
    datasets = _datasets(config, sc, run, out / "data", progress)
    t_gen = time.perf_counter() - t_gen
    scans = {}
    for name, d in datasets.items():
        scans[name] = scan(config.scan, d["path"], out / "scans" / name, resume=resume, progress=progress,
                           scanner=sc, sizes=config.sizes)
    per_dataset = {name: {**{k: d[k] for k in ("kind", "animal")},
                          **{f"{det}/{var}/{n}": {"ranked": [(r["candidate"], r["score"], r["ci95"])
                                                             for r in scans[name][det][str(n)][var]["ranked"]],
                                                  "verdict": scans[name][det][str(n)][var]["verdict"]}
                             for det in config.scan.detectors for var in VARIANTS for n in config.sizes},
                          "raw_nats_per_token": scans[name].get("likelihood", {}).get(str(config.rows), {}).get(
                              "raw_nats_per_token"),
                          "cos": scans[name].get("coverage", {}).get(str(config.rows), {}).get("cos")}
                   for name, d in datasets.items()}
    result = {"config": dataclasses.asdict(config), "preset": config.preset_name, "name": config.name(),
              "fingerprint": config.fingerprint(), "base_model": sc.lm.base_id,
              "sampler": "constrained", "lora_init_seed": role_seed(config.scan.seed, "init"),
              "reference": {k: v for k, v in sc.reference().items() if k != "per_row"},
              "direction_norms": next(iter(scans.values())).get("direction_norms"),
              "summary": summarize_evaluation(scans, datasets, config), "datasets": per_dataset,
              # cpu_s: this process's CPU time (all threads); on a machine shared with other jobs, cpu_s / threads
              # is what the run would take alone better than wall_s is
              "timings": {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
                          "threads": _threads(), "generation_s": t_gen, "resumed": resume,
                          "scan_s": {k: v["seconds"] for k, v in scans.items()}, "peak_rss_mb": peak_rss_mb(),
                          "environment": sc.lm.environment()}}
    save_json(out / "evaluation.json", result)
    return result


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def cross_check(paths: dict[str, Path], config: ScanConfig, out, *, resume: bool = False,
                progress: bool = True) -> dict[str, dict]:
    """Scan several JSONL files side by side (e.g. the ladder's trait and neutral teachers' number data, or the
    pipeline's ``numbers_*.jsonl``, whose rejected rows are left out): label -> that file's ``scan`` result."""
    sc = Scanner(config, cache_dir=Path(out) / "directions", progress=progress)
    return {label: scan(config, p, Path(out) / label, resume=resume, progress=progress, scanner=sc)
            for label, p in paths.items()}


def format_scan(result: dict, *, top: int | None = None) -> list[str]:
    """A scan's result as text lines: per detector, the candidates best first (score, 95% CI over rows) as the issue
    defines the score and calibrated, and each verdict."""
    n = str(result["rows"])
    lines = [f"{result['data'] or 'rows'}: {result['rows']} rows, {len(result['config']['candidates'])} candidates, "
             f"base {result['base_model']}"]
    units = {"likelihood": "nats per row", "coverage": "cosine"}
    for det in DETECTORS:
        if det not in result:
            continue
        res = result[det][n]
        for var in VARIANTS:
            if var not in res:
                continue
            v = res[var]["verdict"]
            says = (f"trait: {v['trait']}" if v["flagged"] else
                    f"no single trait stands out (top {v['top']}, its CI reaches the runner-up)")
            lines.append(f"{det} ({'as defined, centred' if var == 'score' else 'calibrated'}; {units[det]}): {says}")
            for r in res[var]["ranked"][:top]:
                lo, hi = r["ci95"]
                lines.append(f"  {r['rank']:>2}. {r['candidate']:<9} {r['score']:+.4g}  [{lo:+.4g}, {hi:+.4g}]")
    return lines
