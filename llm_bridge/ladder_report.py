"""The ladder's report, model-free (no torch): ``summarize`` (means, bootstrap CIs, the scatter of trait-specific
projection against the rise of log P(trait) with its Spearman r), the markdown tables that ``--report`` prints and
paper_notes quotes, and ``record_summary``, which reads a record's sealed triples from any clone (paper Sections 3 and
6; the MNIST ladder of Section 6.2 carried to an LLM; ``llm_bridge.ladder`` trains what this reads)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from llm_bridge import prompts, rungs
from llm_bridge.config import LadderConfig
from results import load_json
from theory.stats import mean_ci, spearman_ci


class LadderError(RuntimeError):
    """A ladder run or record that cannot go on as asked (its message says what to do)."""


def record_summary(config: LadderConfig, record) -> dict:
    """``summarize`` over the triples a record has sealed so far: a long run's progress, readable from any clone
    without a model (the figure waits for the whole grid). Cells of unsealed triples are left out."""
    record = Path(record)
    if not record.is_dir():
        raise LadderError(f"no record at {record}; a full run writes it (python -m llm_bridge ladder --preset paper)")

    def triple(path: Path) -> str:  # geometry/INPUTS/RUNG/seedS.json -> INPUTS/RUNG/seedS
        return f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"

    geo = {triple(q): load_json(q) for q in sorted((record / "geometry").glob("*/*/seed*.json"))}
    first = {triple(q): load_json(q) for q in sorted((record / "first_step").glob("*/*/seed*.json"))}
    cells = [load_json(q) for q in sorted((record / "students").glob("*/*/*/seed*/cell.json"))]
    stale = sorted({c["fingerprint"] for c in cells} - {config.fingerprint()})
    if stale:
        raise LadderError(f"{record} holds cells of other settings (fingerprints {stale}, this config's is "
                          f"{config.fingerprint()}): pass the record of this config")
    cells = [c for c in cells if f"{c['inputs']}/{c['rung']}/seed{c['seed']}" in geo]
    result = {"trait": config.trait, "animals": list(prompts.ANIMALS), "cells": cells, "geometry": geo,
              "first_step": {k: v for k, v in first.items() if k in geo}}
    return {"triples": sorted(geo), "n_students": len(cells), **summarize(result)}


# ---- summary ----------------------------------------------------------------------------------------------------


def _brief(stat: dict) -> dict:
    """A mean_ci without its per-seed values (the per-layer tables would repeat them for every layer)."""
    return {k: v for k, v in stat.items() if k != "values"}


def _p(cell, animal_col) -> float:
    return float(np.nanmean(np.asarray(cell["p_QxA"], float)[:, animal_col]))


def summarize(result: dict) -> dict:
    """Per (inputs, rung, arm): P(trait) (exact and contains-rate), log-ratios against the neutral and the
    other-trait controls paired by seed, the other animals' P, and the geometry; the scatter across rungs x arms x
    seeds with Spearman's r and its bootstrap CI, pooled and per rung."""
    animals = result["animals"]
    ti = animals.index(result["trait"])
    cells = {(c["inputs"], c["rung"], c["arm"], c["seed"]): c for c in result["cells"]}
    groups = sorted({(k, r, a) for (k, r, a, _) in cells})
    out, points = {}, []
    for k, r, a in groups:
        seeds = sorted(s for (k2, r2, a2, s) in cells if (k2, r2, a2) == (k, r, a))
        pt = [_p(cells[k, r, a, s], ti) for s in seeds]
        row = {"seeds": seeds, "p_trait": mean_ci(pt),
               "p_other_animals": {an: float(np.mean([_p(cells[k, r, a, s], i) for s in seeds]))
                                   for i, an in enumerate(animals) if i != ti}}
        cont = [cells[k, r, a, s]["contains"] for s in seeds]
        if all(x is not None for x in cont):
            row["contains_rate"] = mean_ci([x[ti] if isinstance(x, list) else x[result["trait"]] for x in cont])
        for ref in ("control", "other"):
            paired = [s for s in seeds if (k, r, ref, s) in cells]
            if ref != a and paired:
                row[f"log_ratio_vs_{ref}"] = mean_ci([math.log(_p(cells[k, r, a, s], ti))
                                                      - math.log(_p(cells[k, r, ref, s], ti)) for s in paired])
        if "base_p_trait" in cells[k, r, a, seeds[0]]:
            row["perturbed_base_p_trait"] = mean_ci([cells[k, r, a, s]["base_p_trait"] for s in seeds])
            row["perturbed_base_text_nll"] = mean_ci([cells[k, r, a, s]["base_text_nll"] for s in seeds])
        if a != "control":
            for space in ("dW", "lora"):
                geo = [result["geometry"][f"{k}/{r}/seed{s}"]["arms"][a][space] for s in seeds]
                row[space] = {q: mean_ci([x["overall"][q] for x in geo]) for q in ("cos_student_teacher",
                                                                                  "proj_diff_specific",
                                                                                  "cos_diff_specific")}
                # where in the network the trait-specific component sits: per layer and per module type
                for kind in ("layer", "module"):
                    row[space][f"proj_diff_specific_by_{kind}"] = {
                        lab: _brief(mean_ci([x[kind][lab]["proj_diff_specific"] for x in geo])) for lab in geo[0][kind]}
            for s in seeds:
                if (k, r, "control", s) in cells:
                    x = result["geometry"][f"{k}/{r}/seed{s}"]["arms"][a]["dW"]["overall"]["proj_diff_specific"]
                    y = math.log(_p(cells[k, r, a, s], ti)) - math.log(_p(cells[k, r, "control", s], ti))
                    points.append({"inputs": k, "rung": r, "arm": a, "seed": s, "proj_diff_specific": x,
                                   "delta_log_p_trait": y})
        out[f"{k}/{r}/{a}"] = row
    first = {}
    for key, g in result["first_step"].items():
        k, r, _ = key.split("/")
        first.setdefault(f"{k}/{r}", []).append(g)
    first = {key: {"cos": mean_ci([g["cos"] for g in v]),
                   "fraction_nonnegative": float(np.mean([g["inner"] >= 0 for g in v])), "n": len(v)}
             for key, v in first.items()}
    scatter = {"points": points, **_spearman(points)}
    # within each rung too: the pooled r could come from the rungs' different levels alone (full's large transfer
    # against the others' small one), while a rung's own r asks whether the projection ranks transfer inside it
    names = list(dict.fromkeys(p["rung"] for p in points))  # not `rungs`: that is the module
    if len(names) > 1:
        scatter["by_rung"] = {r: _spearman([p for p in points if p["rung"] == r]) for r in names}
    return {"by_arm": out, "first_step": first, "scatter": scatter}


def _spearman(points: list[dict]) -> dict:
    """Spearman's r of the trait-specific projection against the transfer, with a 2000-resample bootstrap CI over
    single students (fixed seed); empty under 3 points."""
    return spearman_ci([p["proj_diff_specific"] for p in points], [p["delta_log_p_trait"] for p in points])


def format_ci(x: dict, f: str) -> str:
    """``mean [lo, hi]`` of a mean_ci in format ``f``; one seed has no CI (None, or NaN once through JSON): the mean
    alone. The tables and the prose that quotes them format through here."""
    lo, hi = x["ci95"]
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{x['mean']:{f}}"
    return f"{x['mean']:{f}} [{lo:{f}}, {hi:{f}}]"


def summary_tables(summary: dict, trait: str) -> list[str]:
    """The summary as markdown tables (what ``--report`` prints and paper_notes quotes): per rung and arm P(trait),
    its contains-rate, both log ratios, the other animals' rise over the control, median and top (is the shift
    specific?) and the geometry (dW space); the perturbed bases' own state; the first step per soft rung; the
    scatter's r, pooled and per rung. Means with their 95% bootstrap CI over seeds."""
    ci = format_ci
    base_arms = ("student", "control", "other")

    def order(key):  # the ladder's order: rung, then the three base arms, then the extras
        k, r, a = key.split("/")
        return k, rungs.RUNGS.index(r), base_arms.index(a) if a in base_arms else 3, a

    by = {k: summary["by_arm"][k] for k in sorted(summary["by_arm"], key=order)}
    lines = [f"| inputs / rung / arm | seeds | P({trait}) | contains-rate | log ratio vs control | "
             "vs other-trait control | other animals' rise: median, top | trait-specific projection | cos(dS, dT) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, row in by.items():
        cols = [key, str(len(row["seeds"])), ci(row["p_trait"], ".2e")]
        cols.append(ci(row["contains_rate"], ".1%").replace("%", "") + "%" if "contains_rate" in row else "-")
        cols += [ci(row[f"log_ratio_vs_{ref}"], "+.2f") if f"log_ratio_vs_{ref}" in row else "-"
                 for ref in ("control", "other")]
        # is the shift specific? how much the other animals' P rose over the control (ratio of the seed means): the
        # median one (a generic shift lifts it with the trait) and the top one
        control = by.get(key.rsplit("/", 1)[0] + "/control")
        if control is not None and row is not control:
            rise = {an: p / control["p_other_animals"][an] for an, p in row["p_other_animals"].items()}
            top = max(rise, key=rise.get)
            cols.append(f"x{np.median(list(rise.values())):.1f}, {top} x{rise[top]:.1f}")
        else:
            cols.append("-")
        cols += [ci(row["dW"][q], ".4f") if "dW" in row else "-" for q in ("proj_diff_specific",
                                                                          "cos_student_teacher")]
        lines.append("| " + " | ".join(cols) + " |")
    perturbed = [(k, r) for k, r in by.items() if "perturbed_base_p_trait" in r]
    if perturbed:
        lines += ["", f"| perturbed base | seeds | its own P({trait}) | its loss on the fixed text |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {len(r['seeds'])} | {ci(r['perturbed_base_p_trait'], '.1e')} | "
                  f"{ci(r['perturbed_base_text_nll'], '.3f')} |" for k, r in perturbed]
    if summary["first_step"]:
        lines += ["", "| first step (Theorem 1) | cos(-grad, dT) | non-negative |", "|---|---|---|"]
        lines += [f"| {k} | {ci(f['cos'], '.3f')} | {round(f['fraction_nonnegative'] * f['n'])} of {f['n']} |"
                  for k, f in sorted(summary["first_step"].items(), key=lambda kv: order(kv[0] + "/student"))]
    sc = summary["scatter"]
    if "spearman_r" in sc:
        lines += ["", f"| trait-specific projection vs dlog P({trait}) | Spearman r | students |", "|---|---|---|"]
        by_rung = sorted(sc.get("by_rung", {}).items(), key=lambda kv: rungs.RUNGS.index(kv[0]))
        for name, x in [("pooled", sc), *by_rung]:
            if "spearman_r" in x:
                lines.append(f"| {name} | {ci({'mean': x['spearman_r'], 'ci95': x['ci95']}, '+.2f')} | {x['n']} |")
    return lines
