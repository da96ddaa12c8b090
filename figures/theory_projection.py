"""Lemma 1 / Theorem 1 over random networks (paper Section 6): three panels from ``theory.experiment.run``.

(a) normalized projection dS.dT / |dT|^2 vs eps, shared vs different init; (b) relative first-order error vs eps with
its fitted slope (smooth vs ReLU networks); (c) histogram of cos(dS, dT) at the largest small eps, shared vs different.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figures.common import FIGURES_DIR, nan_array, replot_cli, save_figure, save_then_plot, stem  # noqa: E402
from theory import fmt  # noqa: E402

NAME = "theory_projection"


def grid_stem(name: str, config) -> str:
    """The file stem of a theory-grid figure (this one, or ``theory_optimizers``): preset, dtype and seed."""
    preset = "paper" if config.n_cases >= 200 else "quick"
    return stem(name, preset=preset, dtype=config.dtype, seed=config.seed)


def file_stem(config) -> str:
    return grid_stem(NAME, config)


def grid_inputs(config, data_dir=None, *, download: bool = False):
    """(config, MNIST loader) for ``theory.experiment.run``: real digits through mnist_mlp's checked loader. Without
    the files the grid runs without its "mnist" inputs (said on stderr, and in the JSON's config), unless real data
    is required (``SUBLIMINAL_REQUIRE_DATA=1``, CI), where the DataError stands."""
    import dataclasses
    import functools
    import sys

    from mnist_mlp import DataError, data_required, ensure_mnist, load_mnist

    if "mnist" not in config.inputs:
        return config, None
    try:
        root = ensure_mnist(data_dir, download=download)
    except DataError as e:
        rest = tuple(i for i in config.inputs if i != "mnist")
        if data_required() or not rest:
            raise
        print(f"note: the theory grid runs without real-MNIST inputs: {e}", file=sys.stderr)
        return dataclasses.replace(config, inputs=rest), None
    return config, functools.partial(load_mnist, root, split="train")


def grid_store(name: str, config, runs_dir=None, resume: bool = True):
    """Where a theory grid keeps its finished parts (``theory``'s ``GridStore``): RUNS_DIR/STEM_FP, one array file per
    part, stamped with the fingerprint FP of the settings (``results.ArrayStore``); None without ``runs_dir``."""
    if runs_dir is None:
        return None
    from results import ArrayStore, fingerprint

    fp = fingerprint({"grid": name, **config.science_dict()})
    return ArrayStore(Path(runs_dir) / f"{grid_stem(name, config)}_{fp}", fp, resume=resume)


def compute(config, *, data_dir=None, download: bool = False, progress: bool = True, runs_dir=None,
            resume: bool = True) -> dict:
    from theory import run_grid

    config, mnist = grid_inputs(config, data_dir, download=download)
    return run_grid(config, mnist=mnist, progress=progress, store=grid_store(NAME, config, runs_dir, resume))


def grid_main(name: str, compute_fn, plot_fn, config=None, out_dir=FIGURES_DIR, *, json_path=None, data_dir=None,
              download: bool = False, progress: bool = True, runs_dir=None, resume: bool = True
              ) -> tuple[Path, Path, dict]:
    """Compute a theory-grid figure's data (default config: the quick grid), save its JSON, plot from that JSON.
    ``runs_dir``: the run folder where the grid keeps its finished parts (``grid_store``), from which a rerun with
    ``resume`` continues. Returns (json path, png path, data)."""
    from theory import TheoryConfig

    config = config or TheoryConfig.quick()
    base = Path(out_dir) / grid_stem(name, config)
    json_path = Path(json_path) if json_path else base.with_suffix(".json")
    data = compute_fn(config, data_dir=data_dir, download=download, progress=progress, runs_dir=runs_dir,
                      resume=resume)
    return save_then_plot(data, json_path, base.with_suffix(".png"), plot_fn, compact=True)


def _band(ax, x, y_CxE, color, label):
    lo, med, hi = np.nanpercentile(y_CxE, [10, 50, 90], axis=0)
    ax.plot(x, med, color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, lw=0)


def plot(data: dict, path) -> Path:
    eps = np.asarray(data["eps"])
    cur = data["curves"]
    s = data["summary"]
    cases = data["cases"]
    relu = np.array([c["arch"] == "cnn" or c["arch"].endswith("relu") for c in cases] * 2)
    def cat(g1, g2, k):
        return np.concatenate([nan_array(cur[g1][k]), nan_array(cur[g2][k])])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))

    ax = axes[0]
    shared = cat("lemma_shared", "theorem_shared", "normalized_projection_E")
    other = cat("lemma_other", "theorem_other", "normalized_projection_E")
    neg_large = s["large_eps_fraction_negative_shared"]
    _band(ax, eps, shared, "C0", f"shared init: dS.dT/|dT|$^2$ (>= 0 for eps <= {data['config']['small_eps_max']:g}; "
                                 f"{100 * (neg_large or 0):.0f}% < 0 at eps >= {data['config']['large_eps_min']:g})")
    _band(ax, eps, np.abs(other), "C3", f"different init: |.| ({100 * s['other_init_fraction_negative']:.0f}% < 0)")
    ax.plot(eps, eps * np.nanmedian(shared[:, 0] / eps[0]), "k:", lw=1, label="slope 1")
    ax.set(xscale="log", yscale="log", xlabel="teacher step eps", ylabel="normalized projection",
           title="(a) Lemma 1: student moves toward teacher")
    ax.legend(fontsize=8)

    ax = axes[1]
    err = cat("lemma_shared", "theorem_shared", "relative_error_E")
    small = eps <= data["config"]["small_eps_max"]
    for mask, color, key, label in [(~relu, "C2", "first_order_error_slope_smooth", "smooth (tanh/gelu/attn)"),
                                    (relu, "C1", "first_order_error_slope_relu", "ReLU")]:
        if mask.any():
            st = s[key]
            _band(ax, eps, err[mask], color, f"{label}: slope {fmt(st['median'], '.3f')} (median), "
                                             f"{fmt(st['pooled'], '.3f')} (pooled)")
    ax.axvspan(eps[small].min(), eps[small].max(), color="0.9", zorder=0, label="fit range")
    ax.set(xscale="log", yscale="log", xlabel="teacher step eps", ylabel="|dS/eps - first order| / |first order|",
           title="(b) first-order error is O(eps)")
    ax.legend(fontsize=8)

    ax = axes[2]
    i = int(np.argmin(np.abs(eps - s["cosine_eps"])))
    bins = np.linspace(-1, 1, 41)
    ax.hist(cat("lemma_shared", "theorem_shared", "cosine_E")[:, i], bins, alpha=0.7, color="C0", label="shared init")
    ax.hist(cat("lemma_other", "theorem_other", "cosine_E")[:, i], bins, alpha=0.7, color="C3", label="different init")
    ax.set(xlabel=f"cos(dS, dT) at eps = {s['cosine_eps']:g}", ylabel="cases", title="(c) cosine of the updates")
    ax.legend(fontsize=8)
    fig.suptitle(f"Lemma 1 / Theorem 1 on {s['n_cases']} random networks x 2 checks ({data['config']['dtype']}); "
                 f"projection >= 0 in {100 * s['lemma1_fraction_nonnegative_shared']:.1f}%, teacher loss falls in "
                 f"{100 * s['theorem1_teacher_loss_falls_where_positive']:.1f}%", fontsize=10)
    return save_figure(fig, path)


def main(config=None, out_dir=FIGURES_DIR, **kw) -> tuple[Path, Path, dict]:
    """Compute, save JSON, plot from that JSON (``grid_main``). Returns (json path, png path, data)."""
    return grid_main(NAME, compute, plot, config, out_dir, **kw)


if __name__ == "__main__":
    replot_cli(plot, "figures.theory_projection")
