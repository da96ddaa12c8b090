"""The trait scan's evaluation (llm_bridge.scan, issue 35): can a detector that sees only a number dataset and the
base model tell trait data from neutral data, and name the trait? (paper Section 7, Table 5: an LLM judge cannot.)

Compute = ``llm_bridge.scan.evaluate`` (its ``evaluation.json``), condensed here into ``figures/llm_scan_<settings>
.json`` (each dataset's top candidates and the true animal's rank kept; the per-candidate lists dropped); plot draws
only from that JSON. Both detectors (likelihood shift, coverage cosine), as the issue defines them ("as defined":
centred over the candidates) and calibrated against the base's own answers: (a) AUROC of the top candidate's score,
trait data against neutral data, with its 95% CI, against the dataset's size; (b) top-1 and top-3 accuracy at naming
the animal, with chance; (c) the top score of every dataset at full size, by kind (trait, neutral and the two nulls:
completions shuffled across rows, rows mixed over every animal's teacher); (d) the true animal's score against size.

``python -m figures.llm_scan_fig --preset quick|paper`` runs the evaluation (resumable) and draws it;
``python -m figures.llm_scan_fig FIGURE.json OUT.png`` redraws a saved figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from figures.common import FIGURES_DIR, load_json, replot_cli, save_figure, save_then_plot

DETECTORS = ("likelihood", "coverage")
VARIANTS = ("score", "calibrated")
LABELS = {"score": "as defined", "calibrated": "calibrated"}
KIND_COLORS = {"trait": "C3", "neutral": "0.45", "shuffled": "C0", "mixed": "C2"}
STYLE = {("likelihood", "score"): ("C0", "--"), ("likelihood", "calibrated"): ("C0", "-"),
         ("coverage", "score"): ("C1", "--"), ("coverage", "calibrated"): ("C1", "-")}


def compute(evaluation_path) -> dict:
    r = load_json(evaluation_path)
    n_max = str(r["config"]["rows"])
    datasets = {}
    for name, d in r["datasets"].items():
        row = {"kind": d["kind"], "animal": d["animal"]}
        for key, cell in d.items():
            if "/" in key and key.endswith(f"/{n_max}"):
                ranked = cell["ranked"]
                rank = next((i + 1 for i, x in enumerate(ranked) if x[0] == d["animal"]), None)
                row[key.rsplit("/", 1)[0]] = {"top3": ranked[:3], "true_rank": rank,
                                              "flagged": cell["verdict"]["flagged"]}
        datasets[name] = row
    keep = ("config", "preset", "name", "fingerprint", "base_model", "sampler", "lora_init_seed", "reference",
            "direction_norms", "summary", "timings")
    return {**{k: r[k] for k in keep}, "datasets": datasets}


def _cells(summary: dict, det: str, var: str, sizes) -> list[dict]:
    return [summary[f"{det}/{var}/{n}"] for n in sizes]


def _err(mean, ci) -> list[float]:
    lo, hi = (np.nan if v is None else v for v in ci)
    return [0.0 if np.isnan(lo) else mean - lo, 0.0 if np.isnan(hi) else hi - mean]


def plot(data: dict, path) -> Path:
    import matplotlib.pyplot as plt

    s, cfg = data["summary"], data["config"]
    sizes = cfg["sizes"]
    dets = [d for d in DETECTORS if f"{d}/score/{sizes[0]}" in s]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    for det in dets:
        for j, var in enumerate(VARIANTS):
            color, ls = STYLE[(det, var)]
            cells = _cells(s, det, var, sizes)
            m = [c["auroc"]["neutral"]["auroc"] for c in cells]
            if any(v is None for v in m):
                continue
            err = np.array([_err(v, c["auroc"]["neutral"]["ci95"]) for v, c in zip(m, cells)]).T
            x = np.array(sizes) * (1 + 0.03 * (2 * j - 1 + (det == "coverage") * 0.5))
            ax.errorbar(x, m, yerr=err, color=color, ls=ls, marker="o", capsize=3, label=f"{det}, {LABELS[var]}")
    ax.axhline(0.5, color="k", lw=0.6)
    ax.axhline(0.95, color="k", lw=0.6, ls=":", label="goal 0.95")
    ax.set(xscale="log", xticks=sizes, xticklabels=[str(n) for n in sizes], ylim=(-0.02, 1.02),
           xlabel="rows in the dataset", ylabel="AUROC, trait data vs neutral",
           title="(a) carries a trait? top candidate's score as the statistic")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    chance = s[f"{dets[0]}/score/{sizes[0]}"]["chance"]
    for det in dets:
        for var in VARIANTS:
            color, ls = STYLE[(det, var)]
            cells = _cells(s, det, var, sizes)
            for k, marker in (("top1", "o"), ("top3", "^")):
                ax.plot(sizes, [c[k]["rate"] for c in cells], color=color, ls=ls, marker=marker,
                        label=f"{det}, {LABELS[var]}, {k}")
    for k, ls in (("top1", "-"), ("top3", "--")):
        ax.axhline(chance[k], color="k", lw=0.8, ls=ls, alpha=0.6)
        ax.annotate(f"chance {k} {chance[k]:.0%}", (sizes[0], chance[k]), fontsize=7, va="bottom")
    ax.set(xscale="log", xticks=sizes, xticklabels=[str(n) for n in sizes], ylim=(-0.02, 1.02),
           xlabel="rows in the dataset", ylabel="fraction of trait datasets",
           title=f"(b) naming the animal among {len(cfg['scan']['candidates'])} candidates")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1, 0]
    n = sizes[-1]
    kinds = ("trait", "neutral", "shuffled", "mixed")
    groups = [(det, var) for det in dets for var in VARIANTS]
    rng = np.random.default_rng(0)
    for g, (det, var) in enumerate(groups):
        tops = s[f"{det}/{var}/{n}"]["top_scores"]
        scale = max((abs(v) for k in kinds for v in tops[k]), default=1.0) or 1.0
        for j, kind in enumerate(kinds):
            v = np.asarray(tops[kind], float) / scale
            if v.size:
                ax.scatter(g + (j - 1.5) * 0.18 + rng.uniform(-0.05, 0.05, v.size), v, s=14,
                           color=KIND_COLORS[kind], label=kind if g == 0 else None)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(groups)), [f"{d}\n{LABELS[v]}" for d, v in groups], fontsize=8)
    ax.set(ylabel="top candidate's score / largest |score| of the panel",
           title=f"(c) every dataset's top score at {n} rows, by kind")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for det in dets:
        for var in VARIANTS:
            color, ls = STYLE[(det, var)]
            cells = _cells(s, det, var, sizes)
            own = [c["true_animal_score"] for c in cells]
            if own[0] is None:
                continue
            scale = max(abs(o["mean"]) for o in own) or 1.0
            m = [o["mean"] / scale for o in own]
            err = np.array([_err(o["mean"], o["ci95"]) for o in own]).T / scale
            ax.errorbar(sizes, m, yerr=err, color=color, ls=ls, marker="o", capsize=3,
                        label=f"{det}, {LABELS[var]} (max {scale:.3g})")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xscale="log", xticks=sizes, xticklabels=[str(n) for n in sizes], xlabel="rows in the dataset",
           ylabel="true animal's score / its largest mean", title="(d) the true animal's score (mean, 95% CI)")
    ax.legend(fontsize=7)
    for ax in (axes[0, 0], axes[0, 1], axes[1, 1]):
        ax.minorticks_off()
    t = data["timings"]
    # a resumed run's timings are those of its last pass only: no cost is claimed for it
    cost = "" if t.get("resumed") else f"; {t['cpu_s'] / 60:.0f} CPU-min"
    fig.suptitle(f"Trait scan on {data['base_model'].split(':')[0]}, {data['preset']} preset: "
                 f"{len(cfg['animals'])} animals x {cfg['replicates']} datasets, {cfg['neutral']} neutral, "
                 f"{cfg['shuffled']} shuffled, {cfg['mixed']} mixed ({data['sampler']} sampler){cost}", fontsize=10)
    return save_figure(fig, path)


def main(evaluation_path, out_dir=FIGURES_DIR, *, name: str) -> tuple[Path, Path]:
    data = compute(evaluation_path)
    stem = Path(out_dir) / name
    jp, png, _ = save_then_plot(data, stem.with_suffix(".json"), stem.with_suffix(".png"), plot)
    return jp, png


def run(preset: str = "quick", *, resume: bool = False, out: Path | None = None,
        figures_dir: Path = FIGURES_DIR, progress: bool = True) -> tuple[Path, Path]:
    """Run the evaluation's ``preset`` (runs/NAME unless ``out``), then draw it."""
    from llm_bridge import ScanEvalConfig, evaluate_scan

    cfg = {"tiny": ScanEvalConfig.tiny, "quick": ScanEvalConfig.quick, "paper": ScanEvalConfig.paper}[preset]()
    out = out or Path("runs") / cfg.name()
    evaluate_scan(cfg, out, resume=resume, progress=progress)
    return main(Path(out) / "evaluation.json", figures_dir, name=cfg.name())


def run_app():
    """The typer app of ``python -m figures.llm_scan_fig --preset ...`` (run the evaluation, then draw it)."""
    import typer

    from results.cli import figures_dir_option, make_app, out_option, preset_option, resume_option

    app = make_app(__doc__)

    @app.command(help=__doc__)
    def cli(preset: str = preset_option(help="tiny (tests), quick (SmolLM2 on 2 CPU cores) or paper (GPU)"),
            out: Path = out_option(None, help="the run folder (default runs/NAME)"),
            figures_dir: Path = figures_dir_option(FIGURES_DIR),
            resume: bool = resume_option("reuse the finished datasets and scans"),
            progress: bool = typer.Option(True, help="show progress bars")):
        print(*run(preset, resume=resume, out=out, figures_dir=figures_dir, progress=progress), sep="\n")

    return app


if __name__ == "__main__":
    if len(sys.argv) == 3 and not sys.argv[1].startswith("-"):  # FIGURE.json OUT.png
        replot_cli(plot, "figures.llm_scan_fig")
    else:
        run_app()(prog_name="python -m figures.llm_scan_fig")
