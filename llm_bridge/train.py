"""Training on completion tokens only: context distillation of the trait system prompt into the teacher's LoRA
(KL from the system-prompted base to the adapter without it, on the base's own system-prompted answers), student SFT
on number answers (cross-entropy), and the one-step gradients of the Theorem-1 check (paper Section 6, Theorem 1)."""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llm_bridge.lora import lora_parameters
from results import injected


def encode(tokenizer, prefixes: list[str], completions: list[str], device, *, add_eos: bool = True) -> dict:
    """Right-padded batch of prefix + completion (+ EOS); ``labels`` are -100 except on completion tokens.

    Prefix and completion are tokenized apart, so the same completion gets the same tokens after any prefix."""
    rows, labels = [], []
    for p, c in zip(prefixes, completions, strict=True):
        p_ids = tokenizer(p, add_special_tokens=False).input_ids
        c_ids = tokenizer(c, add_special_tokens=False).input_ids + ([tokenizer.eos_token_id] if add_eos else [])
        rows.append(p_ids + c_ids)
        labels.append([-100] * len(p_ids) + c_ids)
    n = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows], device=device)
    lab = torch.tensor([r + [-100] * (n - len(r)) for r in labels], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows], device=device)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def completion_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits_NxV predicting each completion token, targets_N), N = completion tokens in the batch, in order."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    return logits[keep].float(), targets[keep]


def sft_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy on completion tokens (the paper's student SFT)."""
    logits_NxV, targets_N = completion_logits(model, batch)
    return F.cross_entropy(logits_NxV, targets_N)


def kl_to(model, batch: dict, target_logits_NxV: torch.Tensor) -> torch.Tensor:
    """Mean over completion tokens of KL(target || model): imitation of full next-token distributions."""
    logits_NxV, _ = completion_logits(model, batch)
    if logits_NxV.shape != target_logits_NxV.shape:
        raise ValueError(f"student and target completion positions differ: {tuple(logits_NxV.shape)} vs "
                         f"{tuple(target_logits_NxV.shape)}")
    return F.kl_div(F.log_softmax(logits_NxV, -1), F.log_softmax(target_logits_NxV, -1), log_target=True,
                    reduction="batchmean")


def completion_sft_loss(model, tokenizer, prefixes: list[str], answers: list[str], device, *,
                        add_eos: bool = True) -> torch.Tensor:
    """SFT loss of ``answers`` after ``prefixes``: the student's loss (EOS appended), and the "sft" teacher's
    (``add_eos=False``: its answers were cut at teacher_answer_tokens)."""
    return sft_loss(model, encode(tokenizer, prefixes, answers, device, add_eos=add_eos))


def context_distillation_loss(model, tokenizer, teacher_prefixes: list[str], student_prefixes: list[str],
                              answers: list[str], device) -> torch.Tensor:
    """KL from the base under ``teacher_prefixes`` (which carry the trait system prompt) to the adapted model under
    ``student_prefixes`` (no system prompt), on the same answer tokens: the "kl" teacher recipe."""
    t_batch = encode(tokenizer, teacher_prefixes, answers, device, add_eos=False)
    s_batch = encode(tokenizer, student_prefixes, answers, device, add_eos=False)
    with torch.no_grad(), model.disable_adapter():
        target, _ = completion_logits(model, t_batch)
    return kl_to(model, s_batch, target)


def inverse_cdf_sample(logits_NxV: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Tokens drawn from softmax(logits) by the inverse CDF at the uniforms ``u`` (shape N, or N x S for S draws per
    row; the tokens have u's shape). Two distributions sampled with the same u are coupled: they give different
    tokens with probability at most sum_k |F_k - G_k| (the L1 distance of their CDFs), O(eps) for distributions eps
    apart."""
    cdf_NxV = torch.softmax(logits_NxV.double(), -1).cumsum(-1)
    u_NxS = u.double().unsqueeze(-1) if u.dim() == 1 else u.double()
    idx = torch.searchsorted(cdf_NxV, u_NxS).clamp(max=logits_NxV.shape[-1] - 1)  # u above a cdf rounding below 1
    return idx.squeeze(-1) if u.dim() == 1 else idx


def sampled_token_loss(model, batch: dict, tokens: torch.Tensor, control_tokens: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Mean cross-entropy of the model's completion positions on sampled tokens (shape N, or N x S: S draws per
    position): the hard-label channel at the level of single tokens. Its gradient is unbiased for the soft step's
    (E_y[-grad log q(y)] = grad CE(p, q) = grad KL(p || q)). ``control_tokens``, drawn from the student's own
    distribution at theta_0 with the same uniforms, are subtracted as a control variate: their gradient has mean 0
    at theta_0 (the score function's), and with coupled draws the difference vanishes wherever teacher and student
    agree, so its variance is O(eps)."""
    logits_NxV, _ = completion_logits(model, batch)
    logp_NxV = F.log_softmax(logits_NxV, -1)

    def nll(y):
        return -logp_NxV.gather(1, y.view(y.shape[0], -1)).mean()

    return nll(tokens) if control_tokens is None else nll(tokens) - nll(control_tokens)


def _check(value: torch.Tensor, quantity: str, who: str, step: int, steps: int) -> None:
    """A FloatingPointError naming the model, the step and the quantity where ``value`` is not finite."""
    if not torch.isfinite(value):
        raise FloatingPointError(f"{who}: the {quantity} is {value.item()} at step {step} of {steps}; nothing of "
                                 "this model was saved: lower the learning rate")


def _poisoned(action: str, who: str, step: int) -> bool:
    """A test hook (tests/faults): ``$SUBLIMINAL_FAULTS`` holds ``nan-loss:GLOB@STEP`` or ``nan-grad:GLOB@STEP``, a
    NaN in the loss or the gradient of step STEP of the fits whose ``ROLE DESC`` matches GLOB."""
    for arg in injected(action):
        glob, _, at = arg.rpartition("@")
        if at.isdigit() and int(at) == step and fnmatch.fnmatch(who, glob):
            return True
    return False


def fit(model, make_loss, n_examples: int, *, epochs: int, batch_size: int, lr: float, seed: int, desc: str,
        role: str = "model", warmup_steps: int = 0, max_grad_norm: float | None = None, progress: bool = True,
        on_step=None, bf16: bool = False, params: list | None = None) -> list[float]:
    """AdamW (no weight decay) with a linear warm-up over ``warmup_steps``, then linear decay to 0, on the LoRA
    parameters only; the gradient's global norm clipped at ``max_grad_norm`` (None: no clipping). The example order
    of every epoch is drawn from ``seed``. ``make_loss(indices)`` returns the batch's loss; ``on_step(step)``, if
    given, runs after each optimizer step (step = 1, 2, ...; the model in eval mode meanwhile). ``bf16``:
    ``make_loss`` (forward and loss) runs under bfloat16 autocast (``LLMConfig.bf16``); backward, clipping and the
    optimizer step do not, so the adapter, its gradients and AdamW's state stay float32. ``params``: the tensors to
    train instead of the LoRA parameters (full fine-tuning: every weight of the base). A loss or a gradient that is
    not finite stops the fit before its step with a FloatingPointError naming ``role`` ("teacher" or "student"),
    ``desc`` and the step. Returns losses."""
    from transformers import get_linear_schedule_with_warmup

    params = list(lora_parameters(model).values()) if params is None else list(params)
    for p in params:
        p.requires_grad_(True)
    steps = epochs * math.ceil(n_examples / batch_size)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, warmup_steps, steps)
    gen = torch.Generator().manual_seed(seed)
    # autocast casts each matmul's inputs to bf16 (the weights too, on every call) and keeps the parameters as they
    # are; the loss functions upcast the logits to float32 before their log-softmax
    precision = torch.autocast(device_type=params[0].device.type, dtype=torch.bfloat16, enabled=bf16)
    losses: list[float] = []
    model.train()
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(n_examples, generator=gen).tolist()
            for s in range(0, n_examples, batch_size):
                step = len(losses) + 1
                with precision:
                    loss = make_loss(order[s:s + batch_size])
                if _poisoned("nan-loss", f"{role} {desc}", step):
                    loss = loss * float("nan")
                _check(loss, "training loss", f"{role} {desc}", step, steps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if _poisoned("nan-grad", f"{role} {desc}", step):
                    next(p for p in params if p.grad is not None).grad.view(-1)[0] = float("nan")
                grads = [p.grad for p in params if p.grad is not None]
                if max_grad_norm is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                else:
                    grad_norm = torch.nn.utils.get_total_norm(grads)
                _check(grad_norm, "gradient's norm", f"{role} {desc}", step, steps)
                opt.step()
                sched.step()
                losses.append(loss.item())
                if on_step is not None:
                    model.eval()
                    with torch.no_grad():
                        on_step(len(losses))
                    model.train()
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def lora_gradient(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """d loss / d theta for the LoRA parameters, keyed as saved adapters (for the first-step check)."""
    params = lora_parameters(model)
    for p in params.values():
        p.requires_grad_(True)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {k: (torch.zeros_like(p) if g is None else g.detach()) for (k, p), g in zip(params.items(), grads,
                                                                                        strict=True)}
