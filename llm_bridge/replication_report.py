"""The replication study's report, model-free (no torch): per rung, variant and trait, the rise of log P(trait)
against the neutral control and against the other traits' students, the trait's rise over the median other animal,
the trait-specific projections and the contains-rate, each with a teacher-level 95% CI (the t-interval on the
teacher means, beside a two-stage bootstrap over teachers, then students: ``theory.stats.hierarchical_ci``); the
dose-response's Spearman r within the arm, pooled and within each teacher; markdown tables; and
``record_summary``, which reads a record's sealed units from any clone (``llm_bridge.replication`` trains them)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from llm_bridge import rungs
from llm_bridge.config import ReplicationConfig
from llm_bridge.ladder_report import format_ci
from results import load_json
from theory.stats import hierarchical_ci, spearman_ci, stratified_spearman

NEUTRAL = "neutral"
VARIANT_ORDER = ("lora", "fullft", "newinit", "perturbed", "mix")


class ReplicationError(RuntimeError):
    """A replication run or record that cannot go on as asked (its message says what to do)."""


def control_variant(variant: str) -> str:
    """The variant of an arm's neutral control: the mixtures are measured against the plain LoRA control (alpha 0),
    every other variant against a control trained its own way."""
    return "lora" if variant.startswith("mix") else variant


def group_of(variant: str) -> str:
    """The unit group that trains (and seals) a variant: the mixtures train beside the LoRA arms."""
    return "lora" if variant.startswith("mix") else variant


def unit_key(r: int, rung: str, seed: int, variant: str) -> str:
    return f"r{r}/{rung}/seed{seed}/{group_of(variant)}"


def log_p(cell: dict, col: int, field: str = "p_QxA") -> float:
    """log of P(answer starts with the animal of column ``col``), averaged over the questions."""
    return math.log(float(np.nanmean(np.asarray(cell[field], float)[:, col])))


def loss_fall(cell: dict) -> float:
    """How far a student's imitation loss fell: the mean of its last quarter of steps over its first step (one
    batch's loss is noisy; cells without the quarter mean fall back to the last step)."""
    return cell.get("loss_last_quarter", cell["loss_last"]) / cell["loss_first"]


def _by_teacher(values: dict[tuple[int, int], float]) -> list[list[float]]:
    """{(replicate, seed): value} -> one list per replicate (the bootstrap's groups), in replicate order."""
    reps = sorted({r for r, _ in values})
    return [[values[r, s] for (r2, s) in sorted(values) if r2 == r] for r in reps]


def _ci(values: dict[tuple[int, int], float]) -> dict | None:
    return hierarchical_ci(_by_teacher(values), n_boot=4000) if values else None


def summarize(result: dict) -> dict:
    """``by_arm``: per "rung/variant/teacher" the statistics above (hierarchical CIs); ``dose``: the mixtures' and
    the student's points (trait-specific projection on dT - dN against the rise of log P(trait) over the control),
    their Spearman r with a CI that resamples whole teachers, and the mean rise per alpha."""
    animals, traits = result["animals"], result["traits"]
    cells = {(c["replicate"], c["rung"], c["seed"], c["teacher"], c["variant"]): c for c in result["cells"]}
    geo = result["geometry"]
    groups = sorted({(rung, v, t) for (_, rung, _, t, v) in cells})
    by_arm = {}
    for rung, v, t in groups:
        keys = sorted((r, s) for (r, rung2, s, t2, v2) in cells if (rung2, t2, v2) == (rung, t, v))
        row: dict = {"teachers": sorted({r for r, _ in keys}), "students": len(keys)}
        row["loss_fall"] = _ci({k: loss_fall(cells[(k[0], rung, k[1], t, v)]) for k in keys})
        if t != NEUTRAL:
            col = animals.index(t)
            ctrl = {k: cells.get((k[0], rung, k[1], NEUTRAL, control_variant(v))) for k in keys}
            paired = [k for k in keys if ctrl[k] is not None]
            me = {k: cells[(k[0], rung, k[1], t, v)] for k in keys}
            row["log_ratio_vs_neutral"] = _ci({k: log_p(me[k], col) - log_p(ctrl[k], col) for k in paired})
            # the trait's rise over the median other animal's (log scale): a generic shift lifts them together
            row["rise_over_median_animal"] = _ci({k: (log_p(me[k], col) - log_p(ctrl[k], col)) - float(np.median(
                [log_p(me[k], j) - log_p(ctrl[k], j) for j in range(len(animals)) if j != col])) for k in paired})
            others = {k: [cells.get((k[0], rung, k[1], o, v)) for o in traits if o != t] for k in keys}
            full = [k for k in keys if others[k] and all(x is not None for x in others[k])]
            if v == "lora":
                row["log_ratio_vs_other_traits"] = _ci({k: log_p(me[k], col) - float(np.mean(
                    [log_p(x, col) for x in others[k]])) for k in full})
            if "base_p_QxA" in me[keys[0]]:  # a perturbed base: the student against its own base too
                row["log_ratio_vs_own_base"] = _ci({k: log_p(me[k], col) - log_p(me[k], col, "base_p_QxA")
                                                    for k in keys})
                row["base_text_nll"] = _ci({k: me[k]["base_text_nll"] for k in keys})
            for space in ("dW", "lora"):
                for ref in ("vs_neutral", "vs_other", "matched"):
                    vals = {}
                    for k in paired:
                        g = geo.get(unit_key(k[0], rung, k[1], v), {}).get("arms", {}).get(f"{t}_{v}", {})
                        if ref in g.get(space, {}):
                            vals[k] = g[space][ref]["proj_diff_specific"]
                    if vals:
                        row[f"proj_{ref}_{space}"] = _ci(vals)
        if any(cells[(k[0], rung, k[1], t, v)].get("contains") for k in keys):
            rates = {t2: _ci({k: cells[(k[0], rung, k[1], t, v)]["contains"]["rate"][t2] for k in keys})
                     for t2 in traits}
            row["contains_rate"] = rates
            row["contains_answers"] = int(sum(cells[(k[0], rung, k[1], t, v)]["contains"]["n"] for k in keys))
            if t != NEUTRAL:  # the student's rate of its own trait minus its control's, paired by teacher and seed
                have = [k for k in paired if ctrl[k].get("contains")]
                row["contains_rate_minus_control"] = _ci({k: me[k]["contains"]["rate"][t]
                                                          - ctrl[k]["contains"]["rate"][t] for k in have})
        by_arm[f"{rung}/{v}/{t}"] = row
    return {"by_arm": by_arm, "dose": dose(result, cells)}


def dose(result: dict, cells: dict) -> dict:
    """The probe trait's students on the digits rung's first seed at alpha = mixture weights and 1 (the student):
    points (trait-specific projection on dT - dN in dW space, rise of log P(trait) over the neutral control), the
    Spearman r within this arm with a bootstrap CI over whole teachers, the r within each teacher (their mean and a
    permutation p-value that shuffles within teachers: ``theory.stats.stratified_spearman``), and each alpha's mean
    rise."""
    P = result["probe_trait"]
    col = result["animals"].index(P)
    points = []
    for (r, rung, s, t, v), c in sorted(cells.items()):
        if rung != "digits" or t != P or not (v == "lora" or v.startswith("mix")):
            continue
        ctrl = cells.get((r, rung, s, NEUTRAL, "lora"))
        g = result["geometry"].get(unit_key(r, rung, s, v), {}).get("arms", {}).get(f"{t}_{v}")
        if ctrl is None or g is None:
            continue
        alpha = 1.0 if v == "lora" else float(v[3:])
        if s != min(s2 for (r2, rung2, s2, t2, v2) in cells if (r2, rung2, t2, v2) == (r, rung, t, v)):
            continue  # one seed per teacher and alpha: the mixtures train on the first seed only
        points.append({"replicate": r, "seed": s, "alpha": alpha, "proj": g["dW"]["vs_neutral"]["proj_diff_specific"],
                       "delta_log_p": log_p(c, col) - log_p(ctrl, col)})
    out = {"points": points}
    if points:
        x, y, g = [p["proj"] for p in points], [p["delta_log_p"] for p in points], [p["replicate"] for p in points]
        out.update(spearman_ci(x, y, groups=g))
        # the teachers differ in level; ranking within each teacher is what "the diagnostic ranks transfer" means
        out["within_teacher"] = stratified_spearman(x, y, g)
        out["by_alpha"] = {f"{a:g}": _ci({(p["replicate"], p["seed"]): p["delta_log_p"] for p in points
                                          if p["alpha"] == a}) for a in sorted({p["alpha"] for p in points})}
    return out


def _order(key: str):
    rung, v, t = key.split("/")
    kind = next(i for i, name in enumerate(VARIANT_ORDER) if v.startswith(name))
    return (0 if rung == "digits" else 1 + rungs.RUNGS.index(rung), kind, v, t == NEUTRAL, t)


def summary_tables(summary: dict) -> list[str]:
    """The summary as markdown (what ``--report`` prints and paper_notes quotes): per rung / variant / teacher the
    log ratios against the neutral control and the other traits' students, the rise over the median other animal
    and both trait-specific projections (dW space) with 95% hierarchical CIs over teachers; the contains-rates; the
    dose-response."""
    def ci(x, f):
        return "-" if x is None else format_ci(x, f)

    lines = ["| rung / variant / teacher | teachers x students | log ratio vs neutral | vs other traits | "
             "rise over median animal | proj. on dT - dN | proj. on dT - dO | matched: dS - dS_O on dT - dO | "
             "imitation loss, last quarter / first |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = summary["by_arm"]
    for key in sorted(by, key=_order):
        row = by[key]
        lines.append(f"| {key} | {len(row['teachers'])} x {row['students'] // max(len(row['teachers']), 1)} | "
                     + " | ".join(ci(row.get(q), "+.2f") for q in ("log_ratio_vs_neutral",
                                                                    "log_ratio_vs_other_traits",
                                                                    "rise_over_median_animal"))
                     + " | " + " | ".join(ci(row.get(q), ".4f") for q in ("proj_vs_neutral_dW", "proj_vs_other_dW",
                                                                  "proj_matched_dW"))
                     + f" | {ci(row.get('loss_fall'), '.3f')} |")
    rates = [(k, r) for k, r in sorted(by.items(), key=lambda kv: _order(kv[0])) if "contains_rate" in r]
    if rates:
        traits = list(rates[0][1]["contains_rate"])

        def pct(x):
            return None if x is None else {"mean": 100 * x["mean"],
                                           "ci95": [None if v is None else 100 * v for v in x["ci95"]]}

        lines += ["", "| contains-rate, sampled answers | answers | " + " | ".join(traits)
                  + " | own trait minus control |", "|---|---|" + "---|" * (len(traits) + 1)]
        lines += [f"| {k} | {r['contains_answers']} | " + " | ".join(
            ci(pct(r["contains_rate"][t]), ".2f") + "%" for t in traits)
            + f" | {ci(pct(r.get('contains_rate_minus_control')), '+.2f')} |" for k, r in rates]
    own = [(k, r) for k, r in by.items() if "log_ratio_vs_own_base" in r]
    if own:
        lines += ["", "| perturbed student | log ratio vs its own base | its base's loss on the fixed text |",
                  "|---|---|---|"]
        lines += [f"| {k} | {ci(r['log_ratio_vs_own_base'], '+.2f')} | {ci(r['base_text_nll'], '.3f')} |"
                  for k, r in sorted(own)]
    d = summary["dose"]
    if d.get("points"):
        lines += ["", "| dose: alpha | log ratio vs neutral |", "|---|---|"]
        lines += [f"| {a} | {ci(x, '+.2f')} |" for a, x in d["by_alpha"].items()]
        if "spearman_r" in d:
            lines.append(f"| Spearman r (projection vs rise), {d['n']} students | "
                         f"{ci({'mean': d['spearman_r'], 'ci95': d['ci95']}, '+.2f')} |")
        w = d.get("within_teacher")
        if w:
            lines.append(f"| the same within each teacher, mean of {w['n_groups']} | {w['within_r']:+.2f} "
                         f"(permutation p = {w['p_one_sided']:.3f}; per teacher "
                         + ", ".join(f"{v:+.2f}" for v in w["per_group"].values()) + ") |")
    return lines


def record_summary(config: ReplicationConfig, record) -> dict:
    """``summarize`` over the units a record has sealed so far (a long run's progress, from any clone, without a
    model). Cells of unsealed units are left out."""
    record = Path(record)
    if not record.is_dir():
        raise ReplicationError(f"no record at {record}; a paper run writes it (python -m llm_bridge replicate "
                               "--preset paper)")
    geo = {}
    for q in sorted((record / "geometry").glob("r*/*/seed*/*.json")):
        g = load_json(q)
        geo[g["unit"]] = g
    cells = [load_json(q) for q in sorted((record / "students").glob("r*/*/seed*/*/cell.json"))]
    stale = sorted({c["fingerprint"] for c in [*cells, *geo.values()]} - {config.fingerprint()})
    if stale:
        raise ReplicationError(f"{record} holds cells or geometry of other settings (fingerprints {stale}, this "
                               f"config's is {config.fingerprint()}): pass the record of this config")
    cells = [c for c in cells if c["unit"] in geo]
    from llm_bridge.prompts import ANIMALS

    result = {"animals": list(ANIMALS), "traits": list(config.traits), "probe_trait": config.probe_trait,
              "cells": cells, "geometry": geo}
    return {"units": sorted(geo), "n_students": len(cells), **summarize(result)}
