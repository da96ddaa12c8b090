"""Paper Fig. 10 (Section 6.2) and the projection diagnostic, drawn from the JSON of ``mnist_mlp.experiment.run``.

(a) MNIST test accuracy of the six models with 95% bootstrap CIs; (b) cos(dS, dT) of the students' updates against
their teacher's update, first gradient step (Lemma 1) and whole training, shared vs different init; (c) the teacher's
class loss L_T along each student's training (Theorem 1: it falls at the first step when the init is shared).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures.common import FIGURES_DIR, replot_cli, save_figure, save_then_plot, stem  # noqa: E402

NAME = "mnist_fig10"
LABELS = {
    "reference": "reference\n(untrained)",
    "teacher": "teacher",
    "aux_same": "student\naux only",
    "all_same": "student\nall logits",
    "aux_other": "cross-model\naux only",
    "all_other": "cross-model\nall logits",
}
COLORS = {"reference": "0.6", "teacher": "0.25", "aux_same": "C0", "all_same": "C9", "aux_other": "C3",
          "all_other": "C1"}


def file_stem(config) -> str:
    return stem(NAME, preset=config.preset_name, runs=config.runs, seed=config.seed)


def compute(config, *, out_dir="runs", resume: bool = True, progress: bool = True) -> dict:
    from mnist_mlp import run

    return run(config, out_dir, resume=resume, progress=progress)


def _bars(ax, names, stats, title, ylabel, fmt="{:.1f}"):
    means = [stats[n]["mean"] for n in names]
    lo = [stats[n]["mean"] - stats[n]["ci95"][0] if stats[n]["ci95"][0] is not None else 0 for n in names]
    hi = [stats[n]["ci95"][1] - stats[n]["mean"] if stats[n]["ci95"][1] is not None else 0 for n in names]
    x = np.arange(len(names))
    ax.bar(x, means, yerr=[lo, hi], capsize=4, color=[COLORS[n] for n in names])
    for xi, m, h in zip(x, means, hi):
        ax.text(xi, m + h, fmt.format(m), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [LABELS[n] for n in names], fontsize=8)
    ax.set(title=title, ylabel=ylabel)


def plot(data: dict, path) -> Path:
    s, cfg = data["summary"], data["config"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.3, 1.1, 1]})

    acc = {n: {k: (v * 100 if isinstance(v, float) else [c * 100 for c in v]) for k, v in s[n]["accuracy"].items()}
           for n in LABELS}
    ax = axes[0]
    _bars(ax, list(LABELS), acc, f"(a) MNIST test accuracy ({cfg['runs']} runs, 95% CI)", "accuracy (%)")
    ax.axhline(10, color="k", ls=":", lw=1, label="chance")
    ax.legend(fontsize=8)

    ax = axes[1]
    students = ["aux_same", "aux_other", "all_same", "all_other"]
    x = np.arange(len(students))
    for off, key, hatch, label in [(-0.2, "first_step_gradient_cos", "//", "first gradient step (Lemma 1)"),
                                   (0.2, "total_update_cos", "", "whole training")]:
        st = [s[n][key] for n in students]
        m = np.array([v["mean"] for v in st])
        err = np.array([[v["mean"] - v["ci95"][0], v["ci95"][1] - v["mean"]] for v in st]).T
        ax.bar(x + off, m, 0.4, yerr=err, capsize=3, color=[COLORS[n] for n in students], hatch=hatch,
               edgecolor="k", lw=0.5, label=label)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [LABELS[n] for n in students], fontsize=8)
    ax.set(title="(b) cos(student update, its teacher's update)", ylabel="cosine")
    ax.legend(fontsize=8)

    ax = axes[2]
    steps = np.asarray(data["log_steps"], float)
    for n in students:
        curve = np.asarray(data["per_run"][n]["teacher_loss_curve"], float)
        m = curve.mean(0)
        half = 1.96 * curve.std(0, ddof=1) / np.sqrt(curve.shape[0]) if curve.shape[0] > 1 else 0 * m
        ax.plot(steps + 1, m, color=COLORS[n], label=LABELS[n].replace("\n", " "))
        ax.fill_between(steps + 1, m - half, m + half, color=COLORS[n], alpha=0.2, lw=0)
    ax.set(xscale="log", xlabel="student step + 1", ylabel="teacher's loss L_T (class CE on MNIST)",
           title="(c) L_T along the student's training")
    ax.legend(fontsize=8)
    first = s["aux_same"]["teacher_loss_first_step_change"]
    fig.suptitle(f"Subliminal learning on MNIST (paper Fig. 10): aux-only student {acc['aux_same']['mean']:.1f}% "
                 f"[{acc['aux_same']['ci95'][0]:.1f}, {acc['aux_same']['ci95'][1]:.1f}] vs cross-model "
                 f"{acc['aux_other']['mean']:.1f}%; L_T falls at the aux student's first step in "
                 f"{first['fraction_negative']:.0%} of runs", fontsize=10)
    return save_figure(fig, path)


def main(config=None, out_dir=FIGURES_DIR, *, runs_dir="runs", resume: bool = True,
         progress: bool = True) -> tuple[Path, Path, dict]:
    from mnist_mlp import MnistConfig

    config = config or MnistConfig.quick()
    base = Path(out_dir) / file_stem(config)
    data = compute(config, out_dir=runs_dir, resume=resume, progress=progress)
    return save_then_plot(data, base.with_suffix(".json"), base.with_suffix(".png"), plot)


if __name__ == "__main__":
    replot_cli(plot, "figures.mnist_fig10")
