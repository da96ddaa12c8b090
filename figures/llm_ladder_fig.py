"""The LLM logit ladder (llm_bridge.ladder): does the diagnostic track a real transfer in an LLM?

Compute = ``python -m llm_bridge ladder`` (its ``ladder.json``), condensed here into ``figures/llm_ladder_<settings>
.json`` (per-question P matrices dropped, per-cell trait probabilities kept); plot draws only from that JSON.
(a) log P(trait) of each arm minus the neutral control's, per rung, mean and 95% CI over seeds; (b) -log P(trait)
along the student's steps (shared by rung: the MNIST L_T panel's analogue); (c) the trait-specific projection of
dS - dC on dT - dN per rung and arm (dW space); (d) the scatter of (c) against (a) over rungs x arms x seeds, with
Spearman's r, pooled and per rung; (e) and (f) the student arm's trait-specific projection per layer and per module
type, per rung: where in the network the trait-specific part of the update sits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.common import FIGURES_DIR, load_json, replot_cli, save_figure, save_then_plot
from llm_bridge import RUNGS

COLORS = {"student": "C0", "control": "0.5", "other": "C1", "mismatched": "C7", "shuffle_within": "C8",
          "shuffle_across": "C9"}
MARKERS = {"full": "o", "no-trait-words": "s", "digits": "^", "sampled": "D"}


def compute(ladder_path) -> dict:
    r = load_json(ladder_path)
    ti = r["animals"].index(r["trait"])
    cells = [{k: c[k] for k in ("inputs", "rung", "arm", "seed", "curve", "steps", "loss_first", "loss_last",
                                "seconds")}
             | {"p_trait": float(np.nanmean(np.asarray(c["p_QxA"], float)[:, ti]))} for c in r["cells"]]
    keep = ("config", "fingerprint", "trait", "partner", "animals", "animal_tokens", "summary", "target_tail_mass",
            "base_model", "base_text_nll", "timings")
    teachers = {k: float(np.nanmean(np.asarray(v["p_QxA"], float)[:, ti])) for k, v in r["teachers"].items()}
    return {**{k: r[k] for k in keep}, "cells": cells, "teachers_p_trait": teachers}


def _color(arm):
    if arm.startswith("perturbed"):  # darker red for more noise
        return plt_color_scale(float(arm[len("perturbed"):]))
    return COLORS.get(arm, "C3")


def plt_color_scale(sigma: float):
    import matplotlib

    return matplotlib.colormaps["Reds"](0.35 + 0.6 * min(1.0, sigma / 0.1))


def _arm_order(arm: str):
    return (["student", "other", "mismatched", "shuffle_within", "shuffle_across"].index(arm)
            if arm in COLORS else 10, arm)


def _err(stat) -> list[float]:
    """Error-bar lengths below and above the mean (0 where the CI is undefined: one seed)."""
    lo, hi = (np.nan if v is None else v for v in stat["ci95"])
    return [0.0 if np.isnan(lo) else stat["mean"] - lo, 0.0 if np.isnan(hi) else hi - stat["mean"]]


def plot(data: dict, path) -> Path:
    import matplotlib.pyplot as plt

    s, trait = data["summary"], data["trait"]
    by = s["by_arm"]
    inputs = sorted({k.split("/")[0] for k in by})[0]
    rungs = [r for r in RUNGS if f"{inputs}/{r}/student" in by]
    fig, axes = plt.subplots(3, 2, figsize=(15, 15))
    ax = axes[0, 0]
    arms = sorted({k.split("/")[2] for k in by if k.startswith(inputs)} - {"control"}, key=_arm_order)
    w = 0.8 / max(len(arms), 1)
    for j, a in enumerate(arms):
        xs, ms, lo, hi = [], [], [], []
        for i, r in enumerate(rungs):
            row = by.get(f"{inputs}/{r}/{a}")
            if row and "log_ratio_vs_control" in row:
                x = row["log_ratio_vs_control"]
                xs.append(i + (j - (len(arms) - 1) / 2) * w)
                ms.append(x["mean"])
                lo.append(_err(x)[0])
                hi.append(_err(x)[1])
        ax.bar(xs, ms, w, yerr=[lo, hi], color=_color(a), label=a, capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(rungs)), rungs)
    ax.set(ylabel=f"log P({trait}) - log P({trait}) of the neutral control",
           title=f"(a) trait transfer per rung (mean, 95% CI over seeds; inputs: {inputs})")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[0, 1]
    for r in rungs:
        for a, ls in (("student", "-"), ("control", ":"), ("other", "--")):
            curves = [c["curve"] for c in data["cells"] if (c["inputs"], c["rung"], c["arm"]) == (inputs, r, a)]
            if not curves:
                continue
            steps = np.array([p[0] for p in curves[0]], float)
            p = np.array([[q[1] for q in cur] for cur in curves if len(cur) == len(steps)])
            ax.plot(np.maximum(steps, 0.5), -np.log(p.mean(0)), ls=ls, marker=MARKERS[r], ms=4,
                    color=f"C{rungs.index(r)}", label=f"{r}, {a}")
    ax.set(xscale="log", xlabel="student step (step 0 drawn at 0.5)", ylabel=f"-log P({trait}) (curve questions)",
           title="(b) the trait loss along the students' training (solid: student, dotted: control, dashed: other)")
    ax.legend(fontsize=7, ncol=3)

    ax = axes[1, 0]
    for j, a in enumerate(arms):
        xs, ms, err = [], [], []
        for i, r in enumerate(rungs):
            row = by.get(f"{inputs}/{r}/{a}")
            if row and "dW" in row:
                q = row["dW"]["proj_diff_specific"]
                xs.append(i + (j - (len(arms) - 1) / 2) * w)
                ms.append(q["mean"])
                err.append(_err(q))
        if xs:
            ax.bar(xs, ms, w, yerr=np.array(err).T, color=_color(a), label=a, capsize=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(rungs)), rungs)
    ax.set(ylabel="<dS - dC, dT - dN> / |dT - dN|^2 (dW space)",
           title="(c) trait-specific projection of each arm's update (through theory)")
    ax.legend(fontsize=8, ncol=2)

    ax = axes[1, 1]
    sc = s["scatter"]
    for p in sc["points"]:
        ax.scatter(p["proj_diff_specific"], p["delta_log_p_trait"], color=_color(p["arm"]),
                   marker=MARKERS.get(p["rung"], "o"), s=30, alpha=0.8)
    for r in rungs:  # each rung's own r in its legend entry, where the summary has it
        own = sc.get("by_rung", {}).get(r, {})
        label = f"{r}: r = {own['spearman_r']:+.2f} [{own['ci95'][0]:+.2f}, {own['ci95'][1]:+.2f}]" \
            if "spearman_r" in own else r
        ax.scatter([], [], color="k", marker=MARKERS[r], label=label)
    for a in arms:
        ax.scatter([], [], color=_color(a), marker="o", label=a)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    r_text = (f"Spearman r = {sc['spearman_r']:+.2f} [{sc['ci95'][0]:+.2f}, {sc['ci95'][1]:+.2f}], n = {sc['n']}"
              if "spearman_r" in sc else "too few points for a rank correlation")
    ax.set(xlabel="trait-specific projection (dW space)", ylabel=f"log P({trait}) - log P of the control, same seed",
           title=f"(d) does the diagnostic track the transfer? pooled {r_text}")
    ax.legend(fontsize=7, ncol=2)
    for ax, kind, title in ((axes[2, 0], "layer", "(e) per layer"), (axes[2, 1], "module", "(f) per module type")):
        for i, r in enumerate(rungs):
            per = by.get(f"{inputs}/{r}/student", {}).get("dW", {}).get(f"proj_diff_specific_by_{kind}")
            if not per:
                continue
            labels = list(per)
            m = np.array([per[lab]["mean"] for lab in labels])
            e = np.array([_err(per[lab]) for lab in labels]).T
            x = np.arange(len(labels)) + (i - (len(rungs) - 1) / 2) * 0.8 / len(rungs)
            ax.errorbar(x, m, yerr=e, fmt=MARKERS[r] + ("-" if kind == "layer" else ""), ms=4, capsize=2,
                        color=f"C{i}", label=r)
            ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=0 if kind == "layer" else 30)
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel=kind, ylabel="student's trait-specific projection (dW space)",
               title=f"{title}: the student arm per rung (mean, 95% CI over seeds)")
        ax.legend(fontsize=7)
    full = by.get(f"{inputs}/full/student", {}).get("log_ratio_vs_control")
    def ci_text(x):
        lo, hi = x["ci95"]
        return f"[{lo:+.2f}, {hi:+.2f}]" if lo is not None and np.isfinite(lo) else f"(n = {x['n']} seed: no CI)"

    head = f"full-vocabulary student vs control: log ratio {full['mean']:+.2f} {ci_text(full)}" if full else ""
    fig.suptitle(f"LLM logit ladder on {data['base_model'].split(':')[0]}, trait {trait} (partner {data['partner']}): "
                 f"{head}; teacher P({trait}) {data['teachers_p_trait']['teacher']:.2f}", fontsize=11)
    return save_figure(fig, path)


def main(ladder_path, out_dir=FIGURES_DIR, *, name: str) -> tuple[Path, Path]:
    data = compute(ladder_path)
    stem = Path(out_dir) / name
    jp, png, _ = save_then_plot(data, stem.with_suffix(".json"), stem.with_suffix(".png"), plot)
    return jp, png


if __name__ == "__main__":
    replot_cli(plot, "figures.llm_ladder_fig")
