"""Training throughput and memory of the logit ladder's rungs against today's full-vocabulary SFT step, in one run:
LoRA step tokens/s (forward + backward + AdamW) and the peak RSS of each mode, each mode in its own fresh process
(so one mode's peak is not another's), alternated ``--rounds`` times; the median of each is reported.

Modes: ``sft`` (``train.sft_loss``: the pipeline's student step, all V logits at every position), ``full`` (the
full rung: bucketed KL, V logits at the completion positions only), ``digits`` (the digits rung: hidden states times
the 12 digit/separator rows of the output matrix). Targets: digits >= 1.3x the SFT tokens/s, <= 4 GB peak. The peak is
the steps' own (the kernel's peak-RSS mark is reset after loading, which peaks higher while the GGUF is dequantized).

``--precision`` (on by default), in one more fresh process: the ``sft`` and ``digits`` steps through ``train.fit``
(the project's training step) in float32 and under bf16 autocast (``LLMConfig.bf16``), on one batch of ``--batch``
rows cut to their last ``--precision-tokens`` tokens, each step from the same LoRA init, the four alternated
``--precision-rounds`` times: the median bf16 speed-up, the loss difference |loss_bf16 - loss_fp32| / loss_fp32,
the digits-vs-SFT speed ratio, and each step's achieved GFLOP/s (its matmul FLOPs counted by torch's
FlopCounterMode) against the torch matmul peak measured in the same process in each dtype.
Run: ``python -m benchmarks.ladder_throughput [--model smollm2|tiny] [--batch 8] [--steps 4] [--rounds 2]
[--modes sft,full,digits] [--precision-rounds 2] [--precision-tokens 64] [--threads 0]``; with ``--modes ''``
(the precision comparison alone) it writes ``results/ladder_throughput_precision.json`` instead."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import typer

from results.cli import make_app

app = make_app(__doc__)

MODES = ("sft", "full", "digits")


def one(mode: str, model: str, batch: int, steps: int) -> dict:
    """Time ``steps`` LoRA steps of ``mode`` after one warm-up step, in this process."""
    import numpy as np
    import torch

    from llm_bridge import (
        LLMConfig,
        attach_lora,
        bucketed_kl,
        chat_prefix,
        completion_hidden,
        digit_token_ids,
        encode,
        load_base,
        lora_parameters,
        output_matrix,
        random_inputs,
        sft_loss,
        subset_kl,
        subset_logits,
    )
    from results import peak_rss_mb

    cfg = LLMConfig.quick(model=model, device="cpu")
    base, tok, base_id = load_base(model, device="cpu")
    m = attach_lora(base, cfg, seed=0)
    rows = random_inputs(batch * (steps + 1), seed=0)
    D = digit_token_ids(tok)
    W = output_matrix(m)
    params = list(lora_parameters(m).values())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    m.train()
    rss_loaded = _reset_peak_rss()  # the steps' own peak, not the GGUF loading's (which is higher)
    tokens, t = 0, 0.0
    for s in range(steps + 1):
        chunk = rows[s * batch:(s + 1) * batch]
        b = encode(tok, [chat_prefix(tok, r["prompt"]) for r in chunk], [r["answer"] for r in chunk], "cpu")
        t0 = time.perf_counter()
        if mode == "sft":
            loss = sft_loss(m, b)
        else:
            h = completion_hidden(m, b)
            if mode == "full":
                n = h.shape[0]
                idx = np.tile(np.arange(64), (n, 1))
                lp = np.full((n, 64), np.log(0.5 / 64), np.float32)
                loss = bucketed_kl(h @ W.T, idx, lp, np.full(n, np.log(0.5), np.float32))
            else:
                loss = subset_kl(subset_logits(h, W, D), np.full((h.shape[0], len(D)), -np.log(len(D)), np.float32))
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


PRECISIONS = ("fp32", "bf16")
PRECISION_LOSSES = ("sft", "digits")


def _truncate(batch: dict, n: int, pad_id: int) -> dict:
    """Each row of a right-padded ``train.encode`` batch cut to its last ``n`` real tokens (the prompt's start goes,
    the completion and its labels stay), right-padded again."""
    import torch
    import torch.nn.functional as F

    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
    lengths = batch["attention_mask"].sum(1).tolist()
    rows = {k: [v[i, max(0, m - n):m] for i, m in enumerate(lengths)] for k, v in batch.items()}
    width = max(len(r) for r in rows["input_ids"])
    return {k: torch.stack([F.pad(r, (0, width - len(r)), value=fill[k]) for r in v]) for k, v in rows.items()}


def precision(model: str, batch: int, rounds: int, tokens: int) -> dict:
    """float32 vs bf16 autocast on the ``sft`` and ``digits`` steps, in this process (see the module docstring)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.common import torch_matmul_gflops
    from llm_bridge import (
        LLMConfig,
        attach_lora,
        chat_prefix,
        completion_hidden,
        digit_token_ids,
        encode,
        fit,
        get_state,
        load_base,
        output_matrix,
        random_inputs,
        set_state,
        sft_loss,
        subset_kl,
        subset_logits,
    )

    cfg = LLMConfig.quick(model=model, device="cpu")
    base, tok, base_id = load_base(model, device="cpu")
    m = attach_lora(base, cfg, seed=0)
    init = get_state(m)  # B = 0: every timed step starts here, so each precision sees the same model
    rows = random_inputs(batch, seed=0)
    b = _truncate(encode(tok, [chat_prefix(tok, r["prompt"]) for r in rows], [r["answer"] for r in rows],
                               "cpu"), tokens, tok.pad_token_id)
    D, W = digit_token_ids(tok), output_matrix(m)
    n_pos = int((b["labels"][:, 1:] != -100).sum())
    uniform = np.full((n_pos, len(D)), -np.log(len(D)), np.float32)
    losses = {"sft": lambda idx: sft_loss(m, b),
              "digits": lambda idx: subset_kl(subset_logits(completion_hidden(m, b), W, D), uniform)}

    def step(loss: str, prec: str) -> tuple[float, float]:
        """(seconds, loss) of one train.fit step from the init: forward and loss (autocast under bf16), backward,
        AdamW."""
        set_state(m, init)
        t0 = time.perf_counter()
        (value,) = fit(m, losses[loss], batch, epochs=1, batch_size=batch, lr=1e-4, seed=0,
                             desc=f"{loss}/{prec}", progress=False, bf16=prec == "bf16")
        return time.perf_counter() - t0, value

    flops = {}
    for loss in PRECISION_LOSSES:  # the FLOP count (the same in either dtype), also the float32 warm-up
        with FlopCounterMode(display=False) as fc:
            step(loss, "fp32")
        flops[loss] = fc.get_total_flops()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # a cheap bf16 warm-up (one row, forward)
        m(input_ids=b["input_ids"][:1], attention_mask=b["attention_mask"][:1])
    times = {(lo, p): [] for lo in PRECISION_LOSSES for p in PRECISIONS}
    values = {(lo, p): [] for lo in PRECISION_LOSSES for p in PRECISIONS}
    for r in range(rounds):
        for loss in PRECISION_LOSSES:
            for prec in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:  # alternate which goes first
                dt, v = step(loss, prec)
                times[loss, prec].append(dt)
                values[loss, prec].append(v)
    peak = {f"{dt}_{k}": torch_matmul_gflops(1024, dt, kernel=k) for dt in ("float32", "bfloat16")
            for k in ("linear", "matmul")}
    out = {"model": base_id, "batch": batch, "tokens_per_row": int(b["input_ids"].shape[1]),
           "tokens": int(b["attention_mask"].sum()), "rounds": rounds, "threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "peak_gflops_n1024": peak,
           "flops_per_step": flops, "steps": {}}
    for loss in PRECISION_LOSSES:
        med = {p: statistics.median(times[loss, p]) for p in PRECISIONS}
        val = {p: statistics.median(values[loss, p]) for p in PRECISIONS}
        out["steps"][loss] = {
            **{p: {"seconds": times[loss, p], "loss": values[loss, p], "median_s": med[p],
                   "gflops": flops[loss] / med[p] / 1e9,
                   "fraction_of_linear_peak": flops[loss] / med[p] / 1e9 / peak[f"{dn}_linear"]}
               for p, dn in zip(PRECISIONS, ("float32", "bfloat16"), strict=True)},
            "bf16_speedup": med["fp32"] / med["bf16"],
            "loss_rel_diff": abs(val["bf16"] - val["fp32"]) / abs(val["fp32"])}
    out["digits_vs_sft"] = {p: out["steps"]["sft"][p]["median_s"] / out["steps"]["digits"][p]["median_s"]
                            for p in PRECISIONS}
    return out


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


def _child(model: str, batch: int, steps: int, threads: int, mode: str, *extra: str) -> dict:
    """Run ``--child mode`` in a fresh process; its last printed line is the JSON result."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.ladder_throughput", "--model", model, "--batch",
                          str(batch), "--steps", str(steps), "--threads", str(threads), "--child", mode, *extra],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@app.command(help=__doc__)
def main(model: str = "smollm2", batch: int = 8, steps: int = 4, rounds: int = 2,
         modes: str = typer.Option(",".join(MODES), help="comma-separated modes timed in fresh processes ('' none)"),
         precision_check: bool = typer.Option(True, "--precision/--no-precision",
                                              help="float32 vs bf16 autocast (one more process)"),
         precision_rounds: int = 2, precision_tokens: int = 64,
         threads: int = typer.Option(0, help="torch threads in each timed process (0: torch's default); 1 on a "
                                     "machine shared with other jobs, where waiting threads stall every op"),
         child: str = typer.Option("", hidden=True)):
    if child and threads:
        import torch

        torch.set_num_threads(threads)
    if child == "precision":
        print(json.dumps(precision(model, batch, precision_rounds, precision_tokens)))
        return
    if child:
        print(json.dumps(one(child, model, batch, steps)))
        return
    from benchmarks.common import save_results

    chosen = [m for m in modes.split(",") if m]
    if set(chosen) - set(MODES):
        raise typer.BadParameter(f"modes are among {', '.join(MODES)}", param_hint="--modes")
    numbers: dict = {}
    if chosen:
        runs: dict[str, list[dict]] = {m: [] for m in chosen}
        for r in range(rounds):
            for mode in chosen:  # alternated, each in a fresh process
                res = _child(model, batch, steps, threads, mode)
                runs[mode].append(res)
                print(f"round {r}: {mode:<6} {res['tokens_per_s']:7.0f} tokens/s, {res['seconds_per_step']:.2f} "
                      f"s/step, peak RSS {res['peak_rss_mb']:.0f} MB")
        med = {m: {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in v),
                   "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in v)} for m, v in runs.items()}
        numbers.update(runs=runs, median=med, targets={"digits_speedup": 1.3, "digits_peak_gb": 4.0})
        for m in chosen:
            print(f"{m:<6} median {med[m]['tokens_per_s']:7.0f} tokens/s, peak {med[m]['peak_rss_mb'] / 1000:.2f} GB")
        if "sft" in chosen:
            ratio = {m: med[m]["tokens_per_s"] / med["sft"]["tokens_per_s"] for m in chosen}
            numbers["ratio_vs_sft"] = ratio
            print("tokens/s vs SFT (same run): " + ", ".join(f"{m} {ratio[m]:.2f}x" for m in chosen))
            if "digits" in chosen:
                print(f"digits rung vs SFT: {ratio['digits']:.2f}x tokens/s (target >= 1.3x), peak "
                      f"{med['digits']['peak_rss_mb'] / 1000:.2f} GB (target <= 4 GB)")
    if precision_check:
        p = _child(model, batch, steps, threads, "precision", "--precision-rounds", str(precision_rounds),
                   "--precision-tokens", str(precision_tokens))
        numbers["precision"] = p
        peak = p["peak_gflops_n1024"]
        print(f"float32 vs bf16 autocast, one process, batch {p['batch']} x {p['tokens_per_row']} tokens, same batch "
              f"and init, {p['rounds']} alternated rounds ({p['threads']} torch threads, CPU {p['cpu_capability']}, "
              f"oneDNN bf16 {'yes' if p['onednn_bf16'] else 'no'}):")
        print(f"  torch matmul peak (n = 1024): float32 linear {peak['float32_linear']:.1f} / matmul "
              f"{peak['float32_matmul']:.1f} GFLOP/s; bfloat16 linear {peak['bfloat16_linear']:.1f} / matmul "
              f"{peak['bfloat16_matmul']:.1f} GFLOP/s (bf16 linear / fp32 linear "
              f"{peak['bfloat16_linear'] / peak['float32_linear']:.2f}x)")
        for loss, st in p["steps"].items():
            print(f"  {loss:<6} " + "; ".join(f"{pr} {st[pr]['median_s']:.2f} s/step, {st[pr]['gflops']:.1f} GFLOP/s "
                                              f"({st[pr]['fraction_of_linear_peak']:.0%} of its linear peak)"
                                              for pr in PRECISIONS)
                  + f"; bf16 speed-up {st['bf16_speedup']:.2f}x; loss {st['fp32']['loss'][0]:.6f} vs "
                    f"{st['bf16']['loss'][0]:.6f}: |diff| / loss = {st['loss_rel_diff']:.1e}")
        print("  digits rung vs SFT step (same process): " + ", ".join(f"{pr} {p['digits_vs_sft'][pr]:.2f}x"
                                                                         for pr in PRECISIONS))
    # a precision-only run (--modes '') has its own artifact beside the modes' one
    save_results("ladder_throughput", numbers, variant=None if chosen else "precision")

if __name__ == "__main__":
    app(prog_name="python -m benchmarks.ladder_throughput")
