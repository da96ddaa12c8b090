"""Stage 4b, Theorem 1's first step (paper Section 6): the teacher at theta_0 + eps dT (LoRA space); one student
gradient step at theta_0, on the teacher's kept number answers (teacher-forced), with three imitation losses:

- "soft": KL to the teacher's full next-token distributions (the theorem's own setting);
- "sampled": cross-entropy on tokens sampled from the teacher's distribution at each position (``DRAWS`` per
  position): the paper's hard-label channel at token level, an unbiased estimate of the soft gradient whose noise
  does not shrink with eps;
- "sampled_cv": the same draws minus the student's own coupled draws at theta_0 (same uniforms, inverse CDF), a
  control variate with mean 0: still unbiased, with variance O(eps) instead of O(1). Its noise, O(sqrt(eps / n))
  for n draws, still shrinks more slowly than the signal O(eps), so a single check's sign is informative only once
  eps n is large. At small eps every coupled pair may agree: the estimate is then exactly 0 (reported as such:
  ``tokens_differing``), and its mean over batches and seeds is still the soft step's.

Each (eps, batch) draws fresh uniforms from its own seed. Geometry of -grad against dT, per eps and batch."""

from __future__ import annotations

import torch

from llm_bridge import lora, train
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import geometry
from llm_bridge.numbers import chat_prefix
from llm_bridge.roles import role_seed

KINDS = ("soft", "sampled", "sampled_cv")
DRAWS = 32  # sampled tokens per position: 32x less variance for the price of a gather


def uniforms(seed: int, i_eps: int, batch: int, n: int) -> torch.Tensor:
    """The (eps, batch) cell's n x DRAWS uniforms, from its own seed (no two cells share draws)."""
    gen = torch.Generator().manual_seed(role_seed(seed, "first_step") + 1000 * i_eps + batch)
    return torch.rand(n, DRAWS, generator=gen, dtype=torch.float64)


def first_step(lm, config: LLMConfig, seed: int, init: dict, teacher: dict, kept: list[dict]) -> dict:
    c = config
    dT = {k: (teacher[k] - init[k]).cpu().numpy() for k in init}
    bs, nb = c.first_step_batch_size, c.first_step_batches
    batches = [kept[i:i + bs] for i in range(0, min(len(kept), bs * nb), bs)]
    rows = []
    for i_eps, eps in enumerate(c.first_step_eps):
        for b, ex in enumerate(batches):
            pre = [chat_prefix(lm.tok, e["prompt"]) for e in ex]
            batch = train.encode(lm.tok, pre, [e["answer"].strip() for e in ex], lm.device)
            lm.load(lora.interpolate(init, teacher, eps))
            with torch.no_grad():
                target, _ = train.completion_logits(lm.model, batch)
            lm.load(init)
            with torch.no_grad():
                own, _ = train.completion_logits(lm.model, batch)
            u = uniforms(seed, i_eps, b, target.shape[0]).to(target.device)
            y_teacher, y_own = train.inverse_cdf_sample(target, u), train.inverse_cdf_sample(own, u)
            losses = {"soft": lambda: train.kl_to(lm.model, batch, target),
                      "sampled": lambda: train.sampled_token_loss(lm.model, batch, y_teacher),
                      "sampled_cv": lambda: train.sampled_token_loss(lm.model, batch, y_teacher, y_own)}
            for kind in KINDS:
                g = train.lora_gradient(lm.model, losses[kind]())
                step = {k: -v.cpu().numpy() for k, v in g.items()}
                rows.append({"eps": eps, "batch": b, "kind": kind, **geometry(step, dT),
                             "tokens_differing": int((y_teacher != y_own).sum()) if kind == "sampled_cv" else None})
    return {"rows": rows}
