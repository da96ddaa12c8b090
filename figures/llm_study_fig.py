"""Trait-specific projection vs teacher strength and data size (llm_bridge.study; paper Section 6 geometry applied to
dS - dC against dT - dN, with a shuffle null).

Compute = ``python -m llm_bridge study`` (its ``study.json``), condensed here into
``figures/llm_study_<settings>.json``; plot draws only from that JSON. Top row: teacher strength (k direct trait
answers); bottom row: kept number answers per student. Columns: P(target) of the models; normalized projection of
dS - dC on dT - dN (dW space), real vs shuffle null; cos(dS, dT - dN) vs cos(dC, dT - dN) with cos(dT, dN); the
student's trait shift vs the null's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.common import FIGURES_DIR, load_json, replot_cli, save_figure, save_then_plot


def compute(study_path) -> dict:
    r = load_json(study_path)
    keep = ("config", "preset", "run", "quantities", "cells", "base_trait", "target", "params", "timings",
            "environment", "base_model")
    return {k: r[k] for k in keep if k in r}


def _band(ax, x, stat, label, color, ls="-", marker="o"):
    m = np.array([s["mean"] for s in stat])
    ci = np.array([s["ci95"] for s in stat], float)
    ax.plot(x, m, ls=ls, marker=marker, color=color, label=label)
    if np.isfinite(ci).all():
        ax.fill_between(x, ci[:, 0], ci[:, 1], color=color, alpha=0.15)


def plot(data: dict, path) -> Path:
    import matplotlib.pyplot as plt

    space, target = "dW", data["target"]
    fig, axes = plt.subplots(2, 4, figsize=(19, 8.2))
    for row, (sweep, key, xlabel) in enumerate((("strength", "k", "teacher strength: direct trait answers k"),
                                                ("size", "n", "kept number answers per student n"))):
        cells = sorted((c for c in data["cells"] if sweep in c["sweep"]), key=lambda c: c[key])
        x = np.array([c[key] for c in cells], float)
        xs = np.arange(len(x))  # even spacing; real values in the tick labels
        fixed = f"n = {cells[0]['n']}" if sweep == "strength" else f"k = {cells[0]['k']}"
        ticks = [f"{int(v)}" for v in x]
        ax = axes[row, 0]
        for role, color in (("teacher", "tab:red"), ("neutral", "tab:olive"), ("student", "tab:blue"),
                            ("control", "tab:gray")):
            _band(ax, xs, [c["trait"][role]["p_target"] for c in cells], role, color)
        for name, ls in (("base", ":"), ("base+system_prompt", "--")):
            ax.axhline(data["base_trait"][name]["p_target"], color="k", ls=ls, lw=0.8, label=name)
        ax.set_yscale("log")
        ax.set_ylabel(f"P(answer starts with '{target}')")
        if sweep == "strength":
            ticks = [f"{int(v)}\ntop {c['trait']['teacher']['top_share']['mean']:.0%}" for v, c in zip(x, cells)]
        ax.set_title(f"trait ({fixed}); 'top' = questions where the teacher's top animal is {target}", fontsize=8)
        ax.legend(fontsize=7)

        ax = axes[row, 1]
        q = [c[space]["proj_diff_specific"] for c in cells]
        _band(ax, xs, [v["real"] for v in q], "student - control (real split)", "tab:blue")
        _band(ax, xs, [v["null"] for v in q], "shuffled split (null)", "tab:gray", ls="--", marker="s")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("<dS - dC, dT - dN> / |dT - dN|^2")
        ax.set_title(f"trait-specific projection ({space} space, {fixed})", fontsize=9)
        ax.legend(fontsize=7)

        ax = axes[row, 2]
        _band(ax, xs, [c[space]["cos_student_specific"]["real"] for c in cells], "cos(dS, dT - dN)", "tab:blue")
        _band(ax, xs, [c[space]["cos_control_specific"]["real"] for c in cells], "cos(dC, dT - dN)", "tab:gray",
              ls="--", marker="s")
        _band(ax, xs, [c[space]["cos_teacher_neutral"]["real"] for c in cells], "cos(dT, dN)", "tab:olive",
              ls=":", marker="^")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=1e-2)  # cos(dT, dN) is near 1 while the others are near 0
        ax.set_title(f"treatment vs control on the trait direction ({space})", fontsize=9)
        ax.legend(fontsize=7)

        ax = axes[row, 3]
        _band(ax, xs, [c["trait"]["student_minus_control"] for c in cells], "student - control", "tab:blue")
        _band(ax, xs, [c["trait"]["null_shift"] for c in cells], "shuffled halves (null)", "tab:gray", ls="--",
              marker="s")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(f"change in P('{target}')")
        ax.set_title("student trait shift", fontsize=9)
        ax.legend(fontsize=7)
        for ax in axes[row]:
            ax.set_xticks(xs, ticks, fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
    c = data["config"]["llm"]
    env = data.get("environment", {})
    where = env.get("gpu") or f"CPU ({env.get('threads', '?')} threads)"
    fig.suptitle(f"{data.get('base_model', c['model'])} - LoRA r={c['lora_r']} - {len(c['seeds'])} seeds, mean and "
                 f"bootstrap 95% CI - {c['sampler']} sampling - {data['preset']} preset - {where}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(study_path, out_dir=FIGURES_DIR) -> tuple[Path, Path]:
    data = compute(study_path)
    stem = Path(out_dir) / data["run"]
    jp, png, _ = save_then_plot(data, stem.with_suffix(".json"), stem.with_suffix(".png"), plot)
    return jp, png


if __name__ == "__main__":
    replot_cli(plot, "figures.llm_study_fig")
