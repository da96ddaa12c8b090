"""The LLM logit ladder (llm_bridge.ladder) on the tiny in-memory Llama: the whole grid end to end for a trait other
than owl, the perturbed base, a planted signal that only the full-vocabulary rung carries, and bad input."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llm_bridge import ladder, ladder_report, rungs, train
from llm_bridge.__main__ import app
from llm_bridge.config import LadderConfig
from llm_bridge.numbers import chat_prefix
from llm_bridge.prompts import ANIMALS
from tests.llm_bridge.helpers import tiny_peft

TINY = dict(trait="cat", rungs=("full", "digits", "sampled"), extra_rungs=("digits",), sigmas=(0.1,))


@pytest.fixture(scope="module")
def tiny_ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder")
    return ladder.run(LadderConfig.tiny(**TINY), out, progress=False, record=out / "record"), out


def test_tiny_ladder_end_to_end_for_another_animal(tiny_ladder):
    res, out = tiny_ladder
    c = LadderConfig.tiny(**TINY)
    assert res["trait"] == "cat" and res["partner"] == rungs.partner("cat") == "dog"
    by = res["summary"]["by_arm"]
    for r in c.rungs:
        for a in c.arms:
            row = by[f"random/{r}/{a}"]
            assert row["seeds"] == list(c.seeds) and 0 < row["p_trait"]["mean"] < 1
    assert {"random/digits/perturbed0.1", "random/digits/mismatched", "random/sampled/shuffle_within",
            "random/sampled/shuffle_across"} <= set(by)
    # the log ratios are the per-seed differences of the cells' own P(trait)
    ti = ANIMALS.index("cat")
    cells = {(x["rung"], x["arm"], x["seed"]): x for x in res["cells"]}
    def p(r, a, s):
        return float(np.nanmean(np.asarray(cells[r, a, s]["p_QxA"])[:, ti]))
    want = np.mean([np.log(p("full", "student", s)) - np.log(p("full", "control", s)) for s in c.seeds])
    assert by["random/full/student"]["log_ratio_vs_control"]["mean"] == pytest.approx(want)
    # every arm's geometry went through theory on the saved adapters; the first step on the soft rungs only
    g = res["geometry"]["random/full/seed0"]["arms"]["student"]["dW"]["overall"]
    assert np.isfinite(g["proj_diff_specific"]) and -1 <= g["cos_student_teacher"] <= 1
    assert set(res["summary"]["first_step"]) == {"random/full", "random/digits"}
    # per layer: the mean over seeds of each layer's own trait-specific projection
    per = by["random/full/student"]["dW"]["proj_diff_specific_by_layer"]
    layers = res["geometry"]["random/full/seed0"]["arms"]["student"]["dW"]["layer"]
    assert set(per) == set(layers) and len(per) >= 2
    for lab in per:
        assert per[lab]["mean"] == pytest.approx(np.mean([res["geometry"][f"random/full/seed{s}"]["arms"]["student"]
                                                          ["dW"]["layer"][lab]["proj_diff_specific"] for s in c.seeds]))
    # the curve starts at step 0 and ends at the student's last step
    curve = cells["full", "student", 0]["curve"]
    assert curve[0][0] == 0 and curve[-1][0] == cells["full", "student", 0]["steps"]
    assert (out / "targets" / "random_teacher.npz").exists() and res["summary"]["scatter"]["n"] >= 3


def test_scatter_per_rung_and_the_summary_tables(tiny_ladder):
    """The scatter's r within each rung is Spearman's r of that rung's own points; the tables (what --report prints
    and paper_notes quotes) carry one row per arm, in the ladder's order, with the numbers of the summary."""
    from scipy.stats import spearmanr

    res, _ = tiny_ladder
    sc = res["summary"]["scatter"]
    assert set(sc["by_rung"]) == {p["rung"] for p in sc["points"]}
    assert sum(x["n"] for x in sc["by_rung"].values()) == sc["n"] == len(sc["points"])
    for r, x in sc["by_rung"].items():
        pts = [p for p in sc["points"] if p["rung"] == r]
        want = spearmanr([p["proj_diff_specific"] for p in pts], [p["delta_log_p_trait"] for p in pts]).statistic
        assert x["spearman_r"] == pytest.approx(want) and x["ci95"][0] <= x["ci95"][1]
    lines = ladder_report.summary_tables(res["summary"], "cat")
    rows = [ln.split(" | ")[0].lstrip("| ") for ln in lines if ln.startswith("| random/")]
    by = res["summary"]["by_arm"]
    assert rows[:3] == ["random/full/student", "random/full/control", "random/full/other"]
    assert rows.index("random/digits/student") < rows.index("random/digits/perturbed0.1") < rows.index(
        "random/sampled/student")
    main = [ln for ln in lines if ln.startswith("| random/") and ln.count("|") == 10]
    assert len(main) == len(by)
    co = by["random/full/control"]["p_other_animals"]
    rise = {an: p / co[an] for an, p in by["random/full/other"]["p_other_animals"].items()}
    # the cat student's other animals: the median rise (a generic shift lifts it too) and the top one
    assert f"| x{np.median(list(rise.values())):.1f}, {max(rise, key=rise.get)} x{max(rise.values()):.1f} |" in main[2]
    st = by["random/full/student"]
    assert f"| {st['log_ratio_vs_control']['mean']:+.2f} [" in main[0] and "P(cat)" in lines[0]
    assert f"| {st['dW']['proj_diff_specific']['mean']:.4f} [" in main[0]
    assert f"| pooled | {sc['spearman_r']:+.2f} [" in "\n".join(lines)
    for r in sc["by_rung"]:
        assert any(ln.startswith(f"| {r} | ") for ln in lines)
    first = [ln.split(" | ")[0].lstrip("| ") for ln in lines if ln.endswith(" of 2 |")]  # the first-step table
    assert first == ["random/full", "random/digits"]


def test_resume_reuses_every_student(tiny_ladder):
    res, out = tiny_ladder
    again = ladder.run(LadderConfig.tiny(**TINY), out, resume=True, progress=False)
    assert again["cells"] == res["cells"]
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(res["summary"], sort_keys=True)  # NaN-safe


def test_plan_trains_one_triple_at_a_time_full_rung_first(tiny_ladder):
    plan = ladder.Ladder(LadderConfig.tiny(**TINY), tiny_ladder[1]).plan()
    triples = [(k, r, s) for (k, r, _, s) in plan]
    starts = [t for i, t in enumerate(triples) if i == 0 or triples[i - 1] != t]
    assert len(starts) == len(set(starts)) == 3 * 2  # each triple's arms are consecutive
    assert plan[:3] == [("random", "full", a, 0) for a in ("student", "control", "other")]
    # on digits (an extra rung) seed 1 has only the base arms (extra_seeds = 1): its short triple comes first
    digits = [(a, s) for (_, r, a, s) in plan if r == "digits"]
    assert digits[:4] == [("student", 1), ("control", 1), ("other", 1), ("student", 0)]
    assert [r for (_, r, _, _) in plan] == sorted((r for (_, r, _, _) in plan), key=TINY["rungs"].index)
    assert ("random", "digits", "mismatched", 0) in plan and ("random", "digits", "mismatched", 1) not in plan


def _count_students(monkeypatch) -> list[str]:
    trained, loss = [], ladder.Ladder.rung_loss
    def counting(self, rung, *a):
        trained.append(rung)
        return loss(self, rung, *a)
    monkeypatch.setattr(ladder.Ladder, "rung_loss", counting)
    return trained


def test_record_resumes_in_a_fresh_folder(tiny_ladder, tmp_path, monkeypatch):
    """The record keeps only light JSON (no adapters, no targets), yet a fresh folder resumed from it trains no
    student and merges the same numbers; a triple whose geometry the record lacks is retrained; teachers that differ
    from the record's are a clear error."""
    res, out = tiny_ladder
    record = out / "record"
    c = LadderConfig.tiny(**TINY)
    kept = sorted(p.relative_to(record).as_posix() for p in record.rglob("*") if p.is_file())
    assert all(k.endswith(".json") for k in kept) and "teachers.json" in kept
    assert len([k for k in kept if k.endswith("cell.json")]) == len(res["cells"])
    assert len([k for k in kept if k.startswith("geometry/")]) == len(c.rungs) * len(c.seeds)
    teachers = json.loads((record / "teachers.json").read_text())
    assert set(teachers["sketches"]) == {"init", "teacher", "neutral", "other"} and teachers["agreement"] == {}
    trained = _count_students(monkeypatch)
    again = ladder.run(c, tmp_path / "clone", resume=True, progress=False, record=record)
    assert trained == [] and again["cells"] == res["cells"]
    assert json.dumps(again["summary"], sort_keys=True) == json.dumps(res["summary"], sort_keys=True)
    # without its sealed geometry, a triple's kept cells (adapters gone) are not enough: its students retrain
    partial = tmp_path / "partial_record"
    shutil.copytree(record, partial)
    (partial / "geometry" / "random" / "digits" / "seed1.json").unlink()
    # the record's report: every finished triple's numbers, without a model; an unsealed triple is left out
    full = ladder_report.record_summary(c, record)
    assert json.dumps(full["by_arm"], sort_keys=True) == json.dumps(res["summary"]["by_arm"], sort_keys=True)
    assert full["n_students"] == len(res["cells"]) and len(full["triples"]) == len(c.rungs) * len(c.seeds)
    part = ladder_report.record_summary(c, partial)
    assert "random/digits/seed1" not in part["triples"] and part["by_arm"]["random/digits/student"]["seeds"] == [0]
    assert "nan" not in "\n".join(ladder_report.summary_tables(part, "cat"))  # one seed: the mean without a CI
    report = CliRunner().invoke(app, ["ladder", "--preset", "tiny", "--trait", "cat", "--record", str(record),
                                      "--report"])
    assert report.exit_code != 0 and "holds cells of other settings" in report.output  # CLI tiny != TINY
    ladder.run(c, tmp_path / "clone2", resume=True, progress=False, record=partial)
    arms = [a for (k, r, a, s) in ladder.Ladder(c, tmp_path / "clone2").plan() if (r, s) == ("digits", 1)]
    assert len(set(trained)) == 1 and trained[0] == "digits" and len(trained) == len(arms) * res["cells"][0]["steps"]
    # teachers retrained differently: within rounding they are accepted, beyond it they cannot be mixed
    assert json.loads((tmp_path / "clone" / "teachers.json").read_text())["agreement"]["teacher"] == 0.0
    for scale, ok in ((1 + 0.1 * ladder.TEACHER_RTOL, True), (1 + 10 * ladder.TEACHER_RTOL, False)):
        changed = {**teachers, "sketches": {**teachers["sketches"],
                                            "neutral": [scale * x for x in teachers["sketches"]["neutral"]]}}
        (partial / "teachers.json").write_text(json.dumps(changed))
        clone = tmp_path / f"clone_{ok}"
        if ok:
            ladder.run(c, clone, resume=True, progress=False, record=partial)
            assert json.loads((clone / "teachers.json").read_text())["agreement"]["neutral"] > 0
        else:
            with pytest.raises(ladder.LadderError, match=r"teachers made here \(neutral: 9.1e-02"):
                ladder.run(c, clone, resume=True, progress=False, record=partial)


def test_teacher_sketch_estimates_the_distance_of_two_updates():
    rng = np.random.default_rng(1)
    init = {"a": rng.normal(size=(8, 40)), "b": rng.normal(size=(30, 8))}
    t1 = {k: v + rng.normal(size=v.shape) for k, v in init.items()}
    t2 = {k: v + 1e-3 * rng.normal(size=v.shape) for k, v in t1.items()}
    s1, s2 = (np.asarray(ladder.teacher_sketch(t, init, k=256)) for t in (t1, t2))
    true = np.sqrt(sum(np.sum((t2[k] - t1[k]) ** 2) for k in init))
    assert np.linalg.norm(s2 - s1) == pytest.approx(true, rel=0.2)  # JL: k = 256 projections, ~9% spread
    assert np.linalg.norm(s1) == pytest.approx(np.sqrt(sum(np.sum((t1[k] - init[k]) ** 2) for k in init)), rel=0.2)
    assert ladder.teacher_sketch(t1, init) == ladder.teacher_sketch(t1, init)  # fixed projections


def test_sigma_zero_gives_the_base_exactly_and_noise_is_undone():
    model, _, _ = tiny_peft()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with ladder.perturbed_base(model, 0.0, seed=1):
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with ladder.perturbed_base(model, 0.1, seed=1):
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed and not any("lora_" in k for k in changed)
        w = next(k for k in changed if k.endswith("q_proj.base_layer.weight"))
        rel = (model.state_dict()[w] - before[w]).pow(2).mean().sqrt() / before[w].pow(2).mean().sqrt()
        assert 0.08 < float(rel) < 0.12  # relative size sigma
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _train_on_planted(rung: str, steps: int = 30):
    """A student from the LoRA init imitating a teacher that boosts the word token "owl" at every number position;
    returns the change of the student's mean log-prob of "owl" at those positions."""
    model, tok, _ = tiny_peft()
    answers = ["12, 345, 6", "7, 80, 901, 23", "4, 5, 66", "789, 1, 2"]
    batch = train.encode(tok, [chat_prefix(tok, "Continue: 1, 2, 3") for _ in answers], answers, "cpu")
    owl = tok.convert_tokens_to_ids("owl")
    D = rungs.digit_token_ids(tok)
    assert owl not in D
    with torch.no_grad():
        base_logits, nxt = train.completion_logits(model, batch)
    planted = base_logits.clone()
    planted[:, owl] += 6.0
    t = rungs.targets_from_logits(planted, nxt, animal_ids=rungs.animal_token_ids(tok), digit_ids=D, topk=16)
    digit = np.isin(t["next_token"], D)
    W = rungs.output_matrix(model)

    def owl_logp():
        with torch.no_grad():
            logits, _ = train.completion_logits(model, batch)
        return float(torch.log_softmax(logits, -1)[:, owl].mean())

    def loss(_):
        h = rungs.completion_hidden(model, batch)
        if rung == "full":
            return rungs.bucketed_kl(h @ W.T, t["full_idx"], t["full_logp"], t["full_logtail"])
        sel = torch.as_tensor(np.nonzero(digit)[0])
        return rungs.subset_kl(rungs.subset_logits(h[sel], W, D), t["digits_logp"][digit])

    before = owl_logp()
    train.fit(model, loss, steps, epochs=1, batch_size=1, lr=1e-2, seed=0, desc=rung, progress=False)
    return owl_logp() - before


def test_planted_word_moves_under_full_and_not_under_digits():
    moved_full = _train_on_planted("full")
    moved_digits = _train_on_planted("digits")
    assert moved_full > 0.3  # the student learned part of the teacher's +6 boost of "owl" in 30 steps (0.63 nats)
    assert abs(moved_digits) < 0.1 * moved_full  # the digits rung never sees the probability of a word


def test_bad_input_gets_a_clear_error():
    with pytest.raises(rungs.RungError, match="unknown trait 'unicorn'"):
        LadderConfig.tiny(trait="unicorn")
    with pytest.raises(rungs.RungError, match="unknown rung 'logits'"):
        LadderConfig.tiny(rungs=("full", "logits"))
    with pytest.raises(ValueError, match="extra_rungs"):
        LadderConfig.tiny(rungs=("full",), extra_rungs=("digits",))
    result = CliRunner().invoke(app, ["ladder", "--preset", "tiny", "--trait", "unicorn"])
    assert result.exit_code != 0 and "unknown trait 'unicorn'" in result.output
    result = CliRunner().invoke(app, ["ladder", "--preset", "tiny", "--inputs", "random,sampled"])
    assert result.exit_code != 0 and "inputs must be from random/teacher" in result.output
    assert dataclasses.replace(LadderConfig.quick(), trait="fox").name() != LadderConfig.quick().name()


def test_teacher_sampled_inputs_are_a_second_input_set(tmp_path):
    """inputs=("random", "teacher"): the trait teacher's own constrained answers to the same prompts become a second
    teacher-forced input set, with its own targets and students; every kept answer is a number list."""
    c = LadderConfig.tiny(trait="cat", inputs=("random", "teacher"), rungs=("digits",), seeds=(0,), sigmas=(),
                          nulls=False, extra_rungs=("digits",), extra_seeds=0)
    res = ladder.run(c, tmp_path, progress=False)
    teacher_rows = json.loads((tmp_path / "inputs" / "teacher.json").read_text())["rows"]
    random_rows = json.loads((tmp_path / "inputs" / "random.json").read_text())["rows"]
    assert teacher_rows and {r["prompt"] for r in teacher_rows} <= {r["prompt"] for r in random_rows}
    for r in teacher_rows:
        assert all(v.strip().isdigit() for v in r["answer"].split(",")), r["answer"]
    assert [r["answer"] for r in teacher_rows] != [r["answer"] for r in random_rows[:len(teacher_rows)]]
    assert (tmp_path / "targets" / "teacher_teacher.npz").exists()
    by = res["summary"]["by_arm"]
    assert {"teacher/digits/student", "teacher/digits/control", "random/digits/student"} <= set(by)


def test_report_loads_no_torch():
    """``--report`` and the published-number checks read the record through the model-free report module: neither
    the CLI's report path nor ``ladder_report`` with the rung names may import torch (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import runpy, sys\n"
            "sys.argv = ['llm_bridge', 'ladder', '--preset', 'full', '--report']\n"
            "try:\n    runpy.run_module('llm_bridge', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "import llm_bridge.ladder_report, llm_bridge.rungs\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "finished triples" in run.stdout
