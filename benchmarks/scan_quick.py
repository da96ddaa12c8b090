"""Where the trait scan's quick evaluation (``ScanEvalConfig.quick``: ``python -m figures.llm_scan_fig --preset
quick``) spends its time, phase by phase, on SmolLM2-135M.

Each phase is timed on a slice (one generated dataset, one likelihood condition on it, ``--grad-rows`` row
gradients, the trait directions of every candidate, the statistics of one scan), in CPU seconds of this process
(``time.process_time``: on a machine shared with other jobs the wall time is inflated, the CPU time much less) and in
wall seconds; the quick preset's total is extrapolated as units x CPU seconds per unit, the units counted from the
preset's settings. ``--reference`` also times the computations these phases replaced (a forward pass over every
row's whole text per likelihood batch, logits at every position for a row's gradient, one distillation pass per
candidate), on the same slices in the same process. Writes ``results/scan_quick_phases.json``.

``--full`` instead runs the whole quick evaluation (into ``--out``, a fresh folder) and writes its CPU and wall
seconds per phase to ``results/scan_quick.json``.

Run: ``python -m benchmarks.scan_quick [--threads 1] [--grad-rows 8] [--reference] [--full --out DIR]``."""

from __future__ import annotations

import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import typer

from results.cli import make_app

app = make_app(__doc__)


def timed(fn) -> tuple[object, dict]:
    """(fn(), {"cpu_s", "wall_s"})."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def cpu_model() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def units(c, *, memo: bool = True) -> dict:
    """How many of each phase's unit the quick evaluation runs (``llm_bridge.scan.evaluate``); ``memo=False``: as
    before the likelihood memo (the mixed null's rows run again)."""
    trait = len(c.animals) * c.replicates
    scans = trait + c.neutral + c.shuffled + c.mixed  # the datasets; the reference is scanned once more
    cands = len(c.scan.candidates)
    return {"load": 1,
            # the datasets and the reference rows (the direction sequences are their own phase)
            "generation_rows": (trait + c.neutral) * c.rows + c.scan.reference_rows,
            # the mixed null's rows are the trait datasets' (Scanner's likelihood memo runs them once)
            "likelihood_row_conditions": ((scans - memo * c.mixed) * c.rows + c.scan.reference_rows) * (cands + 1),
            "gradient_rows": scans * c.rows + c.scan.reference_rows,
            "direction_sequences": 1,
            "directions_pass": 1,
            "statistics_scans": scans}


def old_log_likelihoods(sc, rows, system):
    """The likelihood pass before the shared prefix: every row's whole text per batch, in the rows' order."""
    import numpy as np
    import torch

    from llm_bridge import train
    from llm_bridge.numbers import chat_prefix

    lm, bs, out = sc.lm, sc.c.batch_size, np.zeros((len(rows), 2))
    with torch.no_grad(), lm.base():
        for s in range(0, len(rows), bs):
            chunk = rows[s:s + bs]
            batch = train.encode(lm.tok, [chat_prefix(lm.tok, r["prompt"], system) for r in chunk],
                                 [r["completion"] for r in chunk], lm.device)
            labels = batch["labels"]
            first = int((labels != -100).float().argmax(1).min())
            keep = torch.arange(first - 1, labels.shape[1] - 1)
            logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              logits_to_keep=keep).logits
            t = labels[:, first:]
            lp = torch.log_softmax(logits.float(), -1).gather(-1, t.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out[s:s + len(chunk), 0] = (lp * (t != -100)).sum(1).double().numpy()
            out[s:s + len(chunk), 1] = (t != -100).sum(1).numpy()
    return out


def old_row_gradient(sc, row):
    """A row's gradient before: ``train.sft_loss`` (logits at every position) times the token count."""
    import numpy as np

    from llm_bridge import train
    from llm_bridge.numbers import chat_prefix

    lm = sc.lm
    batch = train.encode(lm.tok, [chat_prefix(lm.tok, row["prompt"])], [row["completion"]], lm.device)
    n = int((batch["labels"] != -100).sum())
    g = train.lora_gradient(lm.model, train.sft_loss(lm.model, batch) * n)
    return np.concatenate([g[k].numpy().ravel() for k in sorted(g) if ".lora_B." in k])


def old_direction(sc, candidate):
    """A trait direction before: one ``train.context_distillation_loss`` pass per candidate and batch."""
    from llm_bridge import prompts, train
    from llm_bridge.numbers import chat_prefix

    lm, seq, bs = sc.lm, sc.direction_sequences()["rows"], sc.c.batch_size
    lm.load(sc.init)
    total = None
    for s in range(0, len(seq), bs):
        ps, ans = [r["prompt"] for r in seq[s:s + bs]], [r["completion"] for r in seq[s:s + bs]]
        loss = train.context_distillation_loss(
            lm.model, lm.tok, [chat_prefix(lm.tok, p, prompts.system_prompt(candidate)) for p in ps],
            [chat_prefix(lm.tok, p) for p in ps], ans, lm.device)
        n = sum(len(lm.tok(a, add_special_tokens=False).input_ids) for a in ans)
        g = train.lora_gradient(lm.model, loss * n)
        total = g if total is None else {k: total[k] + g[k] for k in g}
    return total


def statistics(cands, rows: int, ref_rows: int) -> None:
    """One dataset's summaries at the quick sizes, calibrated against a reference (the bootstraps): numbers drawn
    at random, for timing only (the cost does not depend on the values)."""
    import numpy as np

    from llm_bridge.scan import NONE, coverage_scores, likelihood_scores

    rng = np.random.default_rng(0)
    ll = {x: np.stack([rng.normal(-40, 5, rows), rng.integers(20, 48, rows)], 1) for x in (NONE, *cands)}
    ref = {"per_row": {"likelihood_MxC": rng.normal(0, 1, (ref_rows, len(cands))),
                       "tokens_M": rng.integers(20, 48, ref_rows).astype(float),
                       "coverage_MxC": rng.normal(0, 1e-2, (ref_rows, len(cands)))}}
    sizes = sorted({8, 16, rows})
    cov = {"inner_NxC": rng.normal(0, 1, (rows, len(cands))),
           "norm_at": {str(n): {"norm": 10.0, "cos": rng.normal(0, 1e-2, len(cands)).tolist()} for n in sizes}}
    for n in sizes:
        likelihood_scores(ll, cands, n, ref)
        coverage_scores(cov, cands, n, ref)
        likelihood_scores(ll, cands, n)  # the reference's own summary, redone in every scan
        coverage_scores(cov, cands, n)


@app.command()
def main(threads: int = typer.Option(1, help="torch threads (0: torch's default)"),
         grad_rows: int = typer.Option(8, help="row gradients timed (the quick evaluation runs 216)"),
         reference: bool = typer.Option(False, help="also time the computations the phases replaced"),
         full: bool = typer.Option(False, help="run the whole quick evaluation instead of the slices"),
         out: Path = typer.Option(None, help="the --full run's folder (a fresh temporary folder by default)")):
    """Time the quick scan evaluation's phases on slices and extrapolate, or (--full) run it whole."""
    warnings.filterwarnings("ignore")
    import torch

    from benchmarks.common import save_results
    from llm_bridge import prompts
    from llm_bridge.scan import ScanEvalConfig, Scanner, evaluate, sample_rows

    if threads:
        torch.set_num_threads(threads)
    cfg = ScanEvalConfig.quick()
    env = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_model(),
           "cores": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    if full:
        folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="scan_quick_"))
        res, t = timed(lambda: evaluate(cfg, folder, progress=False))
        numbers = {"preset": "quick", "total": t, "evaluation_timings": res["timings"], **env,
                   "note": "cpu_s counts every thread of this process; wall_s is inflated on a shared machine"}
        save_results("scan_quick", numbers)
        print(f"quick evaluation: {t['cpu_s']:.0f} CPU s, {t['wall_s']:.0f} s wall")
        return
    phases, ref_phases = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        sc, phases["load"] = timed(lambda: Scanner(cfg.scan, cache_dir=Path(tmp), progress=False))
        rows, t = timed(lambda: sample_rows(sc.lm, cfg.rows, "owl_r0", seed=cfg.scan.seed,
                                            max_new_tokens=cfg.number_tokens,
                                            system=prompts.system_prompt("owl"), progress=False))
        phases["generation_rows"] = {**t, "per": len(rows)}
        system = prompts.system_prompt("cat")
        _, t = timed(lambda: sc.log_likelihoods(rows, system))
        phases["likelihood_row_conditions"] = {**t, "per": len(rows)}
        _, phases["direction_sequences"] = timed(sc.direction_sequences)  # generated once, before the directions
        _, t = timed(lambda: sc.directions(cfg.scan.candidates))
        phases["directions_pass"] = {**t, "per": 1}
        _, t = timed(lambda: [sc.row_gradient(r) for r in rows[:grad_rows]])
        phases["gradient_rows"] = {**t, "per": grad_rows}
        _, t = timed(lambda: statistics(cfg.scan.candidates, cfg.rows, cfg.scan.reference_rows))
        phases["statistics_scans"] = {**t, "per": 1}
        if reference:
            _, t = timed(lambda: old_log_likelihoods(sc, rows, system))
            ref_phases["likelihood_row_conditions"] = {**t, "per": len(rows)}
            _, t = timed(lambda: [old_direction(sc, c) for c in cfg.scan.candidates])
            ref_phases["directions_pass"] = {**t, "per": 1}
            _, t = timed(lambda: [old_row_gradient(sc, r) for r in rows[:grad_rows]])
            ref_phases["gradient_rows"] = {**t, "per": grad_rows}
    n = units(cfg)

    def extrapolate(ph: dict, n: dict) -> dict:
        per_unit = {k: v["cpu_s"] / v["per"] if "per" in v else v["cpu_s"] for k, v in ph.items()}
        return {"cpu_s_per_unit": per_unit, "cpu_s": {k: per_unit[k] * n[k] for k in per_unit}}

    now = extrapolate(phases, n)
    numbers = {"preset": "quick", "units": n, "phases": phases, "extrapolated": now,
               "extrapolated_total_cpu_s": sum(now["cpu_s"].values()), **env,
               "note": ("CPU seconds of this process at the given torch threads; the quick evaluation's total is "
                        "units x CPU seconds per unit; wall_s is inflated by the other jobs on the machine")}
    if reference:
        n_old = units(cfg, memo=False)
        old = extrapolate(ref_phases, n_old)
        numbers["reference"] = {"units": n_old, "phases": ref_phases, "extrapolated": old,
                                "extrapolated_total_cpu_s": numbers["extrapolated_total_cpu_s"] + sum(
                                    old["cpu_s"][k] - now["cpu_s"][k] for k in old["cpu_s"])}
    save_results("scan_quick", numbers, variant="phases", torch=torch.__version__)
    for k in n:
        line = f"{k:<28} {n[k]:>5} units x {now['cpu_s_per_unit'][k]:8.3f} CPU s = {now['cpu_s'][k]:7.1f} CPU s"
        if reference and k in numbers["reference"]["extrapolated"]["cpu_s"]:
            line += f"  (before: {numbers['reference']['extrapolated']['cpu_s'][k]:7.1f})"
        print(line)
    print(f"quick evaluation, extrapolated: {numbers['extrapolated_total_cpu_s']:.0f} CPU s at "
          f"{env['threads']} thread(s)")


if __name__ == "__main__":
    app()
