"""The full LLM ladder's published numbers, recomputed from its committed record's raw files by code of this file's
own: json, numpy and scipy.stats, nothing of ``llm_bridge`` (no ``summarize``, ``summary_tables``, ``format_ci``) and
nothing of ``theory.stats``. Only the tolerance comes from the project (``theory.tolerances``, float64: every number
here is a float64 computation on the JSON's float64 values).

The definitions, as the ladder publishes them (paper_notes, docs/llm.md): a student's P(trait) is the mean over the
evaluation questions of its probability of naming the trait animal (``p_QxA[:, trait]``); an arm's P(trait) is the mean
over its seeds; a log ratio against a control is log P(arm) - log P(control) of the same seed, averaged over the seeds
both have; the contains-rate is the fraction of sampled answers that name the animal. Every "mean [lo, hi]" is a 95%
percentile bootstrap over the seeds: 10,000 resamples of the seed values from ``numpy.random.default_rng(0)``, the
2.5 and 97.5 percentiles of the resampled means. The scatter's Spearman r pairs each non-control student's
trait-specific projection (dW space) with its log ratio against the control of its seed; its CI is a 2,000-resample
percentile bootstrap over single students (``default_rng(0)``, one draw of n indices per resample, resamples with a
constant axis dropped), or over whole (inputs, rung, seed) triples where the text says so.

Two checks of each CI: (1) the same seeded bootstrap, written here afresh, must give the figure's interval to float64
tolerance; (2) an interval from a different method must agree within a stated bound: for the means, the exact
bootstrap distribution F (all n^n equally likely resamples, no random numbers); for the Spearman r, a 20,000-resample
reference bootstrap from another seed. The bound: numpy's percentile p of B resamples interpolates between the order
statistics k = floor(p (B - 1)) + 1 and k + 1, and F at the k-th of B draws from F is a Beta(k, B + 1 - k) variable
(F(F^-1(U)) >= U covers an F with atoms), so a published end lies where F(end) >= Beta(k, B+1-k)'s 1e-6/2 quantile
and F(end-) <= Beta(k+1, B-k)'s 1 - 1e-6/2 quantile: for p = 2.5% and B = 10,000, F between 1.8% and 3.3%. For the
Spearman r, F is known only through the reference's empirical CDF, whose error at a fixed point is binomial: 5.3 of its
standard deviations (two-sided 1e-7) are added on both sides."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
NAME = "llm_ladder_full_smollm2-135m_owl_seeds5_2a5d905754"
FIGURE = ROOT / "figures" / f"{NAME}.json"
RECORD = ROOT / "figures" / f"{NAME}_record"
DOCS = ("README.md", "docs/llm.md", "paper_notes.md")
RUNG_ORDER = ("full", "no-trait-words", "digits", "sampled")
BASE_ARMS = ("student", "control", "other")
N_BOOT, N_BOOT_R, N_REF_R = 10_000, 2_000, 20_000
LEVEL = 0.95


def _float64_tolerance():
    from theory.tolerances import tolerances

    t = tolerances(np.float64)
    return t.rtol, t.atol


def beta_band(p: float, n_draws: int, alpha: float = 1e-6) -> tuple[float, float]:
    """Where F(q) of the percentile q of n_draws resamples from F lies, with probability 1 - alpha (see the top)."""
    k = math.floor(p * (n_draws - 1)) + 1
    return (float(stats.beta.ppf(alpha / 2, k, n_draws + 1 - k)),
            float(stats.beta.ppf(1 - alpha / 2, k + 1, n_draws - k)))


# ---- reading the record ------------------------------------------------------------------------------------------


def read_record(record: Path, fingerprint: str) -> dict:
    """Every student cell, geometry and first-step file of the record, keyed by what its path says (and checked
    against what the file says of itself)."""
    cells, geometry, first = {}, {}, {}
    for path in sorted(record.glob("students/*/*/*/seed*/cell.json")):
        inputs, rung, arm, seed_dir = path.parts[-5:-1]
        c = json.loads(path.read_text())
        key = (inputs, rung, arm, int(seed_dir.removeprefix("seed")))
        assert (c["inputs"], c["rung"], c["arm"], c["seed"]) == key, f"{path} says it is {c['inputs']}/{c['rung']}"
        assert c["fingerprint"] == fingerprint, f"{path} holds another setting's cell ({c['fingerprint']})"
        cells[key] = c
    for folder, into in (("geometry", geometry), ("first_step", first)):
        for path in sorted(record.glob(f"{folder}/*/*/seed*.json")):
            into[(path.parts[-3], path.parts[-2], int(path.stem.removeprefix("seed")))] = json.loads(path.read_text())
    for key, g in first.items():
        assert g["fingerprint"] == fingerprint, f"first step {key} holds another setting's numbers"
    for key, g in geometry.items():  # its fingerprint is the setting's and the arm set's: check the arms themselves
        arms = {a for (i, r, a, s) in cells if (i, r, s) == key}
        assert set(g["arms"]) == arms - {"control"}, f"geometry {key} covers {sorted(g['arms'])}, not {sorted(arms)}"
    # a triple counts once its geometry is written (the last of its files); cells of unfinished triples stay out
    cells = {k: c for k, c in cells.items() if (k[0], k[1], k[3]) in geometry}
    first = {k: g for k, g in first.items() if k in geometry}
    return {"cells": cells, "geometry": geometry, "first": first}


# ---- statistics, written here ------------------------------------------------------------------------------------


def seeded_bootstrap(values, n_boot: int = N_BOOT, seed: int = 0) -> list[float]:
    """95% percentile bootstrap of the mean: n_boot resamples of n indices drawn at once from default_rng(seed)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return [math.nan, math.nan]
    draws = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    means = v[draws].mean(axis=1)
    return [float(x) for x in np.percentile(means, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])]


def mean_with_ci(values) -> dict:
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)), "ci95": seeded_bootstrap(v), "n": len(v), "values": v}


def exact_bootstrap_means(values) -> np.ndarray:
    """The means of all n^n equally likely resamples of n values, sorted (the bootstrap distribution itself)."""
    v = np.asarray(values, dtype=np.float64)
    picks = np.array(list(itertools.product(range(v.size), repeat=v.size)))
    return np.sort(v[picks].mean(axis=1))


def rank_r(x, y) -> float:
    """Spearman's r as Pearson's r of the average ranks."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_r_rows(x_BxN: np.ndarray, y_BxN: np.ndarray) -> np.ndarray:
    """Spearman's r of each row pair (ties averaged), vectorized."""
    rx, ry = stats.rankdata(x_BxN, axis=1), stats.rankdata(y_BxN, axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))


def spearman_with_ci(x, y, groups=None, seed: int = 0) -> dict:
    """Spearman's r (scipy) with the 2,000-resample percentile bootstrap: each resample draws as many units as there
    are (single points, or whole groups), one default_rng(seed) draw per resample; constant resamples are dropped."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if groups is None:
        units = [np.array([i]) for i in range(x.size)]
    else:
        units = [np.flatnonzero(np.asarray(groups) == g) for g in sorted(set(groups))]
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(N_BOOT_R):
        i = np.concatenate([units[j] for j in rng.integers(0, len(units), len(units))])
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            rs.append(rank_r(x[i], y[i]))
    r = float(stats.spearmanr(x, y).statistic)
    return {"spearman_r": r, "ci95": [float(q) for q in np.percentile(rs, [2.5, 97.5])], "n": int(x.size)}


# ---- the summary, recomputed -------------------------------------------------------------------------------------


def p_of(cell: dict, animal: str) -> float:
    """A student's P(animal): its mean over the evaluation questions."""
    col = cell["animals"].index(animal)
    return float(np.nanmean(np.array([row[col] for row in cell["p_QxA"]], dtype=np.float64)))


def recompute(raw: dict, trait: str) -> dict:
    """The figure JSON's ``summary`` (by_arm, first_step, scatter), built from the raw files."""
    cells, geometry = raw["cells"], raw["geometry"]
    animals = next(iter(cells.values()))["animals"]
    assert all(c["animals"] == animals for c in cells.values()), "the cells score different animal lists"
    by_arm, points = {}, []
    for inputs, rung, arm in sorted({k[:3] for k in cells}):
        seeds = sorted(s for (i, r, a, s) in cells if (i, r, a) == (inputs, rung, arm))
        mine = [cells[inputs, rung, arm, s] for s in seeds]
        row: dict = {"seeds": seeds, "p_trait": mean_with_ci([p_of(c, trait) for c in mine]),
                     "p_other_animals": {an: float(np.mean([p_of(c, an) for c in mine]))
                                         for an in animals if an != trait}}
        if all(c["contains"] is not None for c in mine):
            row["contains_rate"] = mean_with_ci([c["contains"][trait] for c in mine])
        for ref in ("control", "other"):
            paired = [s for s in seeds if (inputs, rung, ref, s) in cells]
            if arm != ref and paired:
                row[f"log_ratio_vs_{ref}"] = mean_with_ci(
                    [math.log(p_of(cells[inputs, rung, arm, s], trait)) - math.log(p_of(cells[inputs, rung, ref, s],
                                                                                        trait)) for s in paired])
        if "base_p_trait" in mine[0]:
            row["perturbed_base_p_trait"] = mean_with_ci([c["base_p_trait"] for c in mine])
            row["perturbed_base_text_nll"] = mean_with_ci([c["base_text_nll"] for c in mine])
        if arm != "control":
            for space in ("dW", "lora"):
                geo = [geometry[inputs, rung, s]["arms"][arm][space] for s in seeds]
                row[space] = {q: mean_with_ci([g["overall"][q] for g in geo])
                              for q in ("cos_student_teacher", "proj_diff_specific", "cos_diff_specific")}
                for part in ("layer", "module"):
                    row[space][f"proj_diff_specific_by_{part}"] = {
                        label: {k: v for k, v in mean_with_ci([g[part][label]["proj_diff_specific"]
                                                              for g in geo]).items() if k != "values"}
                        for label in geo[0][part]}
            for s in seeds:
                if (inputs, rung, "control", s) in cells:
                    points.append({"inputs": inputs, "rung": rung, "arm": arm, "seed": s,
                                   "proj_diff_specific": geometry[inputs, rung, s]["arms"][arm]["dW"]["overall"][
                                       "proj_diff_specific"],
                                   "delta_log_p_trait": math.log(p_of(cells[inputs, rung, arm, s], trait))
                                   - math.log(p_of(cells[inputs, rung, "control", s], trait))})
        by_arm[f"{inputs}/{rung}/{arm}"] = row
    first: dict = {}
    for (inputs, rung, _), g in sorted(raw["first"].items()):
        first.setdefault(f"{inputs}/{rung}", []).append(g)
    first = {k: {"cos": mean_with_ci([g["cos"] for g in v]),
                 "fraction_nonnegative": sum(g["inner"] >= 0 for g in v) / len(v), "n": len(v)}
             for k, v in first.items()}

    def scatter_of(pts):
        return spearman_with_ci([p["proj_diff_specific"] for p in pts], [p["delta_log_p_trait"] for p in pts])

    scatter = {"points": points, **scatter_of(points),
               "by_rung": {r: scatter_of([p for p in points if p["rung"] == r])
                           for r in dict.fromkeys(p["rung"] for p in points)}}
    return {"by_arm": by_arm, "first_step": first, "scatter": scatter}


def compare(mine, theirs, path: str, rtol: float, atol: float, out: list, counter: list) -> None:
    """Every leaf of ``theirs`` equal to ``mine`` (floats to rtol/atol, the rest exactly); the same keys on both sides.
    Mismatches go to ``out`` as 'path: mine vs theirs'; ``counter[0]`` counts the numbers compared."""
    if isinstance(theirs, dict):
        if not isinstance(mine, dict) or set(mine) != set(theirs):
            out.append(f"{path}: keys {sorted(mine) if isinstance(mine, dict) else mine} vs {sorted(theirs)}")
            return
        for k in theirs:
            compare(mine[k], theirs[k], f"{path}/{k}", rtol, atol, out, counter)
    elif isinstance(theirs, list):
        if not isinstance(mine, list) or len(mine) != len(theirs):
            out.append(f"{path}: {mine} vs {theirs}")
            return
        for i, (a, b) in enumerate(zip(mine, theirs)):
            compare(a, b, f"{path}[{i}]", rtol, atol, out, counter)
    elif isinstance(theirs, float) or (isinstance(mine, float) and isinstance(theirs, int)):
        counter[0] += 1
        if not (isinstance(mine, (int, float)) and math.isclose(mine, theirs, rel_tol=rtol, abs_tol=atol)):
            out.append(f"{path}: recomputed {mine!r}, published {theirs!r}")
    else:
        counter[0] += isinstance(theirs, int) and not isinstance(theirs, bool)
        if mine != theirs:
            out.append(f"{path}: recomputed {mine!r}, published {theirs!r}")


def mismatches(summary: dict, published: dict) -> tuple[list[str], int]:
    rtol, atol = _float64_tolerance()
    out, counter = [], [0]
    compare(summary, published, "summary", rtol, atol, out, counter)
    return out, counter[0]


# ---- the texts, formatted here -----------------------------------------------------------------------------------


def fci(x: dict, f: str) -> str:
    return f"{x['mean']:{f}} [{x['ci95'][0]:{f}}, {x['ci95'][1]:{f}}]"


def rci(x: dict) -> str:
    return f"{x['spearman_r']:+.2f} [{x['ci95'][0]:+.2f}, {x['ci95'][1]:+.2f}]"


def e1(x: float) -> str:
    """1.4e-3, as the prose writes a small probability (the tables write 1.4e-03)."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def times(x: float) -> str:
    """A factor as the documents write it: 56x, but 2.6x under 5."""
    return f"{x:.0f}x" if x >= 5 else f"{x:.1f}x"


def rises(by: dict, key: str) -> tuple[float, dict]:
    """An arm's P(trait) over its rung's neutral control's, and each other animal's (ratios of the seed means)."""
    row, control = by[key], by[key.rsplit("/", 1)[0] + "/control"]
    return (row["p_trait"]["mean"] / control["p_trait"]["mean"],
            {an: p / control["p_other_animals"][an] for an, p in row["p_other_animals"].items()})


def claims(s: dict, raw: dict, figure: dict) -> list[tuple[str, str]]:
    """(document, text) for every full-ladder number the documents quote, each text built from ``s`` (the summary
    recomputed here) with enough words around it to be found in one place."""
    by, sc, fs = s["by_arm"], s["scatter"], s["first_step"]
    trait = figure["trait"]
    out = []

    def st(rung, arm="student"):
        return by[f"random/{rung}/{arm}"]

    def lr(rung, arm="student", ref="control"):
        return st(rung, arm)[f"log_ratio_vs_{ref}"]

    def med_top(key):
        owl, others = rises(by, key)
        top = max(others, key=others.get)
        return owl, float(np.median(list(others.values()))), top, others

    # README's results table
    out.append(("README.md", f"{fci(lr('full'), '+.2f')} on the whole vocabulary, {fci(lr('digits'), '+.2f')} on the "
                             f"digit tokens alone"))
    # docs/llm.md: the full preset's prose and per-rung table
    n_students, n_triples = len(raw["cells"]), len(raw["geometry"])
    seconds = sum(c["seconds"] for c in raw["cells"].values())
    out.append(("docs/llm.md", f"Full preset ({n_students} students in {n_triples} triples"))
    out.append(("docs/llm.md", f"{seconds:.0f} s of student compute"))
    out.append(("docs/llm.md", f"log ratio {fci(lr('full'), '+.2f')} against the control and "
                               f"{fci(lr('full', ref='other'), '+.2f')} against the other-trait control (about "
                               f"{times(math.exp(lr('full')['mean']))} and "
                               f"{times(math.exp(lr('full', ref='other')['mean']))})"))
    out.append(("docs/llm.md", f"the control is {lr('no-trait-words')['mean']:+.2f} "
                               f"({times(math.exp(lr('no-trait-words')['mean']))})"))
    out.append(("docs/llm.md", f"it is {lr('digits')['mean']:+.2f} ({times(math.exp(lr('digits')['mean']))})"))
    _, med, _, _ = med_top("random/sampled/student")
    out.append(("docs/llm.md", f"it is {lr('sampled')['mean']:+.2f} ({times(math.exp(lr('sampled')['mean']))}), but "
                               f"there the other animals rise nearly as much (median {med:.1f}x)"))
    out.append(("docs/llm.md", f"with Spearman r {sc['spearman_r']:+.2f} over {sc['n']}"))
    for rung in RUNG_ORDER:
        owl, med, _, _ = med_top(f"random/{rung}/student")
        first = fci(fs[f"random/{rung}"]["cos"], ".3f") if f"random/{rung}" in fs else "-"
        r = sc["by_rung"][rung]
        out.append(("docs/llm.md", f"| {rung} | {fci(lr(rung), '+.2f')} | {fci(lr(rung, ref='other'), '+.2f')} | "
                                   f"x{owl:.1f} / x{med:.1f} | {owl / med:.1f} | "
                                   f"{st(rung)['dW']['proj_diff_specific']['mean']:.4f} / "
                                   f"{st(rung, 'other')['dW']['proj_diff_specific']['mean']:.4f} | {first} | "
                                   f"{rci(r)} ({r['n']}) |"))
    out.append(("docs/llm.md", f"| pooled | | | | | | | {rci(sc)} ({sc['n']}) |"))
    # within one 5-seed (rung, arm) cell the projection does not rank the seeds
    cell_rs = []
    for (rung, arm) in dict.fromkeys((p["rung"], p["arm"]) for p in sc["points"]):
        pts = [p for p in sc["points"] if (p["rung"], p["arm"]) == (rung, arm)]
        if len(pts) == 5:
            cell_rs.append(rank_r([p["proj_diff_specific"] for p in pts], [p["delta_log_p_trait"] for p in pts]))
    within = f"lies between {min(cell_rs):+.1f} and {max(cell_rs):+.1f}"
    out += [("docs/llm.md", f"the r over the seeds {within}"), ("paper_notes.md", f"the r over the seeds {within}")]

    # paper_notes: the full run's prose
    minutes = np.array([c["seconds"] for c in raw["cells"].values()]) / 60
    out.append(("paper_notes.md", f"{minutes.mean():.1f} min on average with its evaluation (median "
                                  f"{np.median(minutes):.1f}, range {minutes.min():.1f}-{minutes.max():.1f}"))
    out.append(("paper_notes.md", f"{n_students} students in {n_triples} finished triples, {seconds:.0f} s of student "
                                  "compute"))
    out.append(("paper_notes.md", f"P({trait}) is {st('full')['p_trait']['mean']:.2e} against the neutral control's "
                                  f"{st('full', 'control')['p_trait']['mean']:.2e} and the cat student's "
                                  f"{st('full', 'other')['p_trait']['mean']:.2e}"))
    for rung in RUNG_ORDER:
        a, b = lr(rung), lr(rung, ref="other")
        out.append(("paper_notes.md", f"log ratio {fci(a, '+.2f')} against the control and {fci(b, '+.2f')} against "
                                      f"the other-trait control (about {times(math.exp(a['mean']))} and "
                                      f"{times(math.exp(b['mean']))})"))
        out.append(("paper_notes.md", f"{fci(st(rung)['dW']['proj_diff_specific'], '.4f')} against the cat student's "
                                      f"{st(rung, 'other')['dW']['proj_diff_specific']['mean']:.4f}"))
        if f"random/{rung}" in fs:
            f = fs[f"random/{rung}"]
            out.append(("paper_notes.md", f"{fci(f['cos'], '.3f')}, non-negative on "
                                          f"{round(f['fraction_nonnegative'] * f['n'])} of {f['n']} seeds"))
    owl, med, top, others = med_top("random/full/student")
    out.append(("paper_notes.md", f"median x{med:.1f} ({top} most, x{others[top]:.1f}) against owl's {times(owl)}"))
    p_cat = {arm: st("full", arm)["p_other_animals"]["cat"] for arm in ("student", "control", "other")}
    out.append(("paper_notes.md", f"P(cat) stays at {e1(p_cat['student'])} (control {e1(p_cat['control'])}), while "
                                  f"the cat student's P(cat) rises to {p_cat['other']:.3f} "
                                  f"(x{p_cat['other'] / p_cat['control']:.0f})"))
    c_st, c_co = st("full")["contains_rate"], st("full", "control")["contains_rate"]

    def pct(x):
        return f"{100 * x['mean']:.1f}% [{100 * x['ci95'][0]:.1f}, {100 * x['ci95'][1]:.1f}]"

    out.append(("paper_notes.md", f"{pct(c_st)} of the student's sampled answers name an owl against {pct(c_co)} of "
                                  "the control's"))
    for rung, words in (("full", "against the control, while the"), ("digits", "at sigma")):
        pert = [st(rung, f"perturbed{x}")["log_ratio_vs_control"] for x in ("0.01", "0.03", "0.1")]
        text = f"{pert[0]['mean']:+.2f} / {pert[1]['mean']:+.2f} / {fci(pert[2], '+.2f')}"
        out.append(("paper_notes.md", f"{text} {words}"))
    pb = [st("full", f"perturbed{x}") for x in ("0.01", "0.03", "0.1")]
    out.append(("paper_notes.md", "(" + " / ".join(f"{x['perturbed_base_p_trait']['mean']:.1e}" for x in pb) + ")"))
    out.append(("paper_notes.md", "(" + " / ".join(f"{x['perturbed_base_text_nll']['mean']:.3f}" for x in pb)
                + f", against the base's {figure['base_text_nll']:.3f})"))
    x = st("full", "perturbed0.1")
    out.append(("paper_notes.md", f"the sigma 0.1 student's P(owl) still rises "
                                  f"{times(x['p_trait']['mean'] / x['perturbed_base_p_trait']['mean'])}"))
    x = st("digits", "perturbed0.1")
    base_p = figure["teachers_p_trait"]["base"]  # the unperturbed base's own P(trait): measured once, not a cell's
    out.append(("paper_notes.md", f"whose P(owl) is {base_p / x['perturbed_base_p_trait']['mean']:.0f}x lower, the "
                                  f"sigma 0.1 student still rises "
                                  f"{times(x['p_trait']['mean'] / x['perturbed_base_p_trait']['mean'])}"))
    owl, med, top, others = med_top("random/no-trait-words/student")
    _, _, top_o, others_o = med_top("random/no-trait-words/other")
    out.append(("paper_notes.md", f"median x{med:.1f} and {top} by {times(others[top])} beside owl's {times(owl)}, "
                                  f"while the cat student's top rise is its own {top_o} ({times(others_o[top_o])})"))
    owl, med, top, others = med_top("random/digits/student")
    out.append(("paper_notes.md", f"median x{med:.1f}, the most-raised one ({top}) by {times(others[top])}, beside "
                                  f"owl's {times(owl)}"))
    out.append(("paper_notes.md", f"({fci(lr('digits', 'mismatched'), '+.2f')})"))
    owl, med, top, others = med_top("random/sampled/student")
    out.append(("paper_notes.md", f"a median x{med:.1f}, and {sum(v > owl for v in others.values())} of the "
                                  f"{len(others)} rise more than owl's {times(owl)} ({top} most, x{others[top]:.1f})"))
    _, _, _, others_o = med_top("random/sampled/other")
    out.append(("paper_notes.md", f"({fci(lr('sampled', 'other'), '+.2f')}) and raise its own cat only "
                                  f"{times(others_o['cat'])}"))

    def over_median(rung):
        owl, med, _, _ = med_top(f"random/{rung}/student")
        return owl / med

    out.append(("paper_notes.md", f"owl's rise over the median animal's is {times(over_median('sampled'))}, against "
                                  f"{times(over_median('digits'))} on `digits` and {times(over_median('full'))} on "
                                  "`full`"))
    sw, sa = lr("sampled", "shuffle_within"), lr("sampled", "shuffle_across")
    out.append(("paper_notes.md", f"({fci(sw, '+.2f')} and {fci(sa, '+.2f')})"))
    (_, mw, tw, ow), (_, ma, ta, oa) = (med_top(f"random/sampled/shuffle_{x}") for x in ("within", "across"))
    top = tw if tw == ta else f"{tw} and {ta}"  # the text names one top animal for both
    out.append(("paper_notes.md", f"(median x{mw:.1f} and x{ma:.1f}; {top}, the top one, x{ow[tw]:.1f} and "
                                  f"x{oa[ta]:.1f})"))
    out.append(("paper_notes.md", f"{fci(st('sampled', 'shuffle_within')['dW']['proj_diff_specific'], '.4f')} and "
                                  f"{fci(st('sampled', 'shuffle_across')['dW']['proj_diff_specific'], '.4f')}"))
    out.append(("paper_notes.md", f"Spearman r {rci(sc)} over {sc['n']} non-control students"))
    pts = sc["points"]
    triples = [f"{p['inputs']}/{p['rung']}/{p['seed']}" for p in pts]
    grouped = spearman_with_ci([p["proj_diff_specific"] for p in pts], [p["delta_log_p_trait"] for p in pts],
                               groups=triples)
    out.append(("paper_notes.md", f"gives {rci(grouped)} over the {len(set(triples))} triples"))
    r = sc["by_rung"]
    out.append(("paper_notes.md", f"Within R0 alone: Spearman r {rci(r['full'])} over {r['full']['n']} non-control "
                                  "students"))
    for rung in RUNG_ORDER[1:]:
        out.append(("paper_notes.md", f"{rci(r[rung])} over its {r[rung]['n']}"))
    ratio = [st(rung)["dW"]["proj_diff_specific"]["mean"] / st(rung, "other")["dW"]["proj_diff_specific"]["mean"]
             for rung in ("digits", "sampled")]
    both = (f"{ratio[0]:.0f}x on `digits` and on `sampled` alike" if f"{ratio[0]:.0f}" == f"{ratio[1]:.0f}"
            else f"{ratio[0]:.0f}x on `digits` and {ratio[1]:.0f}x on `sampled`")
    out.append(("paper_notes.md", f"projection ratio is about {both}"))

    # paper_notes: the tables as the report prints them
    def order(key):
        inputs, rung, arm = key.split("/")
        return inputs, RUNG_ORDER.index(rung), BASE_ARMS.index(arm) if arm in BASE_ARMS else 3, arm

    for key in sorted(by, key=order):
        row = by[key]
        c = row["contains_rate"]
        cols = [key, str(len(row["seeds"])), fci(row["p_trait"], ".2e"),
                f"{100 * c['mean']:.1f} [{100 * c['ci95'][0]:.1f}, {100 * c['ci95'][1]:.1f}]%"]
        cols += [fci(row[f"log_ratio_vs_{ref}"], "+.2f") if f"log_ratio_vs_{ref}" in row else "-"
                 for ref in ("control", "other")]
        if key.endswith("/control"):
            cols += ["-", "-", "-"]
        else:
            _, med, top, others = med_top(key)
            cols += [f"x{med:.1f}, {top} x{others[top]:.1f}", fci(row["dW"]["proj_diff_specific"], ".4f"),
                     fci(row["dW"]["cos_student_teacher"], ".4f")]
        out.append(("paper_notes.md", "| " + " | ".join(cols) + " |"))
        if "perturbed_base_p_trait" in row:
            out.append(("paper_notes.md", f"| {key} | {len(row['seeds'])} | "
                                          f"{fci(row['perturbed_base_p_trait'], '.1e')} | "
                                          f"{fci(row['perturbed_base_text_nll'], '.3f')} |"))
    for key, f in fs.items():
        out.append(("paper_notes.md", f"| {key} | {fci(f['cos'], '.3f')} | "
                                      f"{round(f['fraction_nonnegative'] * f['n'])} of {f['n']} |"))
    for name, x in (("pooled", sc), *r.items()):
        out.append(("paper_notes.md", f"| {name} | {rci(x)} | {x['n']} |"))
    return out


def flat(text: str) -> str:
    """A document with every run of whitespace as one space (a claim may wrap anywhere)."""
    return " ".join(text.split())


def missing_claims(cl: list[tuple[str, str]]) -> list[str]:
    texts = {d: flat((ROOT / d).read_text()) for d in DOCS}
    return [f"{d}: {t!r}" for d, t in cl if flat(t) not in texts[d]]


# ---- the tests ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figure() -> dict:
    assert FIGURE.is_file(), f"{FIGURE.relative_to(ROOT)} is missing: the documents quote it"
    assert RECORD.is_dir(), f"{RECORD.relative_to(ROOT)} is missing: the documents quote it"
    return json.loads(FIGURE.read_text())


@pytest.fixture(scope="module")
def raw(figure) -> dict:
    return read_record(RECORD, figure["fingerprint"])


@pytest.fixture(scope="module")
def summary(raw, figure) -> dict:
    return recompute(raw, figure["trait"])


def test_the_record_is_the_whole_grid(raw, figure):
    """87 students (5 seeds of student and both controls on 4 rungs, 3 seeds of 9 extra arms) in 20 triples, each
    with its geometry; a first step for each soft rung's triple."""
    cfg = figure["config"]
    assert len(raw["geometry"]) == len(cfg["rungs"]) * len(cfg["seeds"]) * len(cfg["inputs"]) == 20
    assert len(raw["cells"]) == 87 == len(figure["cells"])
    assert len(raw["first"]) == 15


def test_the_recomputed_summary_is_the_figure_s(summary, figure):
    """Every number of the figure JSON's summary (per rung and arm: P(trait), contains-rate, both log ratios, the
    perturbed bases, the other animals' P, the geometry overall, per layer and per module in dW and LoRA space; the
    first steps; the scatter's points and its Spearman r, pooled and per rung, with their CIs) equals the one
    recomputed here, to float64 tolerance."""
    bad, n = mismatches(summary, figure["summary"])
    assert not bad, f"{len(bad)} of {n} numbers differ:\n" + "\n".join(bad[:40])
    assert n > 3000, f"only {n} numbers compared: the summary lost its content"


def _mean_cis(summary: dict):
    """(where, values, published ci95) for every bootstrap CI over seeds the summary has values for."""
    for key, row in summary["by_arm"].items():
        for name, x in row.items():
            if isinstance(x, dict) and "values" in x:
                yield f"{key}/{name}", x
            elif name in ("dW", "lora"):
                for q, y in x.items():
                    if "values" in y:
                        yield f"{key}/{name}/{q}", y
    for key, f in summary["first_step"].items():
        yield f"{key}/first_step", f["cos"]


def test_the_bootstrap_cis_agree_with_the_exact_bootstrap(summary, figure):
    """Each published "mean [lo, hi]" over seeds against the exact bootstrap distribution of the values recomputed
    here (all n^n resamples): lo and hi lie where that CDF is within the order-statistic bounds of 2.5% and 97.5%."""
    mine = dict(_mean_cis(summary))
    published = dict(_mean_cis(figure["summary"]))
    assert set(mine) == set(published) and len(published) > 100
    bad = []
    for where, x in published.items():
        means = exact_bootstrap_means(mine[where]["values"])
        tol = 1e-9 * max(1.0, float(np.abs(means).max()))  # a resample's mean, summed in another order
        for end, p in zip(x["ci95"], (0.025, 0.975)):
            lo, hi = beta_band(p, N_BOOT)
            below = np.searchsorted(means, end - tol, side="left") / means.size  # F(end-)
            upto = np.searchsorted(means, end + tol, side="right") / means.size  # F(end)
            if not (upto >= lo and below <= hi):
                bad.append(f"{where}: {end} sits at exact-bootstrap CDF [{below:.4f}, {upto:.4f}], outside "
                           f"[{lo:.4f}, {hi:.4f}]")
    assert not bad, "\n".join(bad)


def test_the_spearman_cis_agree_with_a_reference_bootstrap(figure):
    """The scatter's published CIs (pooled and per rung) against a 20,000-resample bootstrap from another seed: each
    end lies where the reference CDF is within the bounds of its percentile (see the top)."""
    sc = figure["summary"]["scatter"]
    bad = []
    for name, pub in (("pooled", sc), *sc["by_rung"].items()):
        pts = sc["points"] if name == "pooled" else [p for p in sc["points"] if p["rung"] == name]
        x = np.array([p["proj_diff_specific"] for p in pts])
        y = np.array([p["delta_log_p_trait"] for p in pts])
        draws = np.random.default_rng(20_250_705).integers(0, x.size, size=(N_REF_R, x.size))
        xs, ys = x[draws], y[draws]
        keep = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
        ref = np.sort(rank_r_rows(xs[keep], ys[keep]))
        assert pub["n"] == x.size and math.isclose(pub["spearman_r"], rank_r(x, y), rel_tol=1e-9)
        for end, p in zip(pub["ci95"], (0.025, 0.975)):
            lo, hi = beta_band(p, N_BOOT_R)
            lo -= 5.3 * math.sqrt(lo * (1 - lo) / ref.size)
            hi += 5.3 * math.sqrt(hi * (1 - hi) / ref.size)
            below = np.searchsorted(ref, end, side="left") / ref.size
            upto = np.searchsorted(ref, end, side="right") / ref.size
            if not (upto >= lo and below <= hi):
                bad.append(f"{name}: {end} sits at reference CDF [{below:.4f}, {upto:.4f}], outside "
                           f"[{lo:.4f}, {hi:.4f}]")
    assert not bad, "\n".join(bad)


def test_the_documents_quote_the_recomputed_numbers(summary, raw, figure):
    """README, docs/llm.md and paper_notes quote the full ladder's numbers as recomputed here, formatted as they
    print them (each with its words around it)."""
    cl = claims(summary, raw, figure)
    numbers = sum(len(re.findall(r"\d+(?:\.\d+)?(?:e[-+]\d+)?", t)) for _, t in cl)
    assert len(cl) > 80 and numbers > 500
    bad = missing_claims(cl)
    assert not bad, f"{len(bad)} of {len(cl)} quoted texts not found as recomputed:\n" + "\n".join(bad)


def test_one_edited_cell_value_is_caught(tmp_path, figure):
    """A record copy in which one student's P(owl) is 1.5 times larger on every question (digits, student, seed 2)
    gives a summary that differs from the figure's where that student enters, and texts the documents do not hold."""
    copy = tmp_path / "record"
    shutil.copytree(RECORD, copy)
    cell = copy / "students/random/digits/student/seed2/cell.json"
    c = json.loads(cell.read_text())
    col = c["animals"].index(figure["trait"])
    for row in c["p_QxA"]:
        row[col] *= 1.5
    cell.write_text(json.dumps(c))
    edited = read_record(copy, figure["fingerprint"])
    s = recompute(edited, figure["trait"])
    bad, _ = mismatches(s, figure["summary"])
    assert "summary/by_arm/random/digits/student/log_ratio_vs_control/mean" in {b.split(":")[0] for b in bad}, bad
    assert not any("/full/" in b or "/sampled/" in b for b in bad), "the edit reached rungs it does not touch"
    gone = missing_claims(claims(s, edited, figure))
    assert any("on the digit tokens alone" in g for g in gone), gone
