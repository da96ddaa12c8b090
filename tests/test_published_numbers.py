"""Every number README.md, paper_notes.md and the docs/ pages publish from a committed artifact equals that
artifact's value, as printed in the text: a number edited in a document, or an artifact regenerated without its
documents, fails here.

A claim is (document, text): the text as the document prints it, built here from the artifact it quotes, with enough
words around its numbers that it occurs exactly once in its document (``check``). A missing artifact fails its
claims' generator (``artifact``). A share of a count is printed so that it tells the count (``share``): "100%" of
672 checks prints its count, "672/672", beside it. The mutation test edits a claimed number in a copy of each
document and checks that ``check`` reports that claim.

Results sections (``<!-- results -->`` ... ``<!-- /results -->`` in the Markdown) hold no number that is neither a
claim nor on ``ALLOWED`` (configuration constants and the paper's own numbers, each with its reason). Numbers measured
elsewhere, with no committed artifact, stay outside them, marked as such with the command that measured them."""

from __future__ import annotations

import json
import math
import random
import re
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = "figures/theory_projection_paper_float64_seed0.json"
MNIST = "figures/mnist_fig10_paper_runs100_seed0.json"
STUDY = "figures/llm_study_quick_smollm2-135m_constrained_seeds5_01691500c7.json"
LLM = "figures/llm_bridge_quick_smollm2-135m_constrained_seeds3_e8a205ffb5.json"
OPTIMIZERS = "figures/theory_optimizers_paper_float64_seed0.json"
LADDER = "figures/llm_ladder_quick_smollm2-135m_owl_seeds1_6d9bcb87cf.json"
VS_TORCH = "benchmarks/results/mnist_vs_torch.json"
VS_TORCH_N10 = "benchmarks/results/mnist_vs_torch_n10.json"
SCAN_TIME = "benchmarks/results/scan_quick.json"
PRECISION = "benchmarks/results/ladder_throughput_precision.json"
THROUGHPUT = "benchmarks/results/ladder_throughput.json"
SWEEP_MAP = "figures/mnist_transfer_map_full_seed0.json"
SCAN = "figures/llm_scan_quick_smollm2-135m_6a217ce5e3.json"
DOCUMENTS = ("README.md", "paper_notes.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))


# ---------------------------------------------------------------------------------------------------- the checker

# a number as the documents print it: 53.4, -0.002, +4.03, 1e-3, 2.4e-4, 60,000, 100% and 56x (x2.2 too); not the
# digits of a name (SmolLM2, seed0, mlp3-gelu, float64, GPT-4.1)
NUMBER = re.compile(r"(?<![A-Za-z]-)(?<![A-Za-wyz_\d.^])[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?x?(?![A-Za-z_\d])")


def occurrences(text: str, claim: str) -> list[int]:
    """Where ``claim`` starts in ``text``, counted only where its numbers are whole: "5.6%" is not in "15.6%", nor
    "0.46" in "0.461"."""
    head = r"(?<![\d.])" if claim[0].isdigit() else r"(?<![\d])" if claim[0] in "+-." else ""
    tail = r"(?!\.?\d)" if claim[-1].isdigit() else ""
    return [m.start() for m in re.finditer(head + re.escape(claim) + tail, text)]


def check(text: str, claims: Iterable[str]) -> dict[str, str]:
    """Each claim that ``text`` (a document) does not print exactly once, with the reason. The one checker: the
    published-number test and the mutation test both call it."""
    bad = {}
    for claim in claims:
        if not re.search(r"\d", claim):
            bad[claim] = "has no digit: not a claim"
        elif len(claim.strip()) < 8:
            bad[claim] = "is too short to name its place: add the words around it"
        elif (n := len(occurrences(text, claim))) != 1:
            bad[claim] = "is missing" if n == 0 else f"occurs {n} times: add the words around it"
    return bad


def covered(text: str, spans: Iterable[str]) -> list[tuple[int, int]]:
    """The (start, end) of each text of ``spans`` in ``text`` (each found once; a text found 0 or 2+ times covers
    nothing, and ``check`` reports it)."""
    out = []
    for s in spans:
        if len(at := occurrences(text, s)) == 1:
            out.append((at[0], at[0] + len(s)))
    return out


RESULTS = re.compile(r"<!-- results -->(.*?)<!-- /results -->", re.DOTALL)
# what is not a number of a result: code (blocks and inline) and link targets (paths, commands, file names), the paper's
# numbered parts (Theorem 1, Section 6.2, Fig. 10), the 95% of "95% CI", the bound of a comparison that states what
# is counted ("dS . dT >= 0", "> 0 in 100/100 runs", "at eps <= 1e-4"), an equation's 0, the limit eps -> 0 and the
# machine (2 CPU cores)
NOT_NUMBERS = re.compile(r"(?s:```.*?```)|`[^`\n]*`|\]\([^)\n]*\)|<[^>\n]*>"
                         r"|\b(?:Theorem|Lemma|Sections?|Fig\.|Figure|Appendix|Table|issue)s?[ -]\d+(?:[.-]\d+)?"
                         r"|95% (?:bootstrap |Wilson |t-)?(?:CI|confidence interval)"
                         r"|(?<![-<>=])[<>]=? ?[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\d.])"
                         r"|\beps -> 0\b|= 0(?![\d.])|\b\d CPU cores\b")


def results_tokens(text: str) -> list[tuple[int, str]]:
    """(offset, token) of every number inside the document's results sections."""
    out = []
    for section in RESULTS.finditer(text):
        body = NOT_NUMBERS.sub(lambda m: " " * len(m.group()), section.group(1))
        out += [(section.start(1) + m.start(), m.group()) for m in NUMBER.finditer(body)]
    return out


def unclaimed(text: str, claims: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """Each number in a results section of ``text`` that no claim and no allowed text covers, with its context."""
    spans = covered(text, [*claims, *allowed])
    return [f"{tok!r} in ...{' '.join(text[max(0, i - 60):i + len(tok) + 30].split())}..."
            for i, tok in results_tokens(text)
            if not any(a <= i and i + len(tok) <= b for a, b in spans)]


# ---------------------------------------------------------------------------------------------------- the artifacts

def artifact(name: str) -> Path:
    """A committed artifact's path; a missing one raises, so its claims fail instead of vanishing."""
    path = ROOT / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is missing: the published numbers that quote it cannot be checked")
    return path


@cache
def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def load(name: str) -> dict:
    return _json(artifact(name).resolve())


def ladder_record(record: Path) -> dict:
    """The full ladder record's summary, as ``--report`` reads it (``record`` from ``artifact``)."""
    return _record_summary(record.resolve())


@cache
def _record_summary(record: Path) -> dict:
    from llm_bridge.config import LadderConfig
    from llm_bridge.ladder_report import record_summary

    return record_summary(LadderConfig.paper(), record)


@cache
def doc(name: str) -> str:
    return (ROOT / name).read_text()


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}"


def ci(c, fmt=pct) -> str:
    return f"[{fmt(c[0])}, {fmt(c[1])}]"


def share(frac: float, n: int, digits: int = 1, bold: bool = False) -> str:
    """A share of ``n`` counted things as the documents print it: the percent, and beside it the count k/n where the
    percent at this precision does not tell k (at 0 decimals 669 of 672 prints as 100% too)."""
    k = round(frac * n)
    assert math.isclose(k, frac * n, abs_tol=1e-6), f"{frac} is not a count out of {n}"
    b = "**" if bold else ""
    text = f"{b}{pct(k / n, digits)}%{b}"
    if 100 / n < 10 ** -digits:  # neighbouring counts print alike
        text += f" ({k}/{n})"
    return text


def whole(frac: float, digits: int = 0) -> str:
    """A share with no count beside it: 100% and 0% only when exact."""
    text = pct(frac, digits)
    assert float(text) not in (0, 100) or frac in (0, 1), f"{frac} prints as {text}%: print more digits or a count"
    return text


def theory_claims():
    s = load(THEORY)["summary"]
    st, smooth, relu = (s[k] for k in ("first_order_error_slope", "first_order_error_slope_smooth",
                                        "first_order_error_slope_relu"))
    checks = f"{share(s['lemma1_fraction_nonnegative_shared'], s['n_checks'], 0, bold=True)} of checks"
    falls = share(s["theorem1_teacher_loss_falls_where_positive"], s["theorem1_cases_first_order_positive"], 0,
                  bold=True) + " of cases"
    for d in ("docs/theory.md", "paper_notes.md"):
        yield d, checks
    yield "docs/theory.md", f"negative projections | {pct(s['large_eps_fraction_negative_shared'])}%"
    other = pct(s["other_init_fraction_negative"])
    yield "docs/theory.md", f"different init: negative projections | **{other}%**"
    yield "paper_notes.md", f"**{other}%** of projections negative with a different init"
    yield "paper_notes.md", f"{pct(s['large_eps_fraction_negative_shared'])}% of shared-init projections are negative"
    yield "docs/theory.md", (f"**{st['pooled']:.3f}** pooled, {st['median']:.3f} median "
                        f"(smooth nets {smooth['pooled']:.3f}; ReLU {relu['pooled']:.3f}: activation kinks)")
    yield "paper_notes.md", f"log-log slope **{st['pooled']:.3f}** pooled (within-case), **{st['median']:.3f}** median"
    yield "docs/theory.md", f"float64; {s['wall_seconds']:.0f} s on 2 CPU cores"
    yield "docs/theory.md", f"The {s['wall_seconds']:.0f} s is the wall time"
    yield "docs/theory.md", f"`python -m theory` ({s['n_cases']} random networks"
    yield "docs/theory.md", falls
    yield "paper_notes.md", falls + " with first-order projection > 0"
    yield "paper_notes.md", f"of checks ({s['n_cases']} networks x"
    yield "paper_notes.md", (f"{share(st['fraction_within_0.1'], st['n_fitted'])} of {st['n_fitted']} fits within 1 +- "
                             f"0.1. Smooth nets (tanh/gelu/attention): {smooth['pooled']:.3f}, "
                             f"{share(smooth['fraction_within_0.1'], smooth['n_fitted'], 0)} within 0.1. ReLU nets: "
                             f"{relu['pooled']:.3f}, {share(relu['fraction_within_0.1'], relu['n_fitted'])} within "
                             f"0.1. {st['n_exact_to_roundoff']} cases are exact to roundoff")
    yield "paper_notes.md", f"(median {s['cosine_other_median']:.3f} vs {s['cosine_shared_median']:.3f} shared)"
    cfg = load(THEORY)["config"]
    yield "paper_notes.md", (f"the fitted slope over eps in [{sci(cfg['eps'][0], 0)}, {sci(cfg['small_eps_max'], 0)}] "
                             f"leaves 1 +- 0.1 in {whole(1 - relu['fraction_within_0.1'])}% of ReLU cases")


def optimizer_claims():
    s = load(OPTIMIZERS)["summary"]
    f, ks, lim = s["first_step"], s["kstep"], s["sign_limit_fraction_negative"]

    def cell(o, g):
        c = f[o][g]["fraction_negative"][1]  # eps = 1e-3
        return f"{pct(c['fraction'])}% {ci(c['ci95'])}"

    for o in f:
        yield "paper_notes.md", (f"| {o} | {cell(o, 'lemma_shared')} | {cell(o, 'theorem_shared')} | "
                                 f"{cell(o, 'lemma_other')} | {f[o]['lemma_shared']['median_cosine'][1]:.3f} |")
    adam, sign = (pct(f[o]["lemma_shared"]["fraction_negative"][1]["fraction"]) for o in ("adam", "signsgd"))
    yield "paper_notes.md", f"predicts\n  {pct(lim['lemma']['fraction'])}%"
    yield "docs/theory.md", f"negative for {adam}% and {sign}% of\nrandom dT"
    yield "docs/theory.md", f"the same {load(THEORY)['summary']['n_cases']} networks, {s['wall_seconds']:.0f} s"
    yield "paper_notes.md", f"float64, in {s['wall_seconds']:.0f} s on 2 CPU cores"
    yield "paper_notes.md", f"in {pct(s['signsgd_matches_limit_at_smallest_eps'])}% of shared-init checks"
    k = [pct(ks[o]["theorem_shared"]["fraction_negative"][-1]["fraction"]) for o in ("sgd", "momentum", "adam",
                                                                                      "signsgd")]
    yield "paper_notes.md", f"K = 100 in {k[0]}% (SGD),\n  {k[1]}% (momentum), {k[2]}% (Adam) and {k[3]}% (SignSGD)"
    rose = [pct(ks[o]["theorem_shared"]["fraction_teacher_loss_rises"][-1]["fraction"]) for o in ("sgd", "momentum",
                                                                                                  "adam", "signsgd")]
    yield "paper_notes.md", f"L_T rose in {rose[0]}%, {rose[1]}%,\n  {rose[2]}% and {rose[3]}%"
    assert s["k_steps"][-1] == 100 and s["k_steps"][1] == 2  # the K the text names
    second = ks["sgd"]["theorem_shared"]
    yield "paper_notes.md", (f"second step ({pct(second['fraction_negative'][1]['fraction'])}% negative, "
                             f"{pct(second['fraction_teacher_loss_rises'][1]['fraction'])}% with L_T\n  up)")
    # where the sign step's negatives sit (SignSGD's first step at eps = 1e-3, per architecture)
    arch = {a: v[1]["fraction"] for a, v in f["signsgd"]["lemma_shared"]["fraction_negative_by_arch"].items()}
    mlps = [a for a in arch if a.startswith("mlp")]
    yield "paper_notes.md", (f"(SignSGD: CNN {pct(arch['cnn'], 0)}%, mlp3-gelu\n  {pct(arch['mlp3-gelu'], 0)}%, "
                             f"mlp4-relu {pct(arch['mlp4-relu'], 0)}%, transformer {pct(arch['transformer'], 0)}%; "
                             f"0% in {sum(arch[a] == 0 for a in mlps)} of the {len(mlps)} MLPs")
    yield "paper_notes.md", f"for any optimizer ({pct(lim['theorem']['fraction'])}% for the limit too)"
    cosines = [f[o]["lemma_shared"]["median_cosine"][1] for o in ("signsgd", "sgd")]
    yield "paper_notes.md", f"median cosine with a random dT is {cosines[0]:.3f}, against {cosines[1]:.3f}"
    assert s["optimizer_eps"][1] == 1e-3  # the eps the table and the text name
    yield "paper_notes.md", f"dS . dT < 0 (Wilson 95% CI, {s['n_cases']} networks each)"
    yield "paper_notes.md", f"Adam and\n  SignSGD: {adam}% and {sign}% of random dT, and the sign step's limit"


def ladder_claims():
    d = load(LADDER)
    by, sc = d["summary"]["by_arm"], d["summary"]["scatter"]
    rungs = ("full", "no-trait-words", "digits", "sampled")

    def lr(r, ref):
        return f"{by[f'random/{r}/student'][f'log_ratio_vs_{ref}']['mean']:+.2f}"

    yield "docs/llm.md", " / ".join(lr(r, "control") for r in rungs) + "; against the other-animal control: " + \
        " / ".join(lr(r, "other") for r in rungs)
    yield "docs/llm.md", f"transfer: {sc['spearman_r']:+.2f} over {sc['n']} students"
    yield "paper_notes.md", f"Spearman r = {sc['spearman_r']:+.2f}, 95% bootstrap CI\n  [{sc['ci95'][0]:+.2f}, " \
                            f"{sc['ci95'][1]:+.2f}], over {sc['n']} students"
    q = d["config"]
    steps = q["n_inputs"] * q["epochs"] // q["batch_size"]
    yield "paper_notes.md", (f"; {len(q['seeds'])} seed, {q['n_inputs']} inputs, {steps} steps per student, P(owl) "
                             f"from {q['trait_questions']}\nquestions)")
    yield "paper_notes.md", f"one seed and {steps} steps, without confidence intervals"
    nulls = [by[f"random/{k}"]["log_ratio_vs_control"]["mean"]
             for k in ("sampled/shuffle_within", "sampled/shuffle_across", "digits/mismatched")]
    yield "paper_notes.md", (f"the shuffled samples at {nulls[0]:+.2f} and {nulls[1]:+.2f}, the mismatched digits at\n"
                             f"  {nulls[2]:+.2f}")
    (sigma,) = q["sigmas"]
    yield "paper_notes.md", (f"The perturbed base (sigma {sigma:g}) lowers\n  the base's own P(owl) to "
                             f"{by[f'random/full/perturbed{sigma:g}']['perturbed_base_p_trait']['mean']:.1e}")
    cos = [d["summary"]["first_step"][f"random/{r}"]["cos"]["mean"] for r in ("full", "no-trait-words", "digits")]
    yield "paper_notes.md", f"(cos {' / '.join(f'{x:.3f}' for x in cos)}\n  for full / no-trait-words / digits)"
    pb = by["random/full/perturbed0.03"]
    yield "paper_notes.md", (f"(text NLL {pb['perturbed_base_text_nll']['mean']:.3f} against the base's "
                             f"{d['base_text_nll']:.3f}")
    q = d["config"]
    yield "docs/llm.md", (f"Quick preset ({len(q['seeds'])} seed, {q['n_inputs']} inputs, "
                          f"{q['n_inputs'] * q['epochs'] // q['batch_size']} steps per student, trait scored on "
                          f"{q['trait_questions']} questions; {d['timings']['students_s']:.0f} s of student compute")
    b = load(THROUGHPUT)["numbers"]
    yield "docs/llm.md", (f"{b['ratio_vs_sft']['digits']:.2f}x the tokens/s of the full-vocabulary SFT step "
                        f"({b['median']['digits']['tokens_per_s']:.0f} vs {b['median']['sft']['tokens_per_s']:.0f} "
                        f"tokens/s)")
    yield "docs/llm.md", f"rung runs at {b['ratio_vs_sft']['full']:.2f}x"
    runs = b["runs"]
    before = np.median([r["rss_before_steps_mb"] for v in runs.values() for r in v])
    yield "docs/llm.md", (f"Its steps peak at {b['median']['digits']['peak_rss_mb'] / 1000:.1f} GB RSS (SFT "
                          f"{b['median']['sft']['peak_rss_mb'] / 1000:.1f} GB; {before / 1000:.2f} GB before the "
                          f"steps), "
                          f"above the {b['targets']['digits_peak_gb']:.0f} GB target")
    assert len({len(v) for v in runs.values()}) == 1
    yield "docs/llm.md", f"each mode in a fresh process, median of {len(runs['sft'])})"
    (tokens,) = {r["tokens_per_row"] for v in runs.values() for r in v}
    yield "docs/llm.md", f"of {tokens}-token sequences dominate"
    for r in rungs:
        st, co, ot = (by[f"random/{r}/{a}"] for a in ("student", "control", "other"))
        yield "paper_notes.md", (f"| {r} | {st['p_trait']['mean']:.2e} | {co['p_trait']['mean']:.2e} | "
                                 f"{ot['p_trait']['mean']:.2e} | {lr(r, 'control')} | {lr(r, 'other')} | "
                                 f"{st['dW']['proj_diff_specific']['mean']:.4f} | "
                                 f"{ot['dW']['proj_diff_specific']['mean']:.4f} |")


def trait_rise(by: dict, rung: str, arm: str = "student") -> tuple[float, dict]:
    """An arm's P(trait) and each other animal's P over the neutral control's (the ratio of the seed means)."""
    a, co = by[f"random/{rung}/{arm}"], by[f"random/{rung}/control"]
    return (a["p_trait"]["mean"] / co["p_trait"]["mean"],
            {k: v / co["p_other_animals"][k] for k, v in a["p_other_animals"].items()})


def times(x: float) -> str:
    """A factor as the documents write it: 56x, but 2.6x under 5."""
    return f"{x:.0f}x" if x >= 5 else f"{x:.1f}x"


def ladder_readme_rows(s: dict) -> list[str]:
    """docs/llm.md's per-rung table of the full ladder, computed from the record's summary: both log ratios, P(trait)'s
    rise over the neutral control beside the other animals' median rise and their quotient, the projection of student
    and other-trait student, the first step (soft rungs) and each rung's Spearman r; then the pooled r."""
    from llm_bridge import rungs
    from llm_bridge.ladder_report import format_ci

    by, sc = s["by_arm"], s["scatter"]
    rows = []
    for rung in rungs.RUNGS:
        st, ot = by[f"random/{rung}/student"], by[f"random/{rung}/other"]
        owl, others = trait_rise(by, rung)
        median = np.median(list(others.values()))
        fs, r = s["first_step"].get(f"random/{rung}"), sc["by_rung"][rung]
        rows.append(f"| {rung} | {format_ci(st['log_ratio_vs_control'], '+.2f')} | "
                    f"{format_ci(st['log_ratio_vs_other'], '+.2f')} | "
                    f"x{owl:.1f} / x{median:.1f} | {owl / median:.1f} | "
                    f"{st['dW']['proj_diff_specific']['mean']:.4f} / {ot['dW']['proj_diff_specific']['mean']:.4f} | "
                    f"{format_ci(fs['cos'], '.3f') if fs else '-'} | "
                    f"{format_ci({'mean': r['spearman_r'], 'ci95': r['ci95']}, '+.2f')} ({r['n']}) |")
    rows.append(f"| pooled | | | | | | | {format_ci({'mean': sc['spearman_r'], 'ci95': sc['ci95']}, '+.2f')} "
                f"({sc['n']}) |")
    return rows


def ladder_full_claims():
    """docs/llm.md's and paper_notes' full ladder: the numbers of every rung its committed record has, read back
    through ``llm_bridge.ladder_report.record_summary`` (a resumed or rerun record changes them; this keeps the text in
    step)."""
    from llm_bridge.config import LadderConfig
    from llm_bridge.ladder_report import format_ci, summary_tables
    from theory.stats import spearman_ci

    c = LadderConfig.paper()
    s = ladder_record(artifact(f"figures/{c.name()}_record"))
    by = s["by_arm"]

    def r(x, f="+.2f"):  # as the tables: one seed has no CI, its mean stands alone
        return format_ci(x, f)

    yield "paper_notes.md", f"{s['n_students']} students in {len(s['triples'])} finished triples"
    st, co, ot = (by[f"random/full/{a}"] for a in ("student", "control", "other"))
    yield "paper_notes.md", (f"P(owl) is {st['p_trait']['mean']:.2e} against the neutral control's "
                             f"{co['p_trait']['mean']:.2e} and the cat student's {ot['p_trait']['mean']:.2e}")
    yield "docs/llm.md", (f"log ratio {r(st['log_ratio_vs_control'])} against the control and "
                        f"{r(st['log_ratio_vs_other'])} against the other-trait control")  # paper_notes': per rung
    for x in (st["contains_rate"], co["contains_rate"]):
        yield "paper_notes.md", f"{pct(x['mean'])}% [{pct(x['ci95'][0])}, {pct(x['ci95'][1])}]"
    # every rung the record has: the prose's transfer, projection and first step (soft rungs)
    for rung in dict.fromkeys(k.split("/")[1] for k in by):
        st, ot = by[f"random/{rung}/student"], by[f"random/{rung}/other"]
        yield "paper_notes.md", (f"log ratio {r(st['log_ratio_vs_control'])} against the control and "
                                 f"{r(st['log_ratio_vs_other'])} against the other-trait control")
        proj = st["dW"]["proj_diff_specific"]
        yield "paper_notes.md", (f"{r(proj, '.4f')} against the "
                                 f"cat student's {ot['dW']['proj_diff_specific']['mean']:.4f}")
        if f"random/{rung}" in s["first_step"]:
            fs = s["first_step"][f"random/{rung}"]
            yield "paper_notes.md", (f"{fs['cos']['mean']:.3f} [{fs['cos']['ci95'][0]:.3f}, "
                                     f"{fs['cos']['ci95'][1]:.3f}], non-negative on "
                                     f"{round(fs['fraction_nonnegative'] * fs['n'])} of {fs['n']} seeds")
    pert = [by[f"random/full/perturbed{x}"] for x in ("0.01", "0.03", "0.1")]
    yield "paper_notes.md", " / ".join(f"{x['log_ratio_vs_control']['mean']:+.2f}" for x in pert[:2]) + \
        f" / {r(pert[2]['log_ratio_vs_control'])} against the control"
    yield "paper_notes.md", " / ".join(f"{x['perturbed_base_p_trait']['mean']:.1e}" for x in pert)
    yield "paper_notes.md", " / ".join(f"{x['perturbed_base_text_nll']['mean']:.3f}" for x in pert)
    for name, sc in [("pooled", s["scatter"]), *s["scatter"].get("by_rung", {}).items()]:
        text = f"{sc['spearman_r']:+.2f} [{sc['ci95'][0]:+.2f}, {sc['ci95'][1]:+.2f}] over "
        yield "paper_notes.md", (f"Spearman r {text}{sc['n']} non-control students" if name in ("pooled", "full")
                                 else f"{text}its {sc['n']}")
    def over_median(rung):
        owl, others = trait_rise(by, rung)
        return owl / np.median(list(others.values()))

    owl, others = trait_rise(by, "sampled")  # the sampled shift's generic part
    top, median = max(others, key=others.get), np.median(list(others.values()))
    yield "docs/llm.md", f"other animals rise nearly as much (median {median:.1f}x)"
    yield "paper_notes.md", f"raise the other animals nearly as much: a median x{median:.1f}"
    yield "paper_notes.md", (f"{sum(v > owl for v in others.values())} of the {len(others)} rise more\n    than "
                             f"owl's {owl:.1f}x ({top} most, x{others[top]:.1f})")
    yield "paper_notes.md", (f"owl's rise over the median animal's is {over_median('sampled'):.1f}x,\n    against "
                             f"{over_median('digits'):.1f}x on `digits` and {over_median('full'):.0f}x on `full`")
    for rung, lead in (("full", "the sigma 0.1 student's P(owl) still rises"),
                       ("digits", "the sigma 0.1 student still rises")):
        x = by[f"random/{rung}/perturbed0.1"]
        q = x["p_trait"]["mean"] / x["perturbed_base_p_trait"]["mean"]
        yield "paper_notes.md", f"{lead} {times(q)}"
    # the pooled r with the bootstrap over whole triples (their students share the inputs' order and the control)
    pts = s["scatter"]["points"]
    grouped = spearman_ci([q["proj_diff_specific"] for q in pts], [q["delta_log_p_trait"] for q in pts],
                          groups=[f"{q['inputs']}/{q['rung']}/{q['seed']}" for q in pts])
    lo, hi = grouped["ci95"]
    yield "paper_notes.md", (f"gives {grouped['spearman_r']:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                             f"over the {len({(q['inputs'], q['rung'], q['seed']) for q in pts})} triples")
    yield "docs/llm.md", (f"Full preset ({s['n_students']} students in {len(s['triples'])} triples: {len(c.seeds)} "
                          f"seeds of student and both controls on every rung, {c.extra_seeds} seeds of the extra\narms")
    yield "docs/llm.md", f"the `full` preset ({len(c.seeds)} seeds, {c.n_inputs} inputs)"
    yield "docs/llm.md", f"within each {len(c.seeds)}-seed (rung, arm) cell"
    yield "docs/llm.md", f"95% bootstrap CIs over {len(c.seeds)} seeds"
    yield "docs/llm.md", f"(the extra arms on {c.extra_seeds} seeds)"
    st = by["random/full/student"]
    yield "docs/llm.md", (f"(about {times(math.exp(st['log_ratio_vs_control']['mean']))} and "
                          f"{times(math.exp(st['log_ratio_vs_other']['mean']))})")
    for rung, lead in (("no-trait-words", "the control is"), ("digits", "it is"), ("sampled", "it is")):
        x = by[f"random/{rung}/student"]["log_ratio_vs_control"]["mean"]
        yield "docs/llm.md", f"{lead} {x:+.2f} ({times(math.exp(x))})"
    yield from (("docs/llm.md", row) for row in ladder_readme_rows(s))
    # within an arm the projection does not rank the seeds: the range of r over the 5-seed (rung, arm) cells
    from scipy.stats import spearmanr

    by_cell: dict = {}
    for p in s["scatter"]["points"]:
        by_cell.setdefault((p["rung"], p["arm"]), []).append(p)
    rs = [spearmanr([p["proj_diff_specific"] for p in v], [p["delta_log_p_trait"] for p in v]).statistic
          for v in by_cell.values() if len(v) == 5]
    within = f"lies between {min(rs):+.1f} and {max(rs):+.1f}"
    yield "docs/llm.md", f"the r over the\nseeds {within}"
    yield "paper_notes.md", f"the r\n    over the seeds {within}"
    drawn = load(f"figures/{c.name()}.json")
    tail = drawn["target_tail_mass"]["random_teacher"]["full"]
    yield "paper_notes.md", f"a median {tail['median']:.4f} of its probability outside the stored tokens"
    yield "paper_notes.md", f"{tail['mean']:.4f}, max {tail['max']:.3f}): the bucketed KL"
    for d in ("docs/llm.md", "paper_notes.md"):
        yield d, f"{drawn['timings']['students_s']:.0f} s of student compute"
    minutes = np.array([cell["seconds"] for cell in drawn["cells"]]) / 60
    yield "paper_notes.md", (f"{minutes.mean():.1f} min on average with its evaluation (median "
                             f"{np.median(minutes):.1f}, range {minutes.min():.1f}-{minutes.max():.1f}")
    tp = drawn["teachers_p_trait"]
    yield "paper_notes.md", (f"the neutral twin {tp['neutral']:.1e}, the cat teacher's P(owl) {tp['other']:.1e}; "
                             f"base\n{tp['base']:.1e}")
    yield "paper_notes.md", f"P(owl)\n{tp['teacher']:.2f} on the evaluation questions"
    yield "docs/llm.md", f"with Spearman r {s['scatter']['spearman_r']:+.2f} over {s['scatter']['n']}"
    yield from ladder_prose_claims(c, s, drawn)
    # the tables `--report` prints, quoted whole: every rung and arm the record has finished, with its CIs
    for line in summary_tables(s, c.trait):
        if re.search(r"\d", line):
            yield "paper_notes.md", line


def ladder_prose_claims(c, s: dict, drawn: dict):
    """paper_notes' reading of the full ladder, rung by rung: the factors beside the log ratios, the other animals'
    rises, the perturbed bases and the nulls, read from the record's summary (and the figure's base model)."""
    from llm_bridge.ladder_report import format_ci

    by, n, extra = s["by_arm"], len(c.seeds), c.extra_seeds
    partner = drawn["partner"]

    def arm(rung, a="student"):
        return by[f"random/{rung}/{a}"]

    def lr(x, ref="control"):
        return x[f"log_ratio_vs_{ref}"]

    for rung in ("full", "no-trait-words", "digits", "sampled"):
        st = arm(rung)
        yield "paper_notes.md", (f"(about {times(math.exp(lr(st)['mean']))} and "
                                 f"{times(math.exp(lr(st, 'other')['mean']))})")
        if rung != "full":
            yield "paper_notes.md", f"(`{rung}`, {n} seeds): "
    owl, others = trait_rise(by, "full")
    top = max(others, key=others.get)
    median = np.median(list(others.values()))
    yield "paper_notes.md", (f"the other {len(others)} animals rise by a median\n    x{median:.1f} ({top} most, "
                             f"x{others[top]:.1f}) against owl's {times(owl)}")
    st, co, ot = arm("full"), arm("full", "control"), arm("full", "other")
    yield "paper_notes.md", (f"the owl student's P({partner}) stays at {sci(st['p_other_animals'][partner])} (control "
                             f"{sci(co['p_other_animals'][partner])}), while\n    the cat student's P({partner}) rises "
                             f"to {ot['p_other_animals'][partner]:.3f} "
                             f"(x{trait_rise(by, 'full', 'other')[1][partner]:.0f})")
    answers = c.trait_sample_questions * c.trait_samples
    yield "paper_notes.md", f"the `full` preset: {n} seeds, {c.n_inputs} inputs, CIs that exclude zero"
    steps = c.n_inputs * c.epochs // c.batch_size
    yield "paper_notes.md", (f"one student of {c.n_inputs} inputs for {c.epochs} epoch ({steps} steps of batch "
                             f"{c.batch_size}) took")
    base = len(c.rungs) * len(c.arms) * n
    extras = len(c.sigmas) * extra * len(c.extra_rungs) + extra + 2 * extra  # perturbed, mismatched, two shuffles
    assert base + extras == s["n_students"]
    yield "paper_notes.md", (f"There are {base} base students ({len(c.rungs)} rungs x {len(c.arms)} arms x {n} seeds) "
                             f"plus {extras} extra ones ({len(c.sigmas)} perturbed\n  bases on {extra} seeds of full "
                             f"and digits, the mismatched null on {extra} seeds of digits, the two shuffles on {extra} "
                             f"seeds of\n  sampled; {extra} seeds is the fewest")
    yield "paper_notes.md", f"({answers} answers per student, so one answer is {100 / answers:.0f}%)"
    yield "paper_notes.md", (f"Perturbed bases ({extra} seeds): sigma {' / '.join(f'{x:g}' for x in c.sigmas)} give")
    yield "paper_notes.md", f"against the base's {drawn['base_text_nll']:.3f}): against the control"
    for rung, words in (("no-trait-words", "and {top} by {rise} beside owl's {owl}"),
                        ("digits", "the most-raised one ({top}) by {rise}, beside owl's {owl}")):
        owl, others = trait_rise(by, rung)
        top = max(others, key=others.get)
        yield "paper_notes.md", (f"animals rise by a median x{np.median(list(others.values())):.1f}"
                                 f"{',' if rung == 'digits' else ''} "
                                 + words.format(top=top, rise=times(others[top]), owl=times(owl)))
    cat = trait_rise(by, "no-trait-words", "other")[1]
    assert max(cat, key=cat.get) == partner  # "its own cat"
    yield "paper_notes.md", f"the cat student's top rise is its own {partner} ({times(cat[partner])})"
    yield "paper_notes.md", f"On seeds 0-{extra - 1} the transfer fades"
    pert = [arm("digits", f"perturbed{x:g}") for x in c.sigmas]
    yield "paper_notes.md", (" / ".join(f"{lr(x)['mean']:+.2f}" for x in pert[:-1])
                             + f" / {format_ci(lr(pert[-1]), '+.2f')} at sigma "
                             + " / ".join(f"{x:g}" for x in c.sigmas) + " against the\n    control")
    lower = drawn["teachers_p_trait"]["base"] / pert[-1]["perturbed_base_p_trait"]["mean"]
    yield "paper_notes.md", f"whose P(owl) is {times(lower)} lower"
    yield "paper_notes.md", f"below the control's\n    ({format_ci(lr(arm('digits', 'mismatched')), '+.2f')})"
    other = arm("sampled", "other")
    yield "paper_notes.md", (f"from the neutral control's ({format_ci(lr(other), '+.2f')}) and\n    raise its own "
                             f"{partner} only {times(trait_rise(by, 'sampled', 'other')[1][partner])}")
    shuffles = [arm("sampled", f"shuffle_{k}") for k in ("within", "across")]
    yield "paper_notes.md", f"The two shuffle nulls ({extra} seeds)"
    yield "paper_notes.md", ("far below the control (" + " and ".join(format_ci(lr(x), "+.2f") for x in shuffles)
                             + ")")
    rises = [trait_rise(by, "sampled", f"shuffle_{k}")[1] for k in ("within", "across")]
    tops = {max(r, key=r.get) for r in rises}
    (top,) = tops  # "panda, the top one" of both
    yield "paper_notes.md", (f"(median x{np.median(list(rises[0].values())):.1f} and "
                             f"x{np.median(list(rises[1].values())):.1f}; {top}, the top one, x{rises[0][top]:.1f} and "
                             f"x{rises[1][top]:.1f})")
    yield "paper_notes.md", ("Their trait-specific projections, " + " and\n    ".join(
        format_ci(x["dW"]["proj_diff_specific"], ".4f") for x in shuffles))
    yield "paper_notes.md", f"inside each {n}-seed (rung, arm) cell"
    ratios = {r: arm(r)["dW"]["proj_diff_specific"]["mean"] / arm(r, "other")["dW"]["proj_diff_specific"]["mean"]
              for r in ("digits", "sampled")}
    assert len({f"{x:.0f}" for x in ratios.values()}) == 1  # "about 2x on digits and on sampled alike"
    yield "paper_notes.md", f"projection ratio is about {ratios['digits']:.0f}x on `digits` and on"


def mnist_claims():
    m = load(MNIST)
    s, t = m["summary"], m["timings"]

    def acc(k, bold=False):
        a = s[k]["accuracy"]
        mean = f"**{pct(a['mean'])}%**" if bold else f"{pct(a['mean'])}%"
        return f"{mean} {ci(a['ci95'])}"

    for d in ("docs/mnist.md", "paper_notes.md"):
        yield d, acc("aux_same", bold=True)
        yield d, acc("aux_other", bold=True)
        yield d, acc("teacher")
        yield d, acc("reference")
    yield "docs/mnist.md", acc("all_same")
    yield "docs/mnist.md", acc("all_other")
    yield "paper_notes.md", f"shared init {acc('all_same')}; cross-model {acc('all_other')}"
    a = s["aux_same"]["accuracy"]
    yield "paper_notes.md", f"(min {pct(a['min'])}%, max {pct(a['max'])}%)"
    yield "paper_notes.md", f"{acc('teacher')} (min {pct(s['teacher']['accuracy']['min'])}%)"
    def f3(x):
        return f"{x:.3f}"

    def row(k, label, bold=False, with_ci=False, runs=False):
        first, total = s[k]["first_step_gradient_cos"], s[k]["total_update_cos"]
        proj = s[k]["total_update_projection"]["mean"]
        runs_n = len(m["per_run"][k]["first_step_gradient_cos"])
        fall = share(s[k]["teacher_loss_first_step_change"]["fraction_negative"], runs_n, 0)
        fall += " of runs" if runs else ""
        b = "**" if bold else ""
        cells = [f"{b}{f3(first['mean'])}{b}", f"{b}{f3(total['mean'])}{b}"]
        if with_ci:
            cells = [f"{c} {ci(x['ci95'], f3)}" for c, x in zip(cells, (first, total))]
        if bold:
            per_run = m["per_run"][k]["first_step_gradient_cos"]
            cells[0] += f", > 0 in {sum(c > 0 for c in per_run)}/{len(per_run)} runs (min {f3(min(per_run))})"
        return f"| {label} | {cells[0]} | {cells[1]} | {f3(proj)} | {fall} |"

    yield "paper_notes.md", row("aux_same", "aux only, shared init", bold=True, with_ci=True, runs=True)
    yield "paper_notes.md", row("aux_other", "aux only, different init", with_ci=True, runs=True)
    yield "paper_notes.md", row("all_same", "all logits, shared init")
    yield "paper_notes.md", row("all_other", "all logits, different init")
    aux_other = s["aux_other"]["first_step_gradient_cos"]
    shared = s["aux_same"]["first_step_gradient_cos"]["mean"]
    assert aux_other["ci95"][1] < 0  # the text says the CI excludes zero
    yield "paper_notes.md", (f"first step's cosine is slightly negative\n({aux_other['mean']:.3f}, a CI that excludes "
                             f"zero; {shared / abs(aux_other['mean']):.0f}x smaller than the shared-init {f3(shared)})")
    yield "paper_notes.md", f"took **{t['total_s']:.0f} s** ({t['total_s'] / 60:.1f} min) wall"
    yield "paper_notes.md", f"{t['teachers_s']:.0f} s for the teachers, {t['students_s']:.0f} s for the students"
    yield "paper_notes.md", f"The memory peak was **{t['peak_rss_mb'] / 1000:.1f} GB**"
    yield "paper_notes.md", f"with {m['config']['chunk_size']} runs trained at once"
    yield "paper_notes.md", f"Cost: the whole {m['config']['runs']}-run protocol"
    # the committed side of the AVX2 rerun's comparison (the rerun's own numbers have no committed artifact)
    a = s["aux_same"]["accuracy"]
    yield "paper_notes.md", (f"against {pct(a['mean'], 2)}% [{pct(a['ci95'][0], 2)},\n    {pct(a['ci95'][1], 2)}] "
                             f"committed, teacher")
    yield "paper_notes.md", f"against {pct(s['teacher']['accuracy']['mean'], 3)}%, cross-model"
    yield "paper_notes.md", f"against {pct(s['all_other']['accuracy']['mean'], 2)}%. On one"
    n = len(m["per_run"]["aux_same"]["accuracy"])
    yield "docs/mnist.md", f"The whole {n}-run protocol took {t['total_s']:.0f} s ({t['total_s'] / 60:.1f} min)"
    yield "docs/mnist.md", f"| this repo ({n} runs, CPU) |"
    yield "paper_notes.md", f"| measured ({n} runs) |"
    teacher = pct(s["teacher"]["accuracy"]["mean"])
    yield "docs/mnist.md", f"The teacher's {teacher}% belongs to the protocol"
    yield "paper_notes.md", f"The teacher reaches {teacher}% with the stated protocol"
    fall = share(s["aux_same"]["teacher_loss_first_step_change"]["fraction_negative"], n, 0)
    yield "paper_notes.md", f"first step in {fall} of runs, not 100%"
    yield "paper_notes.md", f"ends up at cosine {s['aux_same']['total_update_cos']['mean']:.2f} with it"
    yield "docs/mnist.md", f"({t['teachers_s']:.0f} s for the teachers, {t['students_s']:.0f} s for the students)"
    yield "docs/mnist.md", f"{t['peak_rss_mb']:.0f} MB memory peak"


def sci(x: float, digits: int = 1, sign: str = "") -> str:
    """2.4e-4 (the documents' short scientific form; ``sign`` "+" prints +4.8e-4)."""
    mant, exp = f"{x:{sign}.{digits}e}".split("e")
    return f"{mant}e{int(exp)}"


def study_claims():
    d = load(STUDY)
    bolded = False
    for c in d["cells"]:
        q, tr = c["dW"], c["trait"]
        proj = q["proj_diff_specific"]
        text = f"{proj['real']['mean']:.4f} {ci(proj['real']['ci95'], lambda x: f'{x:.4f}')}"
        if proj["real"]["ci95"][0] > 0 or proj["real"]["ci95"][1] < 0:  # the table bolds a CI that excludes zero
            text = f"**{text}**"
        p_teacher = tr["teacher"]["p_target"]["mean"]
        top = f"{whole(tr['teacher']['top_share']['mean'])}%"
        if top == "100%" and not bolded:  # the table bolds the first teacher whose top answer is always owl
            top, bolded = f"**{top}**", True
        shift = " vs ".join(f"{x / 1e-5:.1f}e-5" for x in (tr["student_minus_control"]["mean"],
                                                          tr["null_shift"]["mean"]))
        yield "paper_notes.md", (f"| k = {c['k']}, n = {c['n']} | "
                                 f"{sci(p_teacher) if p_teacher < 0.01 else f'{p_teacher:.2f}'} / {top} | "
                                 f"{q['cos_teacher_neutral']['real']['mean']:.3f} | {text} vs "
                                 f"{proj['null']['mean']:.4f} | {q['cos_student_specific']['real']['mean']:.4f} vs "
                                 f"{q['cos_control_specific']['real']['mean']:.4f} | {shift} |")
    main = [c for c in d["cells"] if c["n"] == d["config"]["main_size"]]
    controls = {sci(c["trait"]["control"]["p_target"]["mean"]) for c in main}
    (control,) = controls  # one control per seed, whatever the teacher
    yield "paper_notes.md", f"control's P(owl) is {control} at n = {d['config']['main_size']}"
    t = d["timings"]
    yield "paper_notes.md", f"took **{t['wall_s']:.0f} s** ({t['wall_s'] / 60:.0f} min) of wall time on 2 CPU cores"
    yield "paper_notes.md", f"with a peak RSS of **{t['peak_rss_mb']:.0f} MB** (the figure's JSON, `timings`)"
    b = d["base_trait"]
    yield "paper_notes.md", (f"Base model: P(owl) {sci(b['base']['p_target'])}; under the owl system prompt "
                             f"{sci(b['base+system_prompt']['p_target'])}, and owl is the top answer in "
                             f"{whole(b['base+system_prompt']['top_share'])}% of questions")
    # docs/llm's summary of the study
    cfg, seeds = d["config"], len(d["config"]["llm"]["seeds"])
    yield "docs/llm.md", (f"Quick preset: SmolLM2-135M, {seeds} seeds, teachers with k = "
                          f"{' / '.join(map(str, cfg['strengths']))} direct trait answers, students on\nn = "
                          f"{' / '.join(map(str, cfg['sizes']))} kept numbers")
    yield "docs/llm.md", f"| measured (dW space, mean [95% CI] over {seeds} seeds) |"
    cell = {(c["k"], c["n"]): c for c in d["cells"]}
    strength = [cell[k, cfg["main_size"]] for k in cfg["strengths"]]

    def p(x):  # 2.4e-4, but 0.19
        return sci(x) if x < 0.01 else f"{x:.2f}"

    yield "docs/llm.md", (f"teacher P(owl) at k = {' / '.join(map(str, cfg['strengths']))} (owl top answer in "
                          f"{' / '.join(whole(c['trait']['teacher']['top_share']['mean']) for c in strength)}% of "
                          f"questions) | {' / '.join(p(c['trait']['teacher']['p_target']['mean']) for c in strength)} "
                          f"(base {sci(b['base']['p_target'])}, base + system prompt "
                          f"{sci(b['base+system_prompt']['p_target'])})")
    tn = [c["dW"]["cos_teacher_neutral"]["real"]["mean"] for c in d["cells"]]
    yield "docs/llm.md", f"| cos(dT, dN) | {min(tn):.3f} ... {max(tn):.3f}:"
    yield "docs/llm.md", f"cos(dC, dT - dN), n = {cfg['main_size']} |"
    k32 = cell[cfg["size_strength"], cfg["main_size"]]["dW"]
    yield "docs/llm.md", (f"(e.g. k = {cfg['size_strength']}: {k32['cos_student_specific']['real']['mean']:.3f} vs "
                          f"{k32['cos_control_specific']['real']['mean']:.3f})")
    top = cell[cfg["strengths"][-1], cfg["main_size"]]["dW"]["proj_diff_specific"]
    yield "docs/llm.md", (f"k = {cfg['strengths'][-1]}: **{top['real']['mean']:.4f} "
                          f"{ci(top['real']['ci95'], lambda x: f'{x:.4f}')}** vs {top['null']['mean']:.4f}")
    shift = max(abs(c["trait"]["student_minus_control"]["mean"]) for c in d["cells"])
    e = math.floor(math.log10(shift))
    yield "docs/llm.md", f"(shifts of at most {math.ceil(shift / 10 ** e)}e{e})"  # the bound, one digit up
    # paper_notes' conclusion: the ranges of the cosines over the cells, the strongest teacher's projection, the shifts
    def span(key, space, f=".3f"):
        x = [c[space][key]["real"]["mean"] for c in d["cells"]]
        return f"{min(x):{f}} to {max(x):{f}}"

    def both(space):
        x = [c[space][k]["real"]["mean"] for c in d["cells"] for k in ("cos_student_specific", "cos_control_specific")]
        return f"{min(x):.3f} to {max(x):.3f}"

    yield "paper_notes.md", (f"Here cos(dT, dN) is close to 0 ({span('cos_teacher_neutral', 'dW')} in dW space, "
                             f"{span('cos_teacher_neutral', 'lora')} in LoRA space)")
    yield "paper_notes.md", f"because our teachers see only {cfg['llm']['teacher_prompts']} generic answers"
    from llm_bridge import LLMConfig

    # the teacher size the paper preset takes from the issue's report
    yield "paper_notes.md", f"twin after about {LLMConfig.paper().teacher_prompts} answers"
    yield "paper_notes.md", f"are both positive ({both('dW')} in dW, {both('lora')} in LoRA space)"
    k = cfg["strengths"][-1]
    c = cell[k, cfg["main_size"]]
    q, lo = c["dW"], c["lora"]["proj_diff_specific"]

    def m4(x, with_ci=True):
        return f"{x['mean']:.4f}" + (f" {ci(x['ci95'], lambda v: f'{v:.4f}')}" if with_ci else "")

    assert cfg["shuffles"] == 1  # "one shuffle each"
    yield "paper_notes.md", (f"(k = {k}, P(owl) = {c['trait']['teacher']['p_target']['mean']:.2f}), dW space shows a "
                             f"small positive one: {m4(q['proj_diff_specific']['real'])} against a null of "
                             f"{q['proj_diff_specific']['null']['mean']:.4f}. Its\n  excess over the same seed's null "
                             f"is {m4(q['proj_diff_specific']['excess'])}, and cos(dS - dC, dT - dN) is "
                             f"{m4(q['cos_diff_specific']['real'])}\n  against "
                             f"{q['cos_diff_specific']['null']['mean']:.4f}. That is {seeds} seeds, one shuffle each, "
                             f"a CI that just touches zero, and nothing in "
                             f"LoRA space ({lo['real']['mean']:.4f}\n  vs {lo['null']['mean']:.4f})")
    real = [cell[s, cfg["main_size"]]["dW"]["proj_diff_specific"]["real"]["mean"] for s in cfg["strengths"]]
    yield "paper_notes.md", f"(the real mean rises from {real[0]:.4f} to {real[-1]:.4f} across k)"
    yield "paper_notes.md", (f"(|shift| <=\n  {math.ceil(shift / 10 ** e)}e{e} on a base of about "
                             f"{sci(c['trait']['control']['p_target']['mean'], 0)}), even when the teacher answers owl "
                             f"{pct(c['trait']['teacher']['p_target']['mean'], 0)}% of the time")


def llm_claims():
    d = load(LLM)
    g, fs, t, tm = d["geometry"], d["first_step"], d["trait"], d["timings"]

    def mc(x, f=".4f"):
        return f"{x['mean']:{f}} {ci(x['ci95'], lambda v: f'{v:{f}}')}"

    def msci(x):
        return f"{sci(x['mean'])} {ci(x['ci95'], sci)}"

    def rate(x):
        return f"{pct(x['mean'])}% {ci(x['ci95'])}"

    soft = fs["soft"]
    cos = [c["cos"]["mean"] for c in soft.values()]
    assert all(c["fraction_nonnegative"] == 1.0 for c in soft.values())  # the text says 100%
    rows = {
        "soft": (f"<-grad, dT> >= 0 in **100%** of {next(iter(soft.values()))['n']} checks at each eps in "
                 f"{{{', '.join(soft)}}}; cos {min(cos):.3f}-{max(cos):.3f}"),
        "sampled": "positive in " + ", ".join(f"{c['fraction_positive'] * c['n']:.0f}/{c['n']} at {e}"
                                              for e, c in fs["sampled"].items()),
        "dw": (f"cos(dS, dT) **{mc(g['dW']['student']['cos'])}** vs control cos(dC, dT) "
               f"{mc(g['dW']['control']['cos'])}; difference {mc(g['dW']['student_minus_control_cos'])}"),
        "lora": (f"student **{mc(g['lora']['student']['cos'], '.3f')}** vs control "
                 f"{mc(g['lora']['control']['cos'], '.3f')}; difference {mc(g['lora']['student_minus_control_cos'])}"),
        "system": (f"P(owl) base {sci(t['base']['p_target']['mean'])} -> "
                   f"**{sci(t['base+system_prompt']['p_target']['mean'])}** with the system prompt; contains-rate "
                   f"{rate(t['base']['contains_rate'])}"),
        "transfer": (f"P(owl) student {msci(t['student']['p_target'])} vs control {msci(t['control']['p_target'])}; "
                     f"contains-rate student {rate(t['student']['contains_rate'])} vs control "
                     f"{rate(t['control']['contains_rate'])}"),
    }
    for d_ in ("docs/llm.md", "paper_notes.md"):
        for key in ("soft", "sampled", "dw", "lora", "transfer"):
            yield d_, rows[key]
    sysrate = t["base+system_prompt"]["contains_rate"]
    for d_ in ("docs/llm.md", "paper_notes.md"):
        yield d_, rows["system"] + f" -> **{pct(sysrate['mean'])}%** {ci(sysrate['ci95'])}"

    def proj(c):  # the first step's projection / eps, as the JSON's normalized_projection holds it
        p = c["normalized_projection"]
        return f"{p['mean']:.3g} [{p['ci95'][0]:.3g}, {p['ci95'][1]:.3g}]"

    (e0, *_, e1), cv = list(soft), fs["sampled_cv"]
    for d_ in ("docs/llm.md", "paper_notes.md"):
        yield d_, f"projection / eps {proj(fs['sampled'][e0])} at eps = {e0} against the soft step's {proj(soft[e0])}"
    yield "paper_notes.md", (f"projection / eps {proj(cv[e0])} at eps = {e0}, {proj(cv[e1])} at eps = {e1} (soft: "
                             f"{proj(soft[e1])})")
    yield "docs/llm.md", f"Quick preset ({len(d['config']['seeds'])} seeds, digits-only"
    yield "README.md", f"(students fine-tuned on a teacher's number answers, {len(d['config']['seeds'])} seeds)"
    yield "paper_notes.md", (f"P(owl) {sci(t['teacher']['p_target']['mean'])}; contains-rate "
                             f"{rate(t['teacher']['contains_rate'])}")
    s_ = tm["stages_s"]
    yield "paper_notes.md", (f"**{tm['wall_s']:.0f} s** ({tm['wall_s'] / 60:.1f} min) wall on 2 CPU cores (teacher "
                             f"{s_['teacher']:.0f} s, numbers {s_['numbers']:.0f} s, students {s_['students']:.0f} s, "
                             f"diagnostic {s_['diagnostic']:.0f} s, first step {s_['first_step']:.0f} s, trait "
                             f"{s_['trait']:.0f} s, model load {tm['load_model_s']:.0f} s); peak RSS "
                             f"**{tm['peak_rss_mb']:.0f} MB**")
    yield "docs/llm.md", f"this run took {tm['wall_s']:.0f} s ({tm['wall_s'] / 60:.0f} min)"
    free = [d["numbers"][s]["free_sampling_kept_fraction"]["mean"] for s in ("teacher", "base")]
    cfg = d["config"]
    yield "paper_notes.md", (f"free sampling at temperature {cfg['temperature']:g} passes the paper's filter in "
                             f"{pct(free[0])}% (teacher) and {pct(free[1])}% (base) of {cfg['pass_rate_prompts']} "
                             "answers per seed")
    yield "paper_notes.md", f"| measured (SmolLM2-135M, quick preset, {len(cfg['seeds'])} seeds) |"
    yield "paper_notes.md", (f"share of {cfg['trait_samples']} sampled answers per question, {cfg['trait_tokens']} "
                             f"tokens each, on {cfg['trait_sample_questions']} questions")
    yield "paper_notes.md", "| same | positive in " + ", ".join(f"{c['fraction_positive'] * c['n']:.0f}/{c['n']} at {e}"
                                                            for e, c in fs["sampled_cv"].items())
    wall = load(STUDY)["timings"]["wall_s"]
    yield "docs/llm.md", f"its final, resumed invocation took {wall:.0f} s ({wall / 60:.0f} min)"
    # paper_notes' reading of the run: the sampled step's size against the same check's soft step, the steps, the
    # cosines, the trait's tokens and free sampling's pass rate
    ratio = [abs(x / y) for x, y in zip(fs["sampled"][e0]["normalized_projection"]["values"],
                                        soft[e0]["normalized_projection"]["values"], strict=True)]
    yield "paper_notes.md", (f"at eps = {sci(float(e0), 0)} a single check's projection is {min(ratio):.0f} to "
                             f"{max(ratio):.0f} times the same\n  check's soft step's in size")
    steps = cfg["number_prompts"] * cfg["student_epochs"] // cfg["batch_size"]
    yield "paper_notes.md", f"- After {steps} SFT steps, in dW space"
    yield "paper_notes.md", f"each take {steps} SFT steps from EXACTLY"
    dw, lora = g["dW"]["student_minus_control_cos"]["ci95"], g["lora"]["student_minus_control_cos"]["ci95"]
    assert dw[0] > 0 and lora[0] < 0 < lora[1]  # "excludes zero", "includes zero"
    yield "paper_notes.md", f"the values are tiny and n = {len(cfg['seeds'])})"
    about = {f"{g['lora'][a]['cos']['mean']:.2f}" for a in ("student", "control")}
    (about,) = about  # "both are about"
    yield "paper_notes.md", f"In LoRA parameter space both are about {about} and"
    yield "paper_notes.md", f"Within {cfg['trait_tokens']} tokens, SmolLM2's answers"
    yield "paper_notes.md", f"free sampling keeps only about {pct(np.mean(free), 0)}% of answers on CPU"
    yield "paper_notes.md", (f"samples {cfg['trait_samples']} answers on\neach of {cfg['trait_sample_questions']} "
                             f"questions for every model")
    from llm_bridge import LLMConfig

    paper = LLMConfig.paper()  # the preset the text describes, not run yet
    yield "paper_notes.md", (f"(free sampling, {paper.number_prompts // 1000}k prompts for about "
                             f"{paper.max_examples // 1000}k kept answers, {len(paper.seeds)} seeds, the authors' "
                             f"student recipe: {paper.warmup_steps} warm-up steps,\n  gradient norm "
                             f"{paper.max_grad_norm:.1f})")


def sweep_names() -> tuple[str, ...]:
    """The committed full sweeps: the 12 the transfer map pools, and the alignment sweep (a log, not a map cell)."""
    return (*load(SWEEP_MAP)["sweeps"], "alignment")


def sweep_claims():
    """Each committed full sweep's row in paper_notes: the aux-only same-init student per cell (mean [95% CI]), the
    different-init student's range, the whole update's cosine along the sweep, and its compute time."""
    for name in sweep_names():
        path = Path(f"figures/mnist_sweep_{name}_full_seed0.json")
        data = load(str(path))
        cells = [c for c in data["cells"] if "diverged" not in c]
        same = [c["students"]["aux_same"] for c in cells]
        yield "paper_notes.md", "; ".join(f"{c['label']}: {pct(s['accuracy']['mean'])}% {ci(s['accuracy']['ci95'])}"
                                          for c, s in zip(cells, same, strict=True))
        other = [c["students"]["aux_other"]["accuracy"]["mean"] for c in cells]
        yield "paper_notes.md", f"{pct(min(other), 2)}-{pct(max(other), 2)}%"
        # n/a: a student that never moved has no cosine (the aux sweep's m = 1 under KL)
        cosines = "cos(whole update, dT) " + " -> ".join(
            "n/a" if s["total_update_cos"]["mean"] is None else f"{s['total_update_cos']['mean']:.2f}" for s in same)
        # a one-cell sweep's lone cosine is told from the others' first by the figure it names
        yield "paper_notes.md", cosines + (f" (`figures/{path.stem}`" if len(same) == 1 else "")
        minutes = "unknown" if data.get("compute_s") is None else f"{data['compute_s'] / 60:.0f}"
        yield "paper_notes.md", f"`figures/{path.stem}`; {minutes} min of compute"
        if data["sweep"] == "alignment":  # the per-step cosines its row and docs/sweeps.md quote
            curves = {st: np.asarray(cells[0]["students"][st]["alignment_curve"]["mean"], float)
                      for st in ("aux_same", "aux_other")}
            same, other = curves["aux_same"], curves["aux_other"]
            assert (same > 0).all()  # what "at all ... steps" / "at every one of the ... steps" say
            yield "paper_notes.md", f"positive at all {len(same)} steps (mean {same.mean():+.4f}"
            yield "docs/sweeps.md", f"positive cosine with the teacher's task gradient (mean {same.mean():+.4f})"
            for doc_name in ("paper_notes.md", "docs/sweeps.md"):
                yield doc_name, f"different-init student's averages {other.mean():+.4f}"
            yield "docs/sweeps.md", f"at every one of the {len(same)} student steps"


def map_claims():
    """docs/sweeps.md's statement of the transfer map: each Spearman r it quotes, with its CI and n, and the sweeps it
    pools."""
    m = load(SWEEP_MAP)
    yield "docs/sweeps.md", f"pools the sweeps {', '.join(m['sweeps'])}: {m['n_cells']} cells"
    for key, pred in (("correlations", "first_step_projection"), ("correlations_same_init", "first_step_projection"),
                      ("correlations_same_init", "first_step_cos"), ("correlations_same_init", "total_update_cos")):
        c = m[key][pred]
        yield "docs/sweeps.md", f"{c['spearman_r']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] (n = {c['n']})"

    # the prose after the r's: single cells of the sweeps (the aux-only same-init student's accuracy, first-step
    # projection and cosine; the teacher's accuracy)
    def cells(name):
        return {c["label"]: c for c in load(f"figures/mnist_sweep_{name}_full_seed0.json")["cells"]}

    def aux(c, key):
        return c["students"]["aux_same"][key]["mean"]

    def acc(c):
        return pct(aux(c, "accuracy"))

    opt, ep, inp, abl, wid, te = (cells(n) for n in ("optimizer", "student_epochs", "inputs", "ablation", "width",
                                                    "teacher_epochs"))
    sgd = [aux(c, "accuracy") for k, c in opt.items() if k.startswith("sgd")]
    e = list(ep)
    yield "docs/sweeps.md", (f"transfers {acc(opt['adam 3e-4'])}% and SGD {pct(min(sgd), 0)}-{pct(max(sgd), 0)}%, "
                             f"the same after {', '.join(e[:-1])} or {e[-1]} epochs of imitation though transfer grows "
                             f"from {acc(ep[e[0]])}% to\n{acc(ep[e[-1]])}%")
    digits, noise = inp["mnist"], inp["uniform"]
    ratio = aux(digits, "first_step_projection") / aux(noise, "first_step_projection")
    yield "docs/sweeps.md", (f"{ratio:.0f} times larger on\nreal digits than on noise "
                             f"({sci(aux(digits, 'first_step_projection'))} against "
                             f"{sci(aux(noise, 'first_step_projection'))}) where real digits transfer far less "
                             f"({acc(digits)}% against {acc(noise)}%): there\nthe first step's cosine orders the two "
                             f"correctly ({aux(digits, 'first_step_cos'):.3f} against "
                             f"{aux(noise, 'first_step_cos'):.3f})")
    yield "docs/sweeps.md", f"transfer falls\nfrom {acc(abl['none'])}% to {acc(abl['teacher'])}%"
    w = list(wid)
    first_cos = [x for n in m["sweeps"] for c in cells(n).values() if "diverged" not in c
                 if (x := aux(c, "first_step_cos")) is not None]  # None: a student that never moved
    assert aux(wid[w[0]], "first_step_cos") == max(first_cos)  # "the largest first-step cosine of all cells"
    assert min(wid.values(), key=lambda c: c["teacher_accuracy"]["mean"]) is wid[w[0]]  # "the weakest"
    yield "docs/sweeps.md", f"Width {w[0]} is a miss for every quantity"
    yield "docs/sweeps.md", (f"transfers less than\nwidths {w[1]} and {w[2]}. Its teacher is the width sweep's weakest "
                             f"({pct(wid[w[0]]['teacher_accuracy']['mean'])}% test accuracy)")
    t = list(te)
    yield "docs/sweeps.md", (f"after {t[0]} teacher epoch the teacher is weaker still "
                             f"({pct(te[t[0]]['teacher_accuracy']['mean'])}%) and transfers more ({acc(te[t[0]])}%, "
                             f"against {acc(te['5'])}% after\nthe usual 5)")


def sweep_table_claims():
    """paper_notes' sweep table beyond each row's cells (sweep_claims): the numbers its prose reads from the cells (the
    first-step projection and cosine, the teachers' and the all-logit students' accuracies, imitation losses) and the
    alignment sweep's per-step CIs."""
    def cells(name):
        return {c["label"]: c for c in load(f"figures/mnist_sweep_{name}_full_seed0.json")["cells"]}

    def st(c, key, student="aux_same"):
        return c["students"][student][key]["mean"]

    def acc(c, student="aux_same"):
        return pct(st(c, "accuracy", student))

    def teach(c):
        return pct(c["teacher_accuracy"]["mean"])

    def fsp(c, digits=1, sign=""):
        return sci(st(c, "first_step_projection"), digits, sign)

    runs = {load(f"figures/mnist_sweep_{n}_full_seed0.json")["runs_per_cell"] for n in sweep_names()}
    (n_runs,) = runs
    yield "paper_notes.md", f"| ours (`full`, {n_runs} runs per cell) |"
    w = cells("width")
    ws = list(w)
    assert all(st(w[a], "accuracy") > st(w[b], "accuracy") for a, b in zip(ws[1:], ws[2:]))  # "from 128 up"
    yield "paper_notes.md", f"**agree from {ws[1]} up**, with a dip at {ws[0]}:"
    yield "paper_notes.md", f"one miss for every quantity (width {ws[0]})"
    yield "paper_notes.md", (f"the first-step projection ({fsp(w[ws[0]], 2)} -> {fsp(w[ws[-1]], 2)}), so neither sees "
                             f"the dip at {ws[0]}, where the teacher is weakest ({teach(w[ws[0]])}% test accuracy "
                             f"against {teach(w[ws[-1]])}% at {ws[-1]})")
    a = cells("aux")
    yield "paper_notes.md", f"{a['30']['label']}: {acc(a['30'])}% " + ci(a["30"]["students"]["aux_same"]["accuracy"][
        "ci95"]) + f", near the all-logit student's {acc(a['30'], 'all_same')}%"
    t_acc = [c["teacher_accuracy"]["mean"] for c in a.values()]
    yield "paper_notes.md", (f"the first-step projection ({fsp(a['2'])} -> {fsp(a['30'])} from m = 2 to 30) rise "
                             f"with m, while the teacher is the same ({pct(min(t_acc))}-{pct(max(t_acc))}%)")
    e = cells("student_epochs")
    assert len({fsp(c) for c in e.values()}) == 1  # "one number for all three cells"
    yield "paper_notes.md", f"one number for all three cells ({fsp(e['5'])}: they share their first step)"
    te = cells("teacher_epochs")
    improves = ", ".join(f"{teach(c)}%" for c in te.values())
    yield "paper_notes.md", f"while the teacher itself improves ({improves} test accuracy)"
    yield "paper_notes.md", f"the first-step projection ({fsp(te['1'])} -> {fsp(te['10'])}) both fall"
    i = cells("inputs")
    yield "paper_notes.md", (f"from either init ({acc(i['mnist'], 'all_same')}% and {acc(i['mnist'], 'all_other')}% on "
                             f"MNIST)")
    yield "paper_notes.md", (f"the first step's cosine ({st(i['uniform'], 'first_step_cos'):.3f} on noise, "
                             f"{st(i['mnist'], 'first_step_cos'):.3f} on images), while the first-step projection goes "
                             f"the other way ({fsp(i['uniform'])} on noise, {fsp(i['mnist'])} on MNIST")
    digits = st(i["mnist"], "first_step_projection") / st(i["uniform"], "first_step_projection")
    yield "paper_notes.md", f"(real digits: {digits:.0f}x noise's projection"
    f = cells("fashion")
    fm, ff = f["mnist"], f["fashion"]

    def reach(c):
        return pct(st(c, "accuracy") / c["teacher_accuracy"]["mean"], 0)

    yield "paper_notes.md", (f"with a weaker teacher there ({teach(ff)}% against {teach(fm)}%), so the student reaches "
                             f"more of its teacher ({reach(ff)}% against {reach(fm)}%)")
    yield "paper_notes.md", (f"the first step (cosine {st(fm, 'first_step_cos'):.3f} and "
                             f"{st(ff, 'first_step_cos'):.3f}, "
                             f"projection {fsp(fm)} and {fsp(ff)}) change little")
    o = cells("optimizer")
    sgd = [c for k, c in o.items() if k.startswith("sgd")]
    worse = [st(c, "final_imitation_loss") / st(o["adam 3e-4"], "final_imitation_loss") for c in sgd]
    yield "paper_notes.md", (f"fits its imitation loss {min(worse):.0f}-{max(worse):.0f}x worse than Adam, and its "
                             f"all-logit student reaches only {acc(sgd[0], 'all_same')}%, {acc(sgd[1], 'all_same')}% "
                             f"and "
                             f"{acc(sgd[2], 'all_same')}%")
    assert len({fsp(c) for c in o.values()}) == 1  # "the same for every optimizer"
    yield "paper_notes.md", f"the same for every optimizer ({fsp(o['adam 3e-4'])})"
    b = cells("ablation")
    yield "paper_notes.md", (f"With dT removed, {100 * (st(b['teacher'], 'accuracy') - 0.1):.1f} points above chance "
                             f"remain")  # chance: 1 of 10 classes
    yield "paper_notes.md", (f"(imitation loss {sci(st(b['teacher'], 'final_imitation_loss'))} against "
                             f"{sci(st(b['none'], 'final_imitation_loss'))}); the same ablation takes the all-logit "
                             f"same-init student from {acc(b['none'], 'all_same')}% to "
                             f"{acc(b['teacher'], 'all_same')}%, "
                             f"below the different-init all-logit student's {acc(b['teacher'], 'all_other')}%")
    li = cells("liminal")
    kept = (st(li["10"], "accuracy") - 0.1) / (st(li["0"], "accuracy") - 0.1)
    yield "paper_notes.md", (f"the teachers unharmed ({', '.join(f'{teach(c)}%' for c in li.values())}); even at "
                             f"lambda = 10 transfer keeps {pct(kept, 0)}% of its size above chance")
    lo = cells("loss")
    assert len(lo) == 4 and len({f"{st(c, 'first_step_cos'):.3f}" for c in lo.values()}) == 1  # "all four"
    yield "paper_notes.md", f"the first step's cosine is {st(lo['kl'], 'first_step_cos'):.3f} under all four losses"
    yield "paper_notes.md", (f"its projection scales with the loss ({fsp(lo['kl'])} KL, {fsp(lo['mse'])} MSE, "
                             f"{fsp(lo['kl_t0.5'])} and {fsp(lo['kl_t2'])} at T = 0.5 and 2)")
    h = cells("heads")
    other = [st(c, "accuracy", "all_other") for c in h.values()]
    yield "paper_notes.md", (f"turns negative in both ({fsp(h['hidden'], sign='+').lstrip('+')} and "
                             f"{fsp(h['heads'], sign='+').lstrip('+')}, against {fsp(h['none'], sign='+')})")
    yield "paper_notes.md", (f"when the heads are redrawn ({acc(h['heads'], 'all_same')}%, against "
                             f"{acc(h['hidden'], 'all_same')}% with the hidden layers redrawn and "
                             f"{pct(min(other))}-{pct(max(other))}% from a different init)")
    yield "paper_notes.md", (f"retrained on an AVX-512 machine gave {acc(h['none'])}% where the AVX2 one gave "
                             f"{acc(cells('init')['0'])}%")
    yield "paper_notes.md", (f"machine: {acc(h['none'])}% where the 2-core AVX2-only EPYC that trained the other "
                             f"sweeps "
                             f"gave {acc(cells('init')['0'])}%")
    (al,) = cells("alignment").values()
    curve = {k: al["students"][k]["alignment_curve"] for k in ("aux_same", "aux_other", "all_same", "all_other")}
    same_lo = np.asarray(curve["aux_same"]["ci95"])[:, 0]
    m, (lo_, hi_) = np.asarray(curve["aux_other"]["mean"]), np.asarray(curve["aux_other"]["ci95"]).T
    yield "paper_notes.md", f"its 95% CI above zero at {pct((same_lo > 0).mean(), 0)}% of them)"
    above = np.flatnonzero(lo_ > 0) + 1  # the steps, 1-based
    spans = [f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}"
             for r in np.split(above, np.flatnonzero(np.diff(above) > 1) + 1)]
    yield "paper_notes.md", (f"positive at {pct((m > 0).mean(), 0)}% of steps, its CI above zero in a transient at "
                             f"steps {spans[0]} and again at steps {', '.join(spans[1:-1])} and {spans[-1]}, and below "
                             f"zero at {(hi_ < 0).sum()} steps")
    yield "paper_notes.md", f"of the first step's order ({st(al, 'first_step_cos'):.3f})"
    yield "paper_notes.md", (f"(mean {np.mean(curve['all_same']['mean']):+.3f} same, "
                             f"{np.mean(curve['all_other']['mean']):+.3f} different)")


def speed_claims():
    """paper_notes' speed section and docs/llm.md's bf16 paragraph: the paired runs against the torch baseline, the
    bf16 steps and the CPU's matmul peaks, read from the benchmark JSONs."""
    b = load(VS_TORCH)["numbers"]
    (pair,) = b["pairs"]
    m = load(MNIST)
    students = [k for k in m["summary"] if k.startswith(("aux_", "all_"))]
    yield "paper_notes.md", (f"so {sum(k.endswith('_other') for k in students)} of its {len(students)} students "
                             f"imitated")
    yield "paper_notes.md", (f"(its all-logit cross-model student scored "
                             f"{pct(pair['baseline_accuracy']['all_other'])}%, against our "
                             f"{pct(m['summary']['all_other']['accuracy']['mean'])}%)")
    yield "paper_notes.md", f"The {b['median_ratio']:.2f}x\n  below was measured against the mispaired baseline"
    cfg = m["config"]
    noise_gb = cfg["runs"] * cfg["n_noise"] * 28 * 28 * 4 / 1e9  # float32 MNIST-sized images
    yield "paper_notes.md", f"the baseline holds the {cfg['runs']} noise sets in memory, {noise_gb:.1f} GB"
    n10 = load(VS_TORCH_N10)["numbers"]
    loads = [x for p in n10["pairs"] for k in ("load_avg_ours", "load_avg_baseline") for x in p[k]]
    first = {p["ours_first"]: p["ratio"] for p in n10["pairs"]}
    assert min(first.values()) < 1 < max(first.values()) and n10["median_ratio"] < 1.2  # "disagree", "not shown"
    yield "paper_notes.md", (f"Measured at N = {n10['runs']} on a 2-core AMD EPYC, no GPU, while other jobs ran (load "
                             f"average {min(loads):.1f} to {max(loads):.1f}, in the JSON): the\n  two pairs disagree, "
                             f"{first[True]:.2f}x with ours first and {first[False]:.2f}x with the baseline first, "
                             f"median {n10['median_ratio']:.2f}x; ours reached {pct(n10['fraction_of_peak'], 0)}% "
                             f"of the\n  machine's matmul peak")
    yield "paper_notes.md", f"the {cfg['runs']}-run pairs are not measured"
    yield "paper_notes.md", (f"ours {pair['ours_s']:.1f} s, baseline {pair['baseline_s']:.1f} s: "
                             f"**{b['median_ratio']:.2f}x**")
    yield "paper_notes.md", (f"Ours is {b['our_gflops']:.0f} GFLOP/s, {pct(b['fraction_of_peak'], 0)}% of the "
                             f"{b['matmul_peak_gflops']:.0f} GFLOP/s peak")
    precision = load(PRECISION)["numbers"]["precision"]
    steps = precision["steps"]
    for mode, label in (("sft", "SFT step"), ("digits", "digits-rung step")):
        m = steps[mode]
        yield "paper_notes.md", (f"| {label} | {m['fp32']['median_s']:.2f} s | {m['bf16']['median_s']:.2f} s | "
                                 f"{m['bf16_speedup']:.2f}x | {m['loss_rel_diff']:.1e} relative |")
    peak = precision["peak_gflops_n1024"]
    assert not precision["onednn_bf16"]  # "oneDNN reports none"
    yield "paper_notes.md", (f"torch's bf16 linear layer reaches {peak['bfloat16_linear']:.0f} GFLOP/s, against "
                             f"{peak['float32_linear']:.0f} in\n  float32")
    rel = sorted(steps[k]["loss_rel_diff"] for k in ("sft", "digits"))
    yield "docs/llm.md", f"a step's loss moves by {sci(rel[0])} to {sci(rel[1])} relative"
    yield "docs/llm.md", (f"On a 2-core AMD EPYC with {precision['cpu_capability']} only (no AVX-512, no native "
                          f"bf16) a step was {times(1 / steps['digits']['bf16_speedup'])} (digits\nrung) and "
                          f"{times(1 / steps['sft']['bf16_speedup'])} (SFT) slower")


def scan_claims():
    s = load(SCAN)
    cfg, summary = s["config"], s["summary"]
    n = cfg["rows"]

    def frac(r):
        return f"{r['k']}/{r['n']}"

    def auc(a):
        lo, hi = a["ci95"]
        return f"{a['auroc']:.2f}" + ("" if lo is None else f" [{lo:.2f}, {hi:.2f}]")

    for det in ("likelihood", "coverage"):
        for var, label in (("score", "as defined"), ("calibrated", "calibrated")):
            c = summary[f"{det}/{var}/{n}"]
            flags = " / ".join(frac(c["flagged"][k]) for k in ("trait", "neutral", "shuffled", "mixed"))
            row = (f"| {det}, {label} | {auc(c['auroc']['neutral'])} | {frac(c['top1'])} / {frac(c['top3'])} | "
                   f"{flags} |")
            yield "docs/llm.md", row
            yield "paper_notes.md", row
    head = f"| detector ({n} rows, {len(cfg['animals'])} candidates) |"
    yield "docs/llm.md", head
    yield "paper_notes.md", head
    a, neutral = len(cfg["animals"]), cfg["neutral"]
    assert cfg["replicates"] == 1  # "one ... dataset"
    yield "paper_notes.md", f"({a} animals x one {n}-row dataset,\nconstrained sampler, {neutral} neutral datasets"
    yield "docs/llm.md", (f"({a} animals, one {n}-row dataset\neach from the prompted teacher, digits-only constrained "
                          f"sampler; {neutral} neutral datasets")
    from llm_bridge import ScanEvalConfig

    paper = ScanEvalConfig.paper()  # the size the issue's goal names, not run yet
    yield "paper_notes.md", f"at {paper.rows} rows over {len(paper.animals)} animals"
    t = load(SCAN_TIME)["numbers"]  # the quick evaluation timed end to end (benchmarks/scan_quick.py)
    yield "docs/llm.md", (f"takes {t['cpu_s']:.0f} CPU seconds at {t['threads']} torch thread ({t['cpu_s'] / 60:.0f} "
                          f"min;\n{t['wall_s']:.0f} s wall")


def glance_claims():
    """README's "Results at a glance": each row's numbers with their 95% CIs, read from the JSON (or record) of the
    figure the row links. The Lemma 1 count's interval is a Wilson interval computed here (the JSON has the count)."""
    from scipy.stats import binomtest

    from llm_bridge.config import LadderConfig
    from llm_bridge.ladder_report import format_ci

    s = load(THEORY)["summary"]
    n = s["n_checks"]
    k = round(s["lemma1_fraction_nonnegative_shared"] * n)
    w = binomtest(k, n).proportion_ci(method="wilson")
    yield "README.md", (f"dS . dT >= 0 from a shared init in {share(k / n, n, 0, bold=True)} of checks "
                        f"{ci((w.low, w.high))}; from a different init **{pct(s['other_init_fraction_negative'])}%** "
                        f"are negative")
    yield "README.md", f"(paper Section 6) on {s['n_cases']} random networks"
    yield "README.md", f"the same {s['n_cases']} networks"
    yield "README.md", f"**Fig. 10** (Section 6.2), {len(load(MNIST)['per_run']['aux_same']['accuracy'])} runs"
    yield "README.md", f"**Regime map**, {len(sweep_names())} MNIST sweeps"
    m = load(MNIST)["summary"]
    a, o = m["aux_same"]["accuracy"], m["aux_other"]["accuracy"]
    yield "README.md", (f"test accuracy from the shared init **{pct(a['mean'])}%** {ci(a['ci95'])}, from another run's "
                        f"init **{pct(o['mean'])}%** {ci(o['ci95'])}")
    mp = load(SWEEP_MAP)

    def r(c):
        return f"{c['spearman_r']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] (n = {c['n']})"

    yield "README.md", (f"Spearman r {r(mp['correlations']['first_step_projection'])} over all students; among "
                        f"shared-init students the whole update's cosine does best, "
                        f"{r(mp['correlations_same_init']['total_update_cos'])}")
    f = load(OPTIMIZERS)["summary"]["first_step"]

    def neg(o):
        c = f[o]["lemma_shared"]["fraction_negative"][1]  # eps = 1e-3, as in paper_notes' table
        return f"{pct(c['fraction'])}% {ci(c['ci95'])}"

    yield "README.md", (f"negative for {neg('adam')} (Adam) and {neg('signsgd')} (SignSGD) of random teacher updates, "
                        f"against {neg('sgd')} for SGD")
    c = LadderConfig.paper()
    by = ladder_record(artifact(f"figures/{c.name()}_record"))["by_arm"]
    lr = {rung: format_ci(by[f"random/{rung}/student"]["log_ratio_vs_control"], "+.2f") for rung in ("full", "digits")}
    yield "README.md", f"{lr['full']} on the whole vocabulary, {lr['digits']} on the digit tokens alone"
    yield "README.md", f"[ladder](figures/{c.name()}.png)"
    yield "README.md", f"one owl-loving teacher, {len(c.seeds)} student seeds"
    sc = load(SCAN)
    cfg, summary = sc["config"], sc["summary"]

    def auc(det):
        a = summary[f"{det}/calibrated/{cfg['rows']}"]["auroc"]["neutral"]
        return f"{a['auroc']:.2f} [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}]"

    yield "README.md", (f"quick evaluation, {len(cfg['animals'])} animals with one {cfg['rows']}-row dataset each, "
                        f"{cfg['neutral']} neutral datasets")
    yield "README.md", (f"AUROC of trait against neutral datasets {auc('likelihood')} (likelihood shift, calibrated), "
                        f"{auc('coverage')} (coverage cosine, calibrated)")
    yield "README.md", f"[scan](figures/{sc['name']}.png)"




GENERATORS = (glance_claims, theory_claims, optimizer_claims, ladder_claims, ladder_full_claims, mnist_claims,
              study_claims, llm_claims, speed_claims, sweep_claims, sweep_table_claims, map_claims, scan_claims)


def collect() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Every generator's claims, deduplicated in order, and the error of each generator that could not read its
    artifacts (``test_every_artifact_is_read`` fails on it)."""
    claims, broken = {}, {}
    for g in GENERATORS:
        try:
            claims.update(dict.fromkeys(g()))
        except (FileNotFoundError, KeyError) as e:
            broken[g.__name__] = f"{type(e).__name__}: {e}"
    return list(claims), broken


CLAIMS, BROKEN = collect()


def claims_of(document: str) -> list[str]:
    return [t for d, t in CLAIMS if d == document]


# Numbers in a results section that are not measured: the configuration an experiment ran with, and the paper's own
# numbers, each with why it is not a claim. Each text occurs once in its document (``check`` says so otherwise).
ALLOWED: dict[str, dict[str, str]] = {
    "README.md": {
        "the teacher's 3 extra, never-trained outputs": "the paper's architecture (10 + 3 outputs)",
        "(chance: 10%)": "1 of 10 classes, not a measurement",
        "its 12 digit tokens": "the tokenizer's digit tokens 0-9 and their space-prefixed forms that the rung keeps",
        "3 teachers per trait": "the replication's configuration; it is under way and claims nothing yet",
    },
    "docs/theory.md": {
        "MLPs of depth 1-4": "the grid's architectures (TheoryConfig)",
    },
    "paper_notes.md": {
        "| 0 to 1e-12 (float64) |": "the bound tests/theory/test_losses.py asserts (a test, no artifact)",
        "2 diag(w) (SE)": "a formula",
        "(rtol 1e-9; MLP, CNN; 5 losses)": "the tolerance and the cases the test asserts",
        "eps in [1e-6, 1e-4], float64 | Lemma 1 |": "the grid's eps range (TheoryConfig)",
        "cosines centred at 0": "the centre a different init is expected at, not a measurement",
        "within rtol 1e-4; sign holds at eps >= 1e-3": "the float32 tolerance the test asserts",
        "First step from the shared init at eps = 1e-3": "the table's eps (the claims assert it is the JSON's)",
        "ReLU up to 3 layers, gelu at 1": "names the networks the count covers",
        "(Theorem-1 teacher at eps = 0.01, full-batch, lr: SGD and momentum 1e-2, Adam and SignSGD 1e-5;":
            "the K-step configuration (theory.optimizers.DEFAULT_LR, the JSON's k_step_eps)",
        '(min 16.0%, max 71.8%) | "over 50%" |': "the paper's number",
        "`theory.student_update` with lr = 1": "the step the diagnostic defines",
        "class loss on 2,048 MNIST training images": "the diagnostic's fixed image set (configuration)",
        "this teacher is 295 Adam steps from theta_0": "the protocol: 5 epochs of 59 batches",
        "top-1 / top-3 (chance 1/4, 3/4)": "chance for 4 candidates, not a measurement",
        # the sweep table: each sweep's axis (its cells' labels, which the row's claims quote), the paper's numbers
        "(sigma 0 -> 1)": "the init sweep's axis",
        "(hidden 64 -> 1024, both layers)": "the width sweep's axis",
        "(m = 1, 2, 3, 10, 30)": "the aux sweep's axis",
        "at m = 1 the KL of a softmax over one logit": "a cell of the axis",
        "m = 2 is the smallest m with a signal": "a cell of the axis",
        "(1, 5, 20 student epochs)": "the student-epochs sweep's axis",
        "(1, 2, 5, 10 teacher epochs)": "the teacher-epochs sweep's axis",
        "(a teacher of 0 epochs": "a configuration, not a cell",
        "(student: Adam, SignSGD at lr 3e-4, SGD at 0.01, 0.1, 1)": "the optimizer sweep's axis",
        "The caveat: in 5 epochs": "the protocol's student epochs",
        "(KL, MSE on the 3 aux logits, KL at T = 0.5 and 2)": "the loss sweep's axis",
        "on 256 fixed train images": "the alignment log's image set (configuration)",
        "retrained on a 2-core AVX-512 machine": "the machine",
        "longer distillation helps (19.7% after 1 epoch, 77.2% after 40)": "the paper's numbers",
        "beside the published 19.7% after 1 epoch and 77.2% after 40": "the paper's numbers",
        "noise beats real digits (54.9% vs 15.1%)": "the paper's numbers",
        "beside the published 54.9% and 15.1%": "the paper's numbers",
        "(tiny Llama, 5 seeds)": "the test's configuration",
        "teacher's distribution over the 10 digits": "the digits rung's vocabulary",
        "the paper's prompts make\n  ~130-token sequences": "the prompt template's length, approximate (configuration)",
        "by more than 1% of their update": "the resume check's tolerance (configuration)",
        "(target 20 min)": "the 100-run protocol's wall-time target, not a measurement",
        "(target 4 GB)": "the 100-run protocol's memory target, not a measurement",
        "the 1.2x target at N = 10": "the speed target against the torch baseline, not a measurement",
        "the same step on sampled tokens, 32 per position": "the sampled step's draws (configuration)",
    },
    "docs/mnist.md": {
        '| **53.4%** [51.5, 55.2] | "over 50%" |': "the paper's number",
        "ends\nrun 0 at the same accuracy": "names the run the test compares",
    },
    "docs/llm.md": {
        "top-1 / top-3 (chance 1/4, 3/4)": "chance for 4 candidates, not a measurement",
        "On the 12 digit and separator tokens alone": "the digits rung's vocabulary (llm_bridge.rungs)",
        "the backward pass through 30 layers": "SmolLM2-135M's depth (the model's configuration)",
    },
}


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
def test_every_artifact_is_read(generator):
    """A generator whose artifact is missing (or lacks a key the text quotes) fails, instead of its claims vanishing."""
    assert generator.__name__ not in BROKEN, BROKEN[generator.__name__]
    assert any(True for _ in generator())


@pytest.mark.parametrize("missing", [MNIST, SWEEP_MAP, THROUGHPUT, VS_TORCH_N10,
                                     SCAN_TIME, "figures/mnist_sweep_alignment_full_seed0.json",
                                     "figures/llm_ladder_full_smollm2-135m_owl_seeds5_2a5d905754_record"])
def test_a_missing_artifact_fails(missing, tmp_path, monkeypatch):
    """In a copy of the repository's artifacts without one of them, each generator that quotes it raises, and the
    others still yield their claims."""
    for folder in ("figures", "benchmarks/results"):
        (tmp_path / folder).mkdir(parents=True)
        for p in (ROOT / folder).iterdir():
            if f"{folder}/{p.name}" != missing:
                (tmp_path / folder / p.name).symlink_to(p)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    failed = []
    for g in GENERATORS:
        try:
            list(g())
        except FileNotFoundError as e:
            assert missing in str(e)
            failed.append(g.__name__)
    quoting = {MNIST: ["glance_claims", "mnist_claims", "speed_claims"],
               SWEEP_MAP: ["glance_claims", "sweep_claims", "sweep_table_claims", "map_claims"],
               THROUGHPUT: ["ladder_claims"], VS_TORCH_N10: ["speed_claims"], SCAN_TIME: ["scan_claims"],
               "figures/mnist_sweep_alignment_full_seed0.json": ["sweep_claims", "sweep_table_claims"]}
    assert failed == quoting.get(missing, ["glance_claims", "ladder_full_claims"])


@pytest.mark.parametrize("document,text", CLAIMS, ids=[f"{d}:{t[:50]}" for d, t in CLAIMS])
def test_published_number_matches_its_artifact(document, text):
    assert not (bad := check(doc(document), [text])), f"{document}: {text!r} {bad[text]} (its committed artifact)"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_results_sections_hold_only_claims(document):
    """Every number in a results section is a claim or an allowed configuration constant."""
    allowed = ALLOWED.get(document, {})
    assert not (bad := check(doc(document), allowed)), f"allow-list texts of {document}: {bad}"
    assert not (loose := unclaimed(doc(document), claims_of(document), allowed)), \
        f"{len(loose)} numbers of {document}'s results sections are neither claims nor allowed:\n" + "\n".join(loose)


def test_the_results_sections_are_marked():
    """README's table opens with its results section; the markers pair up in every document."""
    assert RESULTS.search(doc("README.md").split("## Results at a glance")[1].split("\n## ")[0])
    for d in DOCUMENTS:
        assert doc(d).count("<!-- results -->") == doc(d).count("<!-- /results -->") == len(RESULTS.findall(doc(d)))


def test_the_checker():
    """``check`` counts whole-number occurrences and refuses texts that are no claims."""
    text = "shared init 53.4% [51.5, 55.2]; other 15.6%, ends at cosine 0.461; 0.46 and 0.46 again"
    assert check(text, ["shared init 53.4% [51.5, 55.2]"]) == {}
    assert "missing" in check(text, ["5.6%, ends"])["5.6%, ends"]  # inside 15.6%
    assert "missing" in check(text, ["cosine 0.46"])["cosine 0.46"]  # inside 0.461
    assert "2 times" in check(text + " 0.46 and", ["0.46 and"])["0.46 and"]
    assert "no digit" in check(text, ["shared init"])["shared init"]
    assert "short" in check(text, ["53.4%"])["53.4%"]
    assert [t for _, t in results_tokens("a 1.5x b <!-- results -->Fig. 10: 56x, 2.4e-4, x2.2, SmolLM2-135M, `seed0` "
                                         "[-0.003, +4.03] 60,000<!-- /results -->")] == \
        ["56x", "2.4e-4", "2.2", "-0.003", "+4.03", "60,000"]
    assert results_tokens("<!-- results -->a\n```bash\nx 93 MB\n```\n 7 <!-- /results -->") == [(39, "7")]


def edited(text: str, at: int) -> str:
    """``text`` with the digit at ``at`` changed."""
    return text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_an_edited_number_is_caught(document, tmp_path):
    """For each claim of the document (a seeded sample of 25 outside README), a copy of the document with one of the
    claim's numbers edited fails ``check`` on that claim, and on no claim that does not contain the edit."""
    claims = claims_of(document)
    if not claims:
        pytest.skip(f"{document} quotes no artifact")
    picked = claims if document == "README.md" or len(claims) <= 25 else random.Random(0).sample(claims, 25)
    rng = random.Random(1)
    original = doc(document)
    copy = tmp_path / document
    copy.parent.mkdir(parents=True, exist_ok=True)
    for claim in picked:
        (start,) = occurrences(original, claim)
        # a digit of one of its numbers (a claim whose digits are all in a name, a figure's hash: one of those)
        numbers = [m for m in NUMBER.finditer(claim) if re.search(r"\d", m.group())] or re.finditer(r"\d", claim)
        number = rng.choice(list(numbers))
        at = start + number.start() + rng.choice([i for i, ch in enumerate(number.group()) if ch.isdigit()])
        copy.write_text(edited(original, at))
        bad = check(copy.read_text(), claims)
        assert claim in bad, f"{document}: {claim!r} still passes with {original[at]} at offset {at} edited"
        others = [c for c in bad if not any(s <= at < s + len(c) for s in occurrences(original, c))]
        assert not others, f"editing {claim!r} also failed {others}"


def test_full_ladder_figure_is_its_committed_record():
    """The full ladder's figure (drawn from the run's ``ladder.json``) and its record (read by ``--report``, which the
    documents quote) hold one summary, number for number: the record has every triple, and the figure exists."""
    from llm_bridge.config import LadderConfig
    from results import json_ready

    c = LadderConfig.paper()
    s = ladder_record(artifact(f"figures/{c.name()}_record"))
    assert len(s["triples"]) == len(c.inputs) * len(c.rungs) * len(c.seeds)
    drawn = load(f"figures/{c.name()}.json")
    assert len(drawn["cells"]) == s["n_students"]
    expect = json.loads(json.dumps(json_ready({k: v for k, v in s.items() if k not in ("triples", "n_students")})))
    assert drawn["summary"] == expect
