"""The projection diagnostic on LoRA updates (paper Lemma 1 / Theorem 1), computed with the ``theory`` functions.

Two spaces: LoRA parameter space (theta = all A and B; the update is theta - theta_0, so it needs the shared init) and
weight space dW = (alpha / r) B A per adapted matrix (B_0 = 0 at peft's init, so dW_0 = 0 and no init is needed).
Reported overall, per layer and per module type, for the student (trained on the teacher's numbers) and the control
(same init, trained on the base's numbers) against the teacher's update dT."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import theory
from llm_bridge.lora import AdapterError, module_tree, read_adapter, scaling

_LAYER = re.compile(r"layers\.(\d+)\.")


def geometry(a, b) -> dict[str, float]:
    """Lemma 1's quantities of update ``a`` against update ``b`` (pytrees): cos, <a,b>/|b|^2, |a|, |b|."""
    return {"cos": float(theory.cosine(a, b)), "normalized_projection": float(theory.normalized_projection(a, b)),
            "inner": float(theory.inner(a, b)), "norm": float(theory.norm(a)), "norm_reference": float(theory.norm(b))}


def lora_delta(tree: dict, init: dict) -> dict:
    """theta - theta_0 in LoRA parameter space, module by module."""
    return {m: {"A": ab["A"] - init[m]["A"], "B": ab["B"] - init[m]["B"]} for m, ab in tree.items()}


def dw_tree(tree: dict, s: float) -> dict[str, np.ndarray]:
    """dW = s * B @ A (out x in) for every adapted module."""
    return {m: s * (ab["B"] @ ab["A"]) for m, ab in tree.items()}


def dw_inner_lowrank(tree1: dict, s1: float, tree2: dict, s2: float) -> float:
    """<dW1, dW2>_F summed over modules without forming dW: s1 s2 sum((B1^T B2) * (A1 A2^T)) (independent check of
    ``theory.inner`` on the materialized dW)."""
    return float(sum(s1 * s2 * np.sum((t1["B"].T.astype(np.float64) @ tree2[m]["B"])
                                      * (t1["A"].astype(np.float64) @ tree2[m]["A"].T))
                     for m, t1 in tree1.items()))


def groups(modules) -> dict[str, dict[str, list[str]]]:
    """Module paths grouped by layer index and by module type (the last path component, e.g. "q_proj")."""
    by_layer: dict[str, list[str]] = {}
    by_type: dict[str, list[str]] = {}
    for m in modules:
        hit = _LAYER.search(m)
        by_layer.setdefault(hit.group(1) if hit else "other", []).append(m)
        by_type.setdefault(m.rsplit(".", 1)[-1], []).append(m)
    by_layer = dict(sorted(by_layer.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit()
                                                             else 0)))
    return {"layer": by_layer, "module": by_type}


def compare(updates: dict[str, dict], reference: str = "teacher") -> dict:
    """Geometry of every update in ``updates`` against ``updates[reference]``: overall, per layer, per module type."""
    ref = updates[reference]
    out: dict = {"overall": {}, "layer": {}, "module": {}}
    grouping = groups(ref)
    for name, upd in updates.items():
        if name == reference:
            continue
        out["overall"][name] = geometry(upd, ref)
        for kind, by in grouping.items():
            for label, mods in by.items():
                out[kind].setdefault(label, {})[name] = geometry({m: upd[m] for m in mods}, {m: ref[m] for m in mods})
    return out


def _check_compatible(cfgs: dict[str, dict], trees: dict[str, dict], paths: dict[str, Path]) -> None:
    first = next(iter(cfgs))
    for name, cfg in cfgs.items():
        for key in ("r", "lora_alpha", "use_rslora"):
            if cfg.get(key) != cfgs[first].get(key):
                raise AdapterError(f"adapters differ in {key}: {paths[first]} has {cfgs[first].get(key)!r}, "
                                   f"{paths[name]} has {cfg.get(key)!r}; the diagnostic compares updates of one "
                                   "LoRA parameterization")
        b0, b1 = cfgs[first].get("base_model_name_or_path"), cfg.get("base_model_name_or_path")
        if b0 and b1 and b0 != b1:
            raise AdapterError(f"adapters come from different base models: {b0!r} ({paths[first]}) vs {b1!r} "
                               f"({paths[name]})")
        if set(trees[name]) != set(trees[first]):
            raise AdapterError(f"{paths[name]} adapts other modules than {paths[first]} (different target_modules)")
        for m, ab in trees[name].items():
            for part in ("A", "B"):
                if ab[part].shape != trees[first][m][part].shape:
                    raise AdapterError(f"{m}.lora_{part}: shape {ab[part].shape} in {paths[name]} vs "
                                       f"{trees[first][m][part].shape} in {paths[first]} (different base or rank)")


def diagnose(teacher, student, control=None, init=None) -> dict:
    """cos and normalized projection of the student's (and control's) LoRA update onto the teacher's, in dW space
    and, when the shared ``init`` adapter is given, in LoRA parameter space. Arguments are peft adapter folders."""
    paths = {k: Path(v) for k, v in (("teacher", teacher), ("student", student), ("control", control),
                                      ("init", init)) if v is not None}
    trees, cfgs = read_trees(paths)
    s = scaling(cfgs["teacher"])
    trained = [k for k in ("teacher", "student", "control") if k in trees]
    init_b = max(float(np.abs(ab["B"]).max()) for ab in trees["init"].values()) if "init" in trees else None
    dw0 = dw_tree(trees["init"], s) if init_b else None  # peft's init has B_0 = 0, so dW_0 = 0: skip the work
    dw = {k: dw_tree(trees[k], s) for k in trained}
    if dw0 is not None:  # general case; with peft's init (B_0 = 0) dW_0 is exactly 0
        dw = {k: {m: w - dw0[m] for m, w in v.items()} for k, v in dw.items()}
    result = {"scaling": s, "r": cfgs["teacher"]["r"], "modules": len(trees["teacher"]),
              "params_lora": int(sum(a.size for ab in trees["teacher"].values() for a in ab.values())),
              "params_dW": int(sum(w.size for w in dw["teacher"].values())),
              "init_max_abs_B": init_b, "dW": compare(dw)}
    if "init" in trees:
        result["lora"] = compare({k: lora_delta(trees[k], trees["init"]) for k in trained})
    else:
        result["lora"] = None
        result["note"] = "LoRA-space geometry needs the shared init adapter (--init); dW space assumes B_0 = 0"
    return result


def read_trees(paths: dict[str, Path]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Module trees of saved adapters (checked finite and mutually compatible) and their peft configs."""
    cfgs, trees = {}, {}
    for name, p in paths.items():
        cfgs[name], tensors = read_adapter(p)
        trees[name] = module_tree(tensors)
        for m, ab in trees[name].items():
            for part, a in ab.items():
                if not np.all(np.isfinite(a)):
                    raise AdapterError(f"{p}: {m}.lora_{part} holds NaN or inf (diverged training?)")
    _check_compatible(cfgs, trees, paths)
    return trees, cfgs


def gram_by_module(paths: dict[str, Path], *, init: str = "init") -> dict:
    """Per adapted module, the float64 Gram matrix of the updates of every adapter in ``paths`` but ``init``: in LoRA
    space (theta - theta_0) and in dW space (s B A - s B_0 A_0, found from r x r products, never forming dW).
    Summing the matrices of any group of modules gives that group's Gram matrix, from which
    ``theory.trait_specific_from_gram`` draws every trait-specific quantity."""
    trees, cfgs = read_trees(paths)
    s = scaling(cfgs[init])
    names = [n for n in paths if n != init]
    raw = names + [init]
    k = len(names)
    P = np.hstack([np.eye(k), -np.ones((k, 1))])  # update_i = v_i - v_init
    out: dict = {"names": names, "scaling": s, "lora": {}, "dW": {}}
    for m in trees[init]:
        vecs = np.stack([np.concatenate([(trees[n][m][p].astype(np.float64) - trees[init][m][p]).ravel()
                                         for p in ("A", "B")]) for n in names])
        out["lora"][m] = (vecs @ vecs.T).tolist()
        A = [trees[n][m]["A"].astype(np.float64) for n in raw]
        B = [trees[n][m]["B"].astype(np.float64) for n in raw]
        g = np.array([[s * s * np.sum((B[i].T @ B[j]) * (A[i] @ A[j].T)) for j in range(k + 1)]
                      for i in range(k + 1)])
        out["dW"][m] = (P @ g @ P.T).tolist()
    return out


def trait_specific_groups(grams: dict, roles: dict[str, str]) -> dict:
    """``theory.trait_specific_from_gram`` overall, per layer and per module type, in both spaces; ``roles`` maps
    student / control / teacher / neutral to adapter names of ``grams`` (e.g. the shuffle halves as student/control)."""
    index = {role: grams["names"].index(name) for role, name in roles.items()}
    out = {}
    for space in ("lora", "dW"):
        per = {m: np.asarray(g) for m, g in grams[space].items()}
        res = {"overall": theory.trait_specific_from_gram(sum(per.values()), index)}
        for kind, by in groups(per).items():
            res[kind] = {lab: theory.trait_specific_from_gram(sum(per[m] for m in mods), index)
                         for lab, mods in by.items()}
        out[space] = res
    return out
