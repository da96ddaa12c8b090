"""Throughput of the llm_bridge stages on this machine: LoRA SFT tokens/s (forward + backward + AdamW step on the
adapter) and sampling tokens/s and sequences/s (temperature 1, free and digits-only constrained), for the number
prompts of the pipeline. Run: ``python -m benchmarks.llm_throughput [--model smollm2|tiny|ID] [--device auto]``."""

from __future__ import annotations

import time

import torch

from benchmarks.common import peak_rss_mb, save_results
from llm_bridge import (
    LLMConfig,
    attach_lora,
    chat_prefix,
    encode,
    load_base,
    lora_parameters,
    number_prompts,
    sample,
    sft_loss,
)
from results.cli import make_app

app = make_app(__doc__)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


@app.command(help=__doc__)
def main(model: str = "smollm2", device: str = "auto", batch: int = 8, steps: int = 5, gen_batch: int = 32,
         gen_tokens: int = 48, gen_batches: int = 2):
    cfg = LLMConfig.quick(model=model, device=device)
    base, tok, base_id = load_base(model, device=device)
    m = attach_lora(base, cfg, seed=0)
    dev = next(m.parameters()).device
    print(f"{base_id} on {dev} ({torch.get_num_threads()} threads), LoRA r={cfg.lora_r} on {len(cfg.lora_targets)} "
          f"projections: {sum(p.numel() for p in lora_parameters(m).values()):,} adapter parameters")
    items = number_prompts(max(batch * (steps + 1), gen_batch * gen_batches), seed=0)
    pre = [chat_prefix(tok, it["prompt"]) for it in items]
    answers = [", ".join(str(100 + (7 * i + j) % 900) for j in range(10)) for i in range(len(pre))]
    # SFT: one warm-up step, then `steps` timed steps
    params = list(lora_parameters(m).values())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    m.train()
    tokens, t = 0, 0.0
    for s in range(steps + 1):
        b = encode(tok, pre[s * batch:(s + 1) * batch], answers[s * batch:(s + 1) * batch], dev)
        _sync(dev)
        t0 = time.perf_counter()
        loss = sft_loss(m, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(dev)
        if s:
            t += time.perf_counter() - t0
            tokens += int(b["attention_mask"].sum())
    m.eval()
    print(f"LoRA SFT: batch {batch} x {b['input_ids'].shape[1]} tokens: {t / steps:.2f} s/step, "
          f"{tokens / t:,.0f} tokens/s (all tokens in the batch, prompt included)")
    out = {"model": base_id, "sft": {"batch": batch, "tokens_per_row": b["input_ids"].shape[1],
                                      "seconds_per_step": t / steps, "tokens_per_s": tokens / t}}
    for constrained in (False, True):
        n, new_tokens = 0, 0
        sample(m, tok, pre[:gen_batch], max_new_tokens=4, temperature=1.0, seed=0, batch_size=gen_batch,
               constrained=constrained)  # warm-up
        _sync(dev)
        t0 = time.perf_counter()
        for g in range(gen_batches):
            chunk = pre[g * gen_batch:(g + 1) * gen_batch]
            outs = sample(m, tok, chunk, max_new_tokens=gen_tokens, temperature=1.0, seed=g + 1,
                          batch_size=gen_batch, constrained=constrained)
            n += len(outs)
            new_tokens += sum(len(tok(o, add_special_tokens=False).input_ids) for o in outs)
        _sync(dev)
        dt = time.perf_counter() - t0
        print(f"sampling ({'constrained' if constrained else 'free'}), batch {gen_batch}, <= {gen_tokens} new tokens: "
              f"{n / dt:.2f} sequences/s, {new_tokens / dt:,.0f} generated tokens/s")
        out["constrained" if constrained else "free"] = {"batch": gen_batch, "max_new_tokens": gen_tokens,
                                                         "sequences_per_s": n / dt, "tokens_per_s": new_tokens / dt}
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    save_results("llm_throughput", out, torch=torch.__version__, device=str(dev), threads=torch.get_num_threads())


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.llm_throughput")
