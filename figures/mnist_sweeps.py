"""The MNIST sweeps and mechanism studies (``mnist_mlp.sweeps``; paper Section 6.2 and Lemma 1), one figure per
sweep, drawn from the sweep's JSON; and the transfer map that pools every sweep.

Sweep figure: (a) test accuracy of the aux-only students, same init vs different init (all-logit students faint), per
cell, with 95% bootstrap CIs and chance (under each cell: the same-init aux student's final imitation loss); (b) the
first-order prediction per cell: the cosine of the first gradient step with the teacher's update (Lemma 1; the JSON
also holds its normalized projection) and the cosine of the whole update. The ``alignment`` sweep draws instead
cos(grad L_S, grad L_T) at every student step. Map: each cell's prediction against its transfer, with Spearman's r.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures.common import FIGURES_DIR, replot_cli, save_figure, save_then_plot  # noqa: E402

STYLE = {"aux_same": ("C0", "aux only, same init"), "aux_other": ("C3", "aux only, different init"),
         "all_same": ("C9", "all logits, same init"), "all_other": ("C1", "all logits, different init")}


def _mean(stat) -> float:
    """The mean, NaN when undefined (a cosine of a student that never moved: m = 1 aux logit), so it is not drawn."""
    return np.nan if stat["mean"] is None else stat["mean"]


def _err(stat) -> tuple[float, float]:
    lo, hi = stat["ci95"]
    return (0.0, 0.0) if lo is None or stat["mean"] is None else (stat["mean"] - lo, hi - stat["mean"])


def _series(ax, cells, student, key, *, scale=1.0, offset=0.0, alpha=1.0, marker="o", label=None):
    x = np.arange(len(cells)) + offset
    ok = [i for i, c in enumerate(cells) if "diverged" not in c]
    m = [_mean(cells[i]["students"][student][key]) * scale for i in ok]
    e = np.array([_err(cells[i]["students"][student][key]) for i in ok]).T * scale
    color, default = STYLE[student]
    ax.errorbar(x[ok], m, yerr=e if len(ok) else None, fmt=marker + "-", color=color, alpha=alpha, capsize=3,
                label=label or default)


def plot(data: dict, png_path) -> Path:
    cells = data["cells"]
    # each cell's final imitation loss of the same-init aux student: how well its optimizer/loss did its own job
    labels = [c["label"] + ("\n(diverged)" if "diverged" in c else
                            f"\nL_S {c['students']['aux_same']['final_imitation_loss']['mean']:.2g}") for c in cells]
    title = f"{data['title']} ({data['preset']}, {data['runs_per_cell']} runs per cell)"
    if data["sweep"] == "alignment":
        return _plot_alignment(data, png_path, title)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
    for st, alpha in (("aux_same", 1.0), ("aux_other", 1.0), ("all_same", 0.35), ("all_other", 0.35)):
        _series(a, cells, st, "accuracy", scale=100, alpha=alpha)
    a.axhline(100 * 0.1, color="0.5", ls=":", lw=1, label="chance")
    a.set_ylabel("student test accuracy (%)")
    a.set_title(f"(a) {title}", fontsize=9)
    for st in ("aux_same", "aux_other"):
        _series(b, cells, st, "first_step_cos", offset=-0.05, marker="o",
                label=f"cos(first gradient step, dT), {STYLE[st][1]}")
        _series(b, cells, st, "total_update_cos", offset=0.05, marker="s", alpha=0.6,
                label=f"cos(whole update, dT), {STYLE[st][1]}")
    b.axhline(0, color="0.5", lw=0.8)
    b.set_title("(b) first-order prediction (Lemma 1) and update cosine", fontsize=9)
    for ax in (a, b):
        ax.set_xticks(np.arange(len(cells)), labels, fontsize=8)
        ax.set_xlabel(data["axis"])
        # below the axes: inside, a legend hides whichever cell it lands on
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.24))
    return save_figure(fig, png_path)


def _plot_alignment(data: dict, png_path, title) -> Path:
    # two panels: the aux-only cosines are ~100x smaller than the all-logit ones and vanish on a shared axis
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cell = data["cells"][0]
    panels = ((axes[0], ("aux_same", "aux_other"), "(a) aux-only students (the subliminal case)"),
              (axes[1], ("all_same", "all_other"), "(b) all-logit students (the positive control)"))
    for ax, students, sub in panels:
        for st in students:
            curve = cell["students"][st]["alignment_curve"]
            m = np.asarray(curve["mean"])
            steps = np.arange(1, len(m) + 1)
            color, label = STYLE[st]
            ax.plot(steps, m, color=color, label=f"{label} (mean over steps {np.nanmean(m):+.4f})")
            ci = np.array([[np.nan, np.nan] if c[0] is None else c for c in curve["ci95"]], float)
            ax.fill_between(steps, ci[:, 0], ci[:, 1], color=color, alpha=0.15)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("student step")
        ax.set_title(sub, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("cos(grad L_S, grad L_T) at the student")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, png_path)


def _ci(ci) -> str:
    return "[n/a]" if None in ci else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def plot_map(data: dict, png_path) -> Path:
    preds = list(data["correlations"]) or ["first_step_projection", "total_update_cos"]
    fig, axes = plt.subplots(1, len(preds), figsize=(5.5 * len(preds), 4.2), squeeze=False)
    sweeps = sorted({p["sweep"] for p in data["points"]})
    # up to 10 sweeps: the default cycle; beyond it, tab20's dark hues and then its light ones (no colour repeats)
    tab20 = plt.get_cmap("tab20")
    colors = {s: f"C{i}" if len(sweeps) <= 10 else tab20((2 * i) % 20 + (2 * i) // 20) for i, s in enumerate(sweeps)}
    names = {"first_step_projection": "first-step gradient projection on dT, <-g, dT> / |dT|^2 (Lemma 1)",
             "first_step_cos": "cos(first gradient step, dT)",
             "total_update_cos": "cos(whole student update, dT)"}
    for ax, pred in zip(axes[0], preds):
        for p in data["points"]:
            if p[pred] is None:  # undefined (a student that never moved), not drawn and not ranked
                continue
            ax.scatter(p[pred], 100 * p["transfer"], color=colors[p["sweep"]], marker="o" if p["student"] ==
                       "aux_same" else "x", s=22)
        for s in sweeps:
            ax.scatter([], [], color=colors[s], label=s, s=18)
        ax.axhline(0, color="0.5", lw=0.8)
        lines = []
        for key, what in (("correlations", "all"), ("correlations_same_init", "same init")):
            c = data.get(key, {}).get(pred)
            if c is not None:  # n: the points with this predictor defined
                lines.append(f"Spearman r ({what}, n = {c['n']}) = {c['spearman_r']:+.2f} {_ci(c['ci95'])}")
        ax.set_title("\n".join([*lines, "(o same init, x different init)"]), fontsize=9)
        symlog = pred == "first_step_projection"  # it spans 1e-5 (different init) to 1e-2 (real-image inputs)
        if symlog:
            ax.set_xscale("symlog", linthresh=1e-4)
        ax.set_xlabel(names.get(pred, pred) + (", symlog" if symlog else ""))
        ax.set_ylabel("transfer: aux-student accuracy - chance (pp)")
    axes[0][0].legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle(f"Does the first-order quantity predict transfer? ({data['preset']})", fontsize=10)
    return save_figure(fig, png_path)


def main(name: str, preset: str, out=FIGURES_DIR, *, runs_dir="runs", resume: bool = True, progress: bool = True,
         **kw) -> tuple[Path, Path, dict]:
    """Run (or resume) sweep ``name``, save its JSON and PNG in ``out``; then redraw the map of all of ``out``'s
    finished sweeps of this preset."""
    from mnist_mlp import run_sweep, sweep_name

    res = run_sweep(name, preset, out_dir=runs_dir, resume=resume, progress=progress, **kw)
    seed = kw.get("seed", 0)
    stem = sweep_name(name, preset, seed)
    jp, png, saved = save_then_plot(res, Path(out) / f"{stem}.json", Path(out) / f"{stem}.png", plot)
    draw_map(preset, out, seed=seed)
    return jp, png, saved


def draw_map(preset: str, out=FIGURES_DIR, *, seed: int = 0):
    """The transfer map of ``out``'s finished sweeps of ``preset`` (JSON + PNG); None when none is finished."""
    from mnist_mlp import load_sweeps, transfer_map

    done = load_sweeps(out, preset, seed)
    if not done:
        return None
    m = {**transfer_map(done), "preset": preset}
    stem = f"mnist_transfer_map_{preset}_seed{seed}"
    return save_then_plot(m, Path(out) / f"{stem}.json", Path(out) / f"{stem}.png", plot_map)


if __name__ == "__main__":
    replot_cli(plot, "figures.mnist_sweeps")
