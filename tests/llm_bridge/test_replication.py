"""The replication study (llm_bridge.replication) on the tiny in-memory Llama: the whole design end to end, teachers
that differ only in the animal, inputs per seed, the record resumed in a fresh folder, full fine-tuning that moves
every weight, the mixtures' end points, the no-trait-words exclusion, and a report that loads no torch."""

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_bridge import lora, replication, replication_report, rungs, train
from llm_bridge.config import ReplicationConfig
from llm_bridge.prompts import ANIMALS
from llm_bridge.roles import role_seed
from results import load_json, save_json
from tests.llm_bridge.helpers import tiny_peft

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("replication")
    c = ReplicationConfig.tiny()
    return replication.run(c, out / "run", progress=False, record=out / "record"), out, c


def test_every_arm_of_the_design_is_measured_with_teacher_level_cis(tiny_run):
    res, _, c = tiny_run
    by = res["summary"]["by_arm"]
    for t in (*c.traits, "neutral"):
        assert by[f"digits/lora/{t}"]["students"] == len(c.teachers) * len(c.digit_seeds)
        assert by[f"no-trait-words/lora/{t}"]["students"] == len(c.teachers)
    for v in ("fullft", "newinit", "perturbed0.1"):
        for t in ("owl", "neutral"):
            assert by[f"digits/{v}/{t}"]["teachers"] == list(c.teachers)
    row = by["digits/lora/cat"]
    for q in ("log_ratio_vs_neutral", "log_ratio_vs_other_traits", "rise_over_median_animal", "proj_vs_neutral_dW",
              "proj_vs_other_dW", "proj_matched_dW", "proj_vs_neutral_lora", "proj_matched_lora"):
        lo, hi = row[q]["ci95"]
        assert row[q]["n_groups"] == 2 and lo <= row[q]["mean"] <= hi, q  # two teachers: a teacher-level CI
    # the arms off the teachers' init have no LoRA-space geometry, only dW space
    assert "proj_vs_neutral_lora" not in by["digits/newinit/owl"] and "proj_vs_neutral_lora" not in by[
        "digits/fullft/owl"]
    assert "proj_vs_neutral_dW" in by["digits/fullft/owl"] and "log_ratio_vs_own_base" in by["digits/perturbed0.1/owl"]
    assert by["digits/lora/owl"]["contains_answers"] == len(c.teachers) * len(c.digit_seeds) * c.trait_questions
    dose = res["summary"]["dose"]
    assert sorted((p["replicate"], p["alpha"]) for p in dose["points"]) == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
    assert "spearman_r" in dose and set(dose["by_alpha"]) == {"0.5", "1"}
    assert "proj_matched_dW" not in by["digits/fullft/owl"]  # no other trait is fully fine-tuned
    assert by["digits/lora/owl"]["contains_rate_minus_control"]["n_groups"] == 2
    assert all(x["loss_last_quarter"] > 0 for x in res["cells"])


def test_the_report_reads_the_record_alone_and_loads_no_torch(tiny_run):
    res, out, c = tiny_run
    s = replication_report.record_summary(c, out / "record")
    assert s["n_students"] == len(res["cells"]) and s["by_arm"] == res["summary"]["by_arm"]
    argv = ["llm_bridge", "replicate", "--preset", "tiny", "--report", "--record", str(out / "record")]
    code = ("import runpy, sys\n"
            f"sys.argv = {argv!r}\n"
            "runpy.run_module('llm_bridge', run_name='__main__')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{len(res['cells'])} students in" in run.stdout and "| digits/lora/owl |" in run.stdout


def test_a_fresh_clone_retrains_the_teachers_and_resumes_from_the_record_without_training_students(tiny_run,
                                                                                                   tmp_path):
    """A fresh clone has the record only: its teachers are trained again (a new teachers' folder), checked against
    the record's sketches, and every sealed student comes from the record (no adapter is written)."""
    res, out, c = tiny_run
    again = replication.run(c, tmp_path / "clone", progress=False, record=out / "record", resume=True,
                            teachers_dir=tmp_path / "teachers")
    assert again["summary"]["by_arm"] == res["summary"]["by_arm"]
    agreement = load_json(tmp_path / "clone" / "teachers.json")["agreement"]
    assert len(agreement) == len(c.teachers) * (len(c.traits) + 1)
    assert max(agreement.values()) <= replication.TEACHER_RTOL  # retrained teachers match the record's
    assert (tmp_path / "teachers" / "r0" / "owl" / "subliminal.json").exists()
    assert not list((tmp_path / "clone").rglob("adapter_model.safetensors"))  # no student was trained again


def test_teachers_that_differ_from_the_records_stop_the_run(tiny_run, tmp_path):
    _, out, c = tiny_run
    record = tmp_path / "record"
    shutil.copytree(out / "record", record)
    sk = load_json(record / "teachers.json")
    sk["sketches"]["r0/owl"] = [2 * x + 1 for x in sk["sketches"]["r0/owl"]]
    save_json(record / "teachers.json", sk)
    with pytest.raises(replication_report.ReplicationError, match="r0/owl.*differ from those the students"):
        replication.run(c, tmp_path / "clone", progress=False, record=record, resume=True,
                        teachers_dir=out / "run" / "teachers")


def test_a_record_of_other_settings_is_refused(tiny_run, tmp_path):
    _, out, c = tiny_run
    record = tmp_path / "record"
    shutil.copytree(out / "record", record)
    g = next((record / "geometry").rglob("*.json"))
    save_json(g, {**load_json(g), "fingerprint": "0123456789"})
    with pytest.raises(replication_report.ReplicationError, match="other settings.*0123456789"):
        replication_report.record_summary(c, record)


def test_the_init_arms_start_where_they_say(tiny_run):
    """newinit: a LoRA A drawn apart from the teachers' (B = 0 as ever); perturbed: the student and its control on
    one and the same perturbed base, which differs from the clean one."""
    res, out, c = tiny_run
    rep = replication.Replication(c, out / "run", resume=True, progress=False)
    for r in c.teachers:
        teacher = rep.lm.read_state(rep.teacher(r, "init"))
        other = lora.init_state(rep.lm.model, role_seed(r, "replication_init_s0"))
        a_keys = [k for k in teacher if "lora_A" in k]
        assert a_keys and all(not torch.allclose(teacher[k], other[k]) for k in a_keys)
        assert all(torch.count_nonzero(other[k]) == 0 for k in other if "lora_B" in k)
    cells = {(x["replicate"], x["teacher"], x["variant"]): x for x in res["cells"] if x["rung"] == "digits"
             and x["seed"] == c.digit_seeds[0]}
    for r in c.teachers:
        owl, ctrl = cells[r, "owl", "perturbed0.1"], cells[r, "neutral", "perturbed0.1"]
        assert owl["base_p_QxA"] == ctrl["base_p_QxA"] and owl["base_text_nll"] == ctrl["base_text_nll"]
        assert not np.allclose(owl["base_p_QxA"], res["teachers"]["base"])


def test_the_dense_and_lora_updates_share_one_dw_space():
    """``dense_updates`` puts a fully fine-tuned delta and an adapter's s B A in the same coordinates: their Gram
    entry equals the explicit <dW_dense, s B A>."""
    rng = np.random.default_rng(0)
    A, B, D = rng.normal(size=(2, 5)), rng.normal(size=(4, 2)), rng.normal(size=(4, 5)).astype(np.float32)
    trees = {"full": ("dense", {"m": D}, 0.5), "adapter": ("lora", {"m": {"A": A, "B": B}}, 0.5)}
    u = replication.Replication.dense_updates(None, {"full": None, "adapter": None}, "m", trees)
    assert u.dtype == np.float64 and u.shape == (2, 20)
    np.testing.assert_allclose(u @ u.T, [[np.sum(D.astype(np.float64) ** 2), np.sum(D * (0.5 * B @ A))],
                                         [np.sum(D * (0.5 * B @ A)), np.sum((0.5 * B @ A) ** 2)]], rtol=1e-12)


def test_each_seed_and_teacher_draws_its_own_inputs_and_teachers(tiny_run):
    _, out, c = tiny_run
    rep = replication.Replication(c, out / "run", resume=True, progress=False)
    draws = {(r, s): [x["answer"] for x in rep.inputs(r, s)] for r in c.teachers for s in c.digit_seeds}
    assert len({tuple(v) for v in draws.values()}) == len(draws)
    inits = [np.concatenate([v.ravel() for v in rep.lm.read_state(rep.teacher(r, "init")).values()]) for r in
             c.teachers]
    assert not np.allclose(inits[0], inits[1])  # each replicate its own LoRA init
    data = {r: load_json(out / "run" / "teachers" / f"r{r}" / "owl_data.json") for r in c.teachers}
    assert data[0]["prompts"] != data[1]["prompts"]  # ... and its own teacher data


def test_teachers_of_a_replicate_differ_only_in_the_animal(tiny_run):
    _, out, c = tiny_run
    rep = replication.Replication(dataclasses.replace(c, teacher_k=32), out / "k32", progress=False)
    owl, cat, neutral = (rep.teacher_data(0, name) for name in ("owl", "cat", "neutral"))
    k = 32
    assert owl["prompts"] == cat["prompts"] == neutral["prompts"]
    assert [a.replace("Owl", "Cat").replace("owl", "cat") for a in owl["answers"][-k:]] == cat["answers"][-k:]
    # the neutral teacher names the 16 animals in turn: each twice among 32 answers, in the same templates
    assert sorted(neutral["animals"][-k:]) == sorted(list(ANIMALS) * 2)
    for a, ans_owl, ans_n in zip(neutral["animals"][-k:], owl["answers"][-k:], neutral["answers"][-k:]):
        assert ans_owl.replace("Owl", a.capitalize()).replace("owl", a) == ans_n


def test_full_fine_tuning_moves_every_weight_and_restores_the_base():
    model, tok, _ = tiny_peft()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    ids = tok(["1, 2, 3", "4, 5, 6"], return_tensors="pt").input_ids
    with replication.full_weights(model) as (params, saved):
        assert set(params) == set(before) == set(saved)

        def loss(idx):
            return model(input_ids=ids[idx], labels=ids[idx]).loss

        train.fit(model, loss, 2, epochs=1, batch_size=2, lr=1e-2, seed=0, desc="fullft", progress=False,
                  params=params.values())
        unchanged = [n for n, p in params.items() if torch.equal(p, before[n])]
        assert unchanged == []  # every weight of the base moved, embeddings and norms included
        lora_moved = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
        assert lora_moved == []  # the adapter is not trained (its B stays 0)
    for n, p in model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, before[n]) and not p.requires_grad, n  # the next student starts from the base
    modules = {replication._module_of(n) for n in before} - {None}
    lora_modules = {n.split(".lora_A")[0].removeprefix("base_model.model.") for n, _ in model.named_parameters()
                    if ".lora_A." in n}
    assert modules == lora_modules  # the dense deltas are keyed like the adapters' modules


def test_a_mixture_at_alpha_zero_and_one_is_the_neutral_and_the_trait_target():
    rng = np.random.default_rng(0)

    def targets(seed):
        logits = np.random.default_rng(seed).normal(size=(7, 12))
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        z = np.zeros((7, 0))
        return rungs.Targets(offsets=np.array([0, 3, 7]), next_token=rng.integers(0, 5, 7), full_idx=z, full_logp=z,
                             full_logtail=np.zeros(7), notrait_idx=z, notrait_logp=z, notrait_logtail=np.zeros(7),
                             digits_logp=logp.astype(np.float32))

    t, n = targets(1), targets(2)
    n.next_token = t.next_token
    np.testing.assert_array_equal(rungs.mix_targets(t, n, 1.0).digits_logp, t.digits_logp)
    np.testing.assert_array_equal(rungs.mix_targets(t, n, 0.0).digits_logp, n.digits_logp)
    half = np.exp(rungs.mix_targets(t, n, 0.5).digits_logp.astype(np.float64))
    np.testing.assert_allclose(half, 0.5 * np.exp(t.digits_logp.astype(np.float64))
                               + 0.5 * np.exp(n.digits_logp.astype(np.float64)), rtol=1e-6)
    with pytest.raises(rungs.RungError, match="in \\[0, 1\\]"):
        rungs.mix_targets(t, n, 1.5)
    n.next_token = n.next_token + 1
    with pytest.raises(rungs.RungError, match="different inputs"):
        rungs.mix_targets(t, n, 0.5)


def test_the_no_trait_words_exclusion_covers_every_piece_of_every_form_of_all_16_animals():
    _, tok, _ = tiny_peft()
    hidden = set(rungs.trait_word_token_ids(tok))
    for a in ANIMALS:
        forms = rungs.word_forms(a)
        assert {a, a.upper(), a.capitalize(), " " + a.upper()} <= set(forms)
        assert rungs.PLURALS.get(a, a + "s").upper() in forms
        for form in forms:
            ids = tok(form, add_special_tokens=False).input_ids
            assert tok.decode(ids) == form
            pieces = [i for i in ids if tok.decode([i]).strip()]
            assert pieces and set(pieces) <= hidden, (form, [tok.decode([i]) for i in pieces])
    assert not hidden & set(rungs.digit_token_ids(tok))  # the numbers themselves stay visible
    assert set(rungs.animal_token_ids(tok)) < hidden  # the ladder's first-token set missed pieces


def test_bad_replication_settings_are_clear_errors():
    with pytest.raises(ValueError, match="at least two distinct"):
        ReplicationConfig.tiny(traits=("owl",))
    with pytest.raises(ValueError, match="probe_trait"):
        ReplicationConfig.tiny(probe_trait="dog")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        ReplicationConfig.tiny(alphas=(1.0,))
    with pytest.raises(ValueError, match="soft ones"):
        ReplicationConfig.tiny(context_rungs=("sampled",))
    with pytest.raises(replication_report.ReplicationError, match="no record"):
        replication_report.record_summary(ReplicationConfig.tiny(), "/nonexistent/record")
