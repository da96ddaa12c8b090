"""Training throughput and memory of the logit ladder's rungs against today's full-vocabulary SFT step, in one run:
LoRA step tokens/s (forward + backward + AdamW) and the peak RSS of each mode, each mode in its own fresh process
(so one mode's peak is not another's), alternated ``--rounds`` times; the median of each is reported.

Modes: ``sft`` (``train.sft_loss``: the pipeline's student step, all V logits at every position), ``full`` (the
full rung: bucketed KL, V logits at the completion positions only), ``digits`` (the digits rung: hidden states times
the 12 digit/separator rows of the output matrix). Targets: digits >= 1.3x the SFT tokens/s, <= 4 GB peak. The peak is
the steps' own (the kernel's peak-RSS mark is reset after loading, which peaks higher while the GGUF is dequantized).
Run: ``python -m benchmarks.ladder_throughput [--model smollm2|tiny] [--batch 8] [--steps 4] [--rounds 2]``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import typer

MODES = ("sft", "full", "digits")


def one(mode: str, model: str, batch: int, steps: int) -> dict:
    """Time ``steps`` LoRA steps of ``mode`` after one warm-up step, in this process."""
    import numpy as np
    import torch

    from llm_bridge import lora, rungs, train
    from llm_bridge.config import LLMConfig
    from llm_bridge.ladder import random_inputs
    from llm_bridge.models import load_base
    from llm_bridge.numbers import chat_prefix
    from results import peak_rss_mb

    cfg = LLMConfig.quick(model=model, device="cpu")
    base, tok, base_id = load_base(model, device="cpu")
    m = lora.attach_lora(base, cfg, seed=0)
    rows = random_inputs(batch * (steps + 1), seed=0)
    D = rungs.digit_token_ids(tok)
    W = rungs.output_matrix(m)
    params = list(lora.lora_parameters(m).values())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    m.train()
    rss_loaded = _reset_peak_rss()  # the steps' own peak, not the GGUF loading's (which is higher)
    tokens, t = 0, 0.0
    for s in range(steps + 1):
        chunk = rows[s * batch:(s + 1) * batch]
        b = train.encode(tok, [chat_prefix(tok, r["prompt"]) for r in chunk], [r["answer"] for r in chunk], "cpu")
        t0 = time.perf_counter()
        if mode == "sft":
            loss = train.sft_loss(m, b)
        else:
            h = rungs.completion_hidden(m, b)
            if mode == "full":
                n = h.shape[0]
                idx = np.tile(np.arange(64), (n, 1))
                lp = np.full((n, 64), np.log(0.5 / 64), np.float32)
                loss = rungs.bucketed_kl(h @ W.T, idx, lp, np.full(n, np.log(0.5), np.float32))
            else:
                loss = rungs.subset_kl(rungs.subset_logits(h, W, D), np.full((h.shape[0], len(D)),
                                                                            -np.log(len(D)), np.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s:
            t += time.perf_counter() - t0
            tokens += int(b["attention_mask"].sum())
    return {"mode": mode, "model": base_id, "batch": batch, "tokens_per_row": int(b["input_ids"].shape[1]),
            "seconds_per_step": t / steps, "tokens_per_s": tokens / t, "peak_rss_mb": _peak_rss_since_reset(),
            "rss_before_steps_mb": rss_loaded, "process_peak_rss_mb": peak_rss_mb(),
            "threads": torch.get_num_threads()}


def _status_mb(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux: clear_refs 5); returns the RSS now."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _peak_rss_since_reset() -> float:
    return _status_mb("VmHWM")


def main(model: str = "smollm2", batch: int = 8, steps: int = 4, rounds: int = 2,
         child: str = typer.Option("", hidden=True)):
    if child:
        print(json.dumps(one(child, model, batch, steps)))
        return
    from benchmarks.common import save_results

    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES:  # alternated, each in a fresh process
            out = subprocess.run([sys.executable, "-m", "benchmarks.ladder_throughput", "--model", model, "--batch",
                                  str(batch), "--steps", str(steps), "--child", mode], capture_output=True, text=True,
                                 check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[mode].append(res)
            print(f"round {r}: {mode:<6} {res['tokens_per_s']:7.0f} tokens/s, {res['seconds_per_step']:.2f} s/step, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB")
    med = {m: {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in v),
               "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in v)} for m, v in runs.items()}
    ratio = {m: med[m]["tokens_per_s"] / med["sft"]["tokens_per_s"] for m in MODES}
    for m in MODES:
        print(f"{m:<6} median {med[m]['tokens_per_s']:7.0f} tokens/s ({ratio[m]:.2f}x SFT), peak "
              f"{med[m]['peak_rss_mb'] / 1000:.2f} GB")
    print(f"digits rung vs SFT: {ratio['digits']:.2f}x tokens/s (target >= 1.3x), peak "
          f"{med['digits']['peak_rss_mb'] / 1000:.2f} GB (target <= 4 GB)")
    save_results("ladder_throughput", {"runs": runs, "median": med, "ratio_vs_sft": ratio,
                                       "targets": {"digits_speedup": 1.3, "digits_peak_gb": 4.0}})


if __name__ == "__main__":
    typer.run(main)
