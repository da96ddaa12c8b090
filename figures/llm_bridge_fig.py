"""LoRA projection diagnostic on a real small LLM (paper Sections 3-4 setting, Lemma 1 / Theorem 1 geometry).

Compute = the llm_bridge pipeline (``python -m llm_bridge run``), whose ``results.json`` this script condenses into
``figures/llm_bridge_<settings>.json``; plot draws only from that JSON: per-layer cos(dS, dT) vs cos(dC, dT) in dW
space, the first-step projection sign vs eps, and P(target animal) for base / teacher / student / control."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from figures.common import FIGURES_DIR, load_json, replot_cli, save_figure, save_then_plot


def compute(results_path) -> dict:
    r = load_json(results_path)
    keep = ("config", "preset", "run", "geometry", "first_step", "trait", "numbers", "params", "timings",
            "environment", "base_model")
    return {k: r[k] for k in keep if k in r}


def plot(data: dict, path) -> Path:
    import matplotlib.pyplot as plt

    t = data["trait"]
    names = ["base", "base+system_prompt", "teacher", "student", "control"]
    contains = all(t[n].get("contains_rate") for n in names)  # runs before the authors' measure lack it
    fig, axes = plt.subplots(1, 3 + contains, figsize=(16 + 4 * contains, 4.2),
                             gridspec_kw={"width_ratios": [2.2, 1, 1.2] + [1.2] * contains})
    g = data["geometry"]["dW"]
    layers = list(g["layer"])
    x = np.arange(len(layers))
    for off, who, color in ((-0.2, "student", "tab:blue"), (0.2, "control", "tab:gray")):
        m = [g["layer"][lab][who]["mean"] for lab in layers]
        ci = np.array([g["layer"][lab][who]["ci95"] for lab in layers], float)
        err = np.abs(np.stack([m - ci[:, 0], ci[:, 1] - m])) if np.isfinite(ci).all() else None
        axes[0].bar(x + off, m, 0.4, yerr=err, color=color, capsize=2,
                    label=f"{who}: overall {g[who]['cos']['mean']:+.3f}")
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_xticks(x, layers, fontsize=7)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("cos(update, dT) in dW = (alpha/r) B A space")
    axes[0].set_title(f"student (teacher's numbers) vs control (base's numbers), {len(data['config']['seeds'])} seeds")
    axes[0].legend(fontsize=8)

    for (kind, fs), marker, color in zip(data["first_step"].items(), "osd^", ("C0", "C1", "C2", "C3")):
        eps = [float(e) for e in fs]
        axes[1].plot(eps, [fs[e]["fraction_nonnegative"] for e in fs], marker=marker, color=color,
                     label=f"{kind}: share of <-grad, dT> >= 0")
        axes[1].plot(eps, [fs[e]["cos"]["mean"] for e in fs], marker=marker, color=color, ls="--",
                     label=f"{kind}: mean cos")
    axes[1].set_xscale("log")
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set_xlabel("teacher = init + eps * dT")
    axes[1].set_title("first student step (Theorem 1)")
    axes[1].legend(fontsize=7)

    labels = ["base", "base +\nsystem prompt", "teacher\n(LoRA)", "student", "control"]
    colors = ["tab:gray", "tab:orange", "tab:red", "tab:blue", "tab:gray"]
    panels = [("p_target", f"P(answer starts with '{t['target']}'), 95% CI", "trait: exact prefix probability")]
    if contains:
        k = t["base"].get("samples_per_question")
        panels.append(("contains_rate", f"share of sampled answers naming '{t['target']}', 95% CI",
                       f"trait: authors' contains-rate ({k} samples/question)"))
    for ax, (key, ylabel, title) in zip(axes[2:], panels):
        m = np.array([t[n][key]["mean"] for n in names])
        ci = np.array([t[n][key]["ci95"] for n in names], float)
        err = np.abs(np.stack([m - ci[:, 0], ci[:, 1] - m]))
        ax.bar(range(len(names)), m, yerr=np.nan_to_num(err), capsize=3, color=colors)
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        if key == "p_target":
            ax.set_yscale("log")  # the system prompt moves P(target) by orders of magnitude
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
    c = data["config"]
    fig.suptitle(f"{data.get('base_model', c['model'])} - LoRA r={c['lora_r']} alpha={c['lora_alpha']} - "
                 f"{c['sampler']} sampling - {data['preset']} preset", fontsize=10)
    return save_figure(fig, path)


def main(results_path, out_dir=FIGURES_DIR) -> tuple[Path, Path]:
    data = compute(results_path)
    stem = Path(out_dir) / data["run"].replace("llm_", "llm_bridge_", 1)
    jp, png, _ = save_then_plot(data, stem.with_suffix(".json"), stem.with_suffix(".png"), plot)
    return jp, png


if __name__ == "__main__":
    replot_cli(plot, "figures.llm_bridge_fig")
