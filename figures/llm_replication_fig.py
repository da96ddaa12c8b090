"""The replication of the LLM ladder's digit-only transfer (llm_bridge.replication): independent teachers, three
traits, full fine-tuning, the init, a dose-response for the diagnostic.

Compute = ``python -m llm_bridge replicate`` (its ``replication.json``), condensed here into
``figures/llm_replication_<settings>.json`` (per-question P matrices dropped; the summary kept); plot draws only from
that JSON. (a) per trait and rung, the LoRA students' rise of log P(trait) against the neutral control and against
the other traits' students, mean and 95% hierarchical CI over teachers; (b) the probe trait on the digits rung: LoRA
against full fine-tuning, another LoRA init and a perturbed base, each against a control trained its own way;
(c) the trait-specific projections (dS - dC on dT - dN and on dT - dO, and the matched dS - dS_O on dT - dO) per
trait and rung; (d) the dose-response: the projection against the rise over the control for the mixtures and the
student, one colour per teacher, with the within-arm Spearman r, pooled and within teachers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.common import FIGURES_DIR, load_json, replot_cli, save_figure, save_then_plot
from llm_bridge import RUNGS

KEEP = ("config", "fingerprint", "animals", "traits", "probe_trait", "summary", "base_model", "word_tokens",
        "timings")


def compute(replication_path) -> dict:
    r = load_json(replication_path)
    cells = [{k: c.get(k) for k in ("replicate", "rung", "seed", "teacher", "variant", "loss_first", "loss_last",
                                    "loss_last_quarter", "seconds")} for c in r["cells"]]
    return {**{k: r[k] for k in KEEP}, "cells": cells}


def _err(stat) -> list[float]:
    """Error-bar lengths below and above the mean (0 where the CI is undefined: one teacher)."""
    lo, hi = (np.nan if v is None else v for v in stat["ci95"])
    return [0.0 if np.isnan(lo) else stat["mean"] - lo, 0.0 if np.isnan(hi) else hi - stat["mean"]]


def _bars(ax, rows, labels, series, title, ylabel):
    """Grouped bars with CIs: ``series`` = [(legend, key into each row, colour)]."""
    width = 0.8 / len(series)
    for j, (name, key, color) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i, row in enumerate(rows) if row.get(key)]
        stats = [row[key] for row in rows if row.get(key)]
        if stats:
            ax.bar(xs, [s["mean"] for s in stats], width, color=color, label=name,
                   yerr=np.array([_err(s) for s in stats]).T, capsize=3)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=7)


def plot(data: dict, path) -> Path:
    import matplotlib.pyplot as plt

    s, traits, P = data["summary"], data["traits"], data["probe_trait"]
    by = s["by_arm"]
    rungs = ["digits"] + [r for r in RUNGS if r != "digits" and any(k.startswith(f"{r}/lora/") for k in by)]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    pairs = [(r, t) for r in rungs for t in traits if f"{r}/lora/{t}" in by]
    rows = [by[f"{r}/lora/{t}"] for r, t in pairs]
    labels = [f"{t}\n{r}" for r, t in pairs]
    _bars(axes[0, 0], rows, labels, [("vs neutral control", "log_ratio_vs_neutral", "C0"),
                                     ("vs the other traits' students", "log_ratio_vs_other_traits", "C1"),
                                     ("rise over the median other animal", "rise_over_median_animal", "C2")],
          "(a) LoRA students: rise of log P(trait) (95% CI over teachers, then students)", "log ratio")
    variants = [v for v in ("lora", "fullft", "newinit") if f"digits/{v}/{P}" in by]
    variants += sorted({k.split("/")[1] for k in by if k.startswith("digits/perturbed") and k.endswith(f"/{P}")})
    _bars(axes[0, 1], [by[f"digits/{v}/{P}"] for v in variants], variants,
          [("vs its own neutral control", "log_ratio_vs_neutral", "C0"),
           ("rise over the median other animal", "rise_over_median_animal", "C2")],
          f"(b) {P} on digits: LoRA, full fine-tuning, another init, a perturbed base", "log ratio")
    _bars(axes[1, 0], rows, labels, [("dS - dC on dT - dN", "proj_vs_neutral_dW", "C0"),
                                     ("dS - dC on dT - dO", "proj_vs_other_dW", "C1"),
                                     ("matched: dS - dS_O on dT - dO", "proj_matched_dW", "C3")],
          "(c) trait-specific projections (dW space)", "projection")
    ax = axes[1, 1]
    d = s["dose"]
    for rep in sorted({p["replicate"] for p in d.get("points", [])}):
        pts = [p for p in d["points"] if p["replicate"] == rep]
        ax.scatter([p["proj"] for p in pts], [p["delta_log_p"] for p in pts], color=f"C{rep}", label=f"teacher {rep}")
        for p in pts:
            ax.annotate(f"{p['alpha']:g}", (p["proj"], p["delta_log_p"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    r_txt = ""
    if "spearman_r" in d:
        lo, hi = d["ci95"]
        r_txt = f"\nSpearman r {d['spearman_r']:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else "")
        if d.get("within_teacher"):
            w = d["within_teacher"]
            r_txt += f"; within teachers {w['within_r']:+.2f} (permutation p {w['p_one_sided']:.3f})"
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set(xlabel="trait-specific projection on dT - dN (dW space)", ylabel=f"log P({P}) - control's",
           title=f"(d) dose: students of alpha-mixtures of the {P} and neutral targets (labels: alpha){r_txt}")
    if d.get("points"):
        ax.legend(fontsize=7)
    n_teachers = len(data["config"]["teachers"])
    fig.suptitle(f"Replication of the digit-only transfer on {data['base_model'].split(':')[0]}: {n_teachers} "
                 f"teacher(s) per trait ({', '.join(traits)})", fontsize=11)
    return save_figure(fig, path)


def main(replication_path, out_dir=FIGURES_DIR, *, name: str) -> tuple[Path, Path]:
    data = compute(replication_path)
    stem = Path(out_dir) / name
    jp, png, _ = save_then_plot(data, stem.with_suffix(".json"), stem.with_suffix(".png"), plot)
    return jp, png


if __name__ == "__main__":
    replot_cli(plot, "figures.llm_replication_fig")
