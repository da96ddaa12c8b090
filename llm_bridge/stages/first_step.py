"""Stage 4b, Theorem 1's first step (paper Section 6): the teacher at theta_0 + eps dT (LoRA space); one student
gradient step at theta_0 on (a) the teacher's full next-token distributions on the teacher's kept number answers (the
theorem's setting, "soft"), (b) answers sampled from that teacher ("sampled", the paper's practice). Geometry of
-grad against dT, per eps and batch."""

from __future__ import annotations

import torch

from llm_bridge import lora, train
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import geometry
from llm_bridge.numbers import chat_prefix, sample
from llm_bridge.roles import role_seed


def first_step(lm, config: LLMConfig, seed: int, init: dict, teacher: dict, kept: list[dict]) -> dict:
    c = config
    dT = {k: (teacher[k] - init[k]).cpu().numpy() for k in init}
    bs, nb = c.first_step_batch_size, c.first_step_batches
    batches = [kept[i:i + bs] for i in range(0, min(len(kept), bs * nb), bs)]
    rows = []
    for eps in c.first_step_eps:
        for b, ex in enumerate(batches):
            pre = [chat_prefix(lm.tok, e["prompt"]) for e in ex]
            batch = train.encode(lm.tok, pre, [e["answer"].strip() for e in ex], lm.device)
            lm.load(lora.interpolate(init, teacher, eps))
            with torch.no_grad():
                target, _ = train.completion_logits(lm.model, batch)
            samples = sample(lm.model, lm.tok, pre, max_new_tokens=c.number_tokens, temperature=c.temperature,
                             seed=role_seed(seed, "first_step") + b, batch_size=len(pre),
                             constrained=c.sampler == "constrained")
            lm.load(init)
            losses = {"soft": lambda: train.kl_to(lm.model, batch, target),
                      "sampled": lambda: train.completion_sft_loss(lm.model, lm.tok, pre, [s.strip() for s in samples],
                                                                   lm.device)}
            for kind, loss in losses.items():
                g = train.lora_gradient(lm.model, loss())
                step = {k: -v.cpu().numpy() for k, v in g.items()}
                rows.append({"eps": eps, "batch": b, "kind": kind, **geometry(step, dT)})
    return {"rows": rows}
