"""Number-generation throughput, before and after, in one run on one machine: sequences/s and KEPT answers/s (the
paper's filter is the only gate) for the number prompts of llm_bridge, plus the filter's pass rate per prompt phrasing.

Settings compared (same prompts, same seed):
- before: free sampling, batch 32, transformers' dynamic KV cache, every row runs to EOS or the token limit;
- after: rows end as soon as the paper's filter can no longer keep them (``stop_rejected``), larger batch;
- after + static cache: the same with a preallocated KV cache;
- after, with a format example appended to every prompt (a candidate prompt change that raises the pass rate; the
  pipeline's prompts are unchanged);
- the digits-only constrained sampler (reported apart: it is not the paper's sampler).

Run: ``python -m benchmarks.llm_numbers [--model smollm2|tiny|ID] [--device auto] [--prompts 128]``."""

from __future__ import annotations

import time

import numpy as np
import torch
import typer

from benchmarks.common import peak_rss_mb, save_results
from llm_bridge import chat_prefix, load_base, number_prompts, paper_filter, sample
from results.cli import make_app

app = make_app(__doc__)

FORMAT_EXAMPLE = "Example of the expected answer: 412, 87, 903"


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


@app.command(help=__doc__)
def main(model: str = "smollm2", device: str = "auto", prompts_n: int = typer.Option(128, "--prompts"),
         tokens: int = 48, batch_before: int = 32, batch_after: int = 64, seed: int = 0):
    m, tok, base_id = load_base(model, device=device)
    dev = next(m.parameters()).device
    items = number_prompts(prompts_n, seed=seed)
    pre = [chat_prefix(tok, it["prompt"]) for it in items]
    pre_example = [chat_prefix(tok, it["prompt"] + " " + FORMAT_EXAMPLE) for it in items]
    print(f"{base_id} on {dev} ({torch.get_num_threads()} threads; "
          f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'}), {prompts_n} number prompts, "
          f"<= {tokens} new tokens, temperature 1")
    sample(m, tok, pre[:4], max_new_tokens=4, temperature=1.0, seed=seed, batch_size=4)  # warm-up
    settings = ((f"before: free, batch {batch_before}, dynamic cache, full length",
                 dict(batch_size=batch_before)),
                (f"after: free, batch {batch_after}, stop rejected rows",
                 dict(batch_size=batch_after, stop_rejected=True)),
                ("after + static KV cache", dict(batch_size=batch_after, stop_rejected=True, cache="static")),
                ("after, prompts + format example", dict(batch_size=batch_after, stop_rejected=True, example=True)),
                (f"constrained (digits-only), batch {batch_before}", dict(batch_size=batch_before, constrained=True)),
                (f"constrained (digits-only), batch {batch_after}", dict(batch_size=batch_after, constrained=True)))
    kept_by_phrasing: list = []
    out: dict = {"model": base_id, "prompts": prompts_n, "max_new_tokens": tokens, "settings": {}}
    for name, kw in settings:
        _sync(dev)
        t0 = time.perf_counter()
        prefixes = pre_example if kw.pop("example", False) else pre
        answers = sample(m, tok, prefixes, max_new_tokens=tokens, temperature=1.0, seed=seed, **kw)
        _sync(dev)
        dt = time.perf_counter() - t0
        kept = [paper_filter(a).kept for a in answers]
        print(f"{name:<48} {len(answers) / dt:7.2f} sequences/s  {sum(kept) / dt:7.3f} kept/s  "
              f"pass rate {np.mean(kept):6.1%}  ({dt:.1f} s)")
        out["settings"][name] = {"sequences_per_s": len(answers) / dt, "kept_per_s": sum(kept) / dt,
                                 "pass_rate": float(np.mean(kept)), "seconds": dt}
        if name.startswith(("before", "after: free")):  # two independent free samples of the pipeline's prompts
            kept_by_phrasing += list(zip(items, kept))
    print("paper-filter pass rate per phrasing part (free sampling, 'before' and 'after' runs pooled; "
          "index = phrasing variant):")
    for p, part in enumerate(("intro", "ask", "format", "tail")):
        by: dict[int, list[bool]] = {}
        for it, k in kept_by_phrasing:
            by.setdefault(it["phrasing"][p], []).append(k)
        print(f"  {part:<7}" + "  ".join(f"{v}: {np.mean(ks):5.1%} of {len(ks)}" for v, ks in sorted(by.items())))
        out.setdefault("pass_rate_by_phrasing", {})[part] = {str(v): float(np.mean(ks)) for v, ks in sorted(by.items())}
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    save_results("llm_numbers", out, torch=torch.__version__, device=str(dev), threads=torch.get_num_threads())


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.llm_numbers")
