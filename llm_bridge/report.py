"""The pipeline's summary across seeds (``OUT/results.json``, the figure's input): geometry of dS and dC against dT
(mean and 95% bootstrap CI over seeds), the first step's signs, the number pass rates, and P(trait) per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm_bridge.config import LLMConfig, run_name
from results import load_json
from theory.stats import mean_ci


def p_target(model: dict, target: str) -> np.ndarray:
    """P(answer starts with ``target``) per question of one measured model (NaN when the target was not scored)."""
    if target not in model["animals"]:
        return np.full(len(model["p_QxA"]), np.nan)
    return np.asarray(model["p_QxA"])[:, model["animals"].index(target)]


def sampled_target(models: list[dict], target: str) -> dict:
    """From sampled answers of one model (of each seed): the authors' contains-rate of the target (mean and CI over
    the pooled per-question rates, seeds x questions) and the share whose first named animal is the target."""
    sampled = [m["sampled"] for m in models if m.get("sampled")]
    if not sampled:
        return {"contains_rate": None, "sampled_share": None}
    rates = [row[s["animals"].index(target)] for s in sampled if "contains_QxA" in s for row in s["contains_QxA"]]
    return {"contains_rate": mean_ci(rates) if rates else None,
            "samples_per_question": sampled[0].get("samples_per_question"),
            "sampled_share": float(np.mean([s["share"].get(target, np.nan) for s in sampled]))}


def first_step_kinds(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["kind"] for r in rows))


def first_step_cell(rows: list[dict], eps: float) -> dict:
    """Signs of <-grad, dT> over the cell's checks (a zero step, e.g. coupled draws that all agree, counted apart),
    the cosine over the nonzero steps, and projection / eps over all of them (zeros included: an unbiased mean)."""
    inner = np.array([r["inner"] for r in rows])
    moved = [r for r in rows if r["norm"] > 0]
    return {"fraction_nonnegative": float(np.mean(inner >= 0)), "fraction_positive": float(np.mean(inner > 0)),
            "fraction_zero": float(np.mean(inner == 0)), "n": len(rows),
            "cos": mean_ci([r["cos"] for r in moved] or [float("nan")]),
            "normalized_projection": mean_ci([r["normalized_projection"] / eps if r["norm"] > 0 else 0.0
                                              for r in rows])}


def summarize(config: LLMConfig, out) -> dict:
    out = Path(out)
    seeds = config.seeds
    diag = {s: load_json(out / f"seed{s}" / "diagnostic.json") for s in seeds}
    res: dict = {"config": config.to_dict(), "preset": config.preset_name, "run": run_name(config), "geometry": {}}
    for space in ("dW", "lora"):
        g = {}
        for who in ("student", "control"):
            g[who] = {q: mean_ci([diag[s][space]["overall"][who][q] for s in seeds])
                      for q in ("cos", "normalized_projection")}
        g["student_minus_control_cos"] = mean_ci([diag[s][space]["overall"]["student"]["cos"]
                                                   - diag[s][space]["overall"]["control"]["cos"] for s in seeds])
        for kind in ("layer", "module"):
            labels = list(diag[seeds[0]][space][kind])
            g[kind] = {lab: {who: mean_ci([diag[s][space][kind][lab][who]["cos"] for s in seeds])
                             for who in ("student", "control")} for lab in labels}
        res["geometry"][space] = g
    res["params"] = {k: diag[seeds[0]][k] for k in ("params_lora", "params_dW", "modules", "r", "scaling")}
    fs = [r for s in seeds for r in load_json(out / f"seed{s}" / "first_step.json")["rows"]]
    res["first_step"] = {kind: {str(eps): first_step_cell(rows, eps) for eps in config.first_step_eps
                                if (rows := [r for r in fs if r["kind"] == kind and r["eps"] == eps])}
                         for kind in first_step_kinds(fs)}
    res["numbers"] = {}
    for src in ("teacher", "base"):
        nums = [load_json(out / f"seed{s}" / f"numbers_{src}.json") for s in seeds]
        free = [n["free_sampling"]["kept_fraction"] for n in nums if n["free_sampling"]]
        res["numbers"][src] = {"kept_fraction": mean_ci([n["kept_fraction"] for n in nums]),
                               "free_sampling_kept_fraction": mean_ci(free or [float("nan")])}
    res["numbers"]["student_examples"] = [load_json(out / f"seed{s}" / "student" / "subliminal.json")["examples"]
                                          for s in seeds]
    # trait: P(target) per model, pooled over seeds x questions
    target = config.trait
    base = load_json(out / "trait_base.json")["models"]
    per_seed = {s: load_json(out / f"seed{s}" / "trait.json")["models"] for s in seeds}
    trait = {"target": target, "scored_animals": base["base"]["animals"]}
    for name in ("base", "base+system_prompt"):
        trait[name] = {"p_target": mean_ci(p_target(base[name], target)), **sampled_target([base[name]], target)}
    for name in ("teacher", "student", "control"):
        vals = [p for s in seeds for p in p_target(per_seed[s][name], target)]
        trait[name] = {"p_target": mean_ci(vals), **sampled_target([per_seed[s][name] for s in seeds], target)}
    res["trait"] = trait
    return res
