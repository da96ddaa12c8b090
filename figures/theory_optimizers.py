"""Theorem 1 beyond gradient descent: the optimizer axis of the theory grid (``theory.optimizer_grid.run``).

(a) share of negative first-step projections dS . dT per optimizer (shared init, random dT and dT = -grad L_T; other
init), Wilson 95% CIs; (b) the same for the shared init per architecture; (c) median cos(theta_K - start, dT) along
K steps, shared vs other init; (d) share of negative projections and of risen teacher losses along K (shared init).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures.common import FIGURES_DIR, nan_array, replot_cli, save_figure  # noqa: E402
from figures.theory_projection import grid_inputs, grid_main, grid_stem, grid_store  # noqa: E402

NAME = "theory_optimizers"
COLORS = {"sgd": "C0", "momentum": "C9", "adam": "C1", "adamw": "C5", "signsgd": "C3", "lion": "C4"}


def file_stem(config) -> str:
    return grid_stem(NAME, config)


def compute(config, *, data_dir=None, download: bool = False, progress: bool = True, runs_dir=None,
            resume: bool = True) -> dict:
    from theory import run_optimizer_grid

    config, mnist = grid_inputs(config, data_dir, download=download)
    return run_optimizer_grid(config, mnist=mnist, progress=progress,
                              store=grid_store(NAME, config, runs_dir, resume))


def _frac(cell):
    f = cell["fraction"]
    lo, hi = cell["ci95"]
    return f, (f - lo, hi - f)


def headline(data: dict) -> str:
    """The figure's answer, from the numbers: which optimizers' first and K-th steps kept the theorem's sign."""
    s = data["summary"]
    e = _ref_eps(s)
    parts = []
    for name, groups in s["first_step"].items():
        first = max(groups[g]["fraction_negative"][e]["fraction"] for g in ("lemma_shared", "theorem_shared"))
        last = s["kstep"][name]["theorem_shared"]["fraction_negative"][-1]["fraction"]
        parts.append(f"{name} {100 * first:.0f}%/{100 * last:.0f}%")
    return (f"Does the student's step keep Theorem 1's sign (dS.dT >= 0, shared init)? Share negative at the first "
            f"step/K={s['k_steps'][-1]}: " + ", ".join(parts))


def _ref_eps(s) -> int:
    """Index of the middle teacher distance of the first-step sweep (the figure's reference eps)."""
    return len(s["optimizer_eps"]) // 2


def plot(data: dict, path) -> Path:
    s = data["summary"]
    opts = list(s["first_step"])
    e = _ref_eps(s)
    eps = s["optimizer_eps"][e]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    axes = axes.ravel()

    ax = axes[0]
    groups = [("lemma_shared", "shared init, random dT", "C0"), ("theorem_shared", "shared init, dT = -grad L_T", "C2"),
              ("lemma_other", "other init, random dT", "C3")]
    w = 0.8 / len(groups)
    x = np.arange(len(opts))
    for i, (g, label, color) in enumerate(groups):
        f, err = zip(*[_frac(s["first_step"][o][g]["fraction_negative"][e]) for o in opts])
        ax.bar(x + (i - 1) * w, f, w, yerr=np.array(err).T, color=color, label=label, capsize=3)
    lim = s["sign_limit_fraction_negative"]["lemma"]
    ax.axhline(lim["fraction"], color="k", ls=":", lw=1,
               label=f"sign step's eps->0 limit, random dT: {100 * lim['fraction']:.1f}%")
    ax.set_xticks(x, opts)
    neg = [o for o in opts if any(s["first_step"][o][g]["fraction_negative"][e]["fraction"] > 0
                                  for g in ("lemma_shared", "theorem_shared"))]
    ax.set(ylabel="share of cases with dS.dT < 0", ylim=(0, 1.05),
           title=f"(a) first step at eps = {eps:g}: negative from the shared init under "
                 f"{', '.join(neg) if neg else 'no optimizer'}")
    ax.legend(fontsize=8)

    ax = axes[1]
    archs = list(s["first_step"][opts[0]]["lemma_shared"]["fraction_negative_by_arch"])
    grid = np.array([[s["first_step"][o]["lemma_shared"]["fraction_negative_by_arch"][a][e]["fraction"]
                      for a in archs] for o in opts])
    grid = 100 * grid
    im = ax.imshow(grid, vmin=0, vmax=max(5.0, grid.max()), cmap="Reds", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(archs)), archs, rotation=60, fontsize=7)
    ax.set_yticks(range(len(opts)), opts)
    ax.set_title("(b) % of first steps with dS.dT < 0, shared init, random dT, by architecture", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="% of cases")

    ax = axes[2]
    ks = np.asarray(s["k_steps"])
    for o in opts:
        for g, ls in (("theorem_shared", "-"), ("theorem_other", "--")):
            cell = s["kstep"][o][g]
            lo, hi = nan_array(cell["cosine_quartiles"])
            ax.plot(ks, nan_array(cell["median_cosine"]), color=COLORS.get(o), ls=ls,
                    label=f"{o}, {'shared' if g.endswith('shared') else 'other'} init")
            if g == "theorem_shared":
                ax.fill_between(ks, lo, hi, color=COLORS.get(o), alpha=0.12, lw=0)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xscale="log", xlabel="student steps K", ylabel="median cos(theta_K - start, dT)",
           title=f"(c) K steps against the teacher at eps = {s['k_step_eps']:g} (dT = -grad L_T)")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[3]
    for o in opts:
        cell = s["kstep"][o]["theorem_shared"]
        ax.plot(ks, [c["fraction"] for c in cell["fraction_negative"]], color=COLORS.get(o), label=f"{o}: dS.dT < 0")
        ax.plot(ks, [c["fraction"] for c in cell["fraction_teacher_loss_rises"]], color=COLORS.get(o), ls=":",
                label=f"{o}: L_T rose")
    ax.set(xscale="log", xlabel="student steps K", ylabel="share of cases (shared init)", ylim=(-0.02, 1.02),
           title="(d) does the K-th update keep the sign, and L_T fall?")
    ax.legend(fontsize=7, ncol=2)
    title = headline(data)
    cut = title.index("Share negative")
    fig.suptitle(f"{title[:cut]}\n{title[cut:]} ({s['n_cases']} random networks, {data['config']['dtype']})",
                 fontsize=11)
    return save_figure(fig, path)


def main(config=None, out_dir=FIGURES_DIR, **kw) -> tuple[Path, Path, dict]:
    """Compute, save JSON, plot from that JSON (``theory_projection.grid_main``). Returns (json path, png path,
    data)."""
    return grid_main(NAME, compute, plot, config, out_dir, **kw)


if __name__ == "__main__":
    replot_cli(plot, "figures.theory_optimizers")
