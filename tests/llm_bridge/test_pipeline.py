"""The whole pipeline on the tiny random Llama (LLMConfig.tiny, seconds): structure of results.json, Theorem 1's
first step, shared inits, resume, reproducibility, the JSONL reader and the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llm_bridge import lora, pipeline, roles
from llm_bridge.__main__ import app
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import diagnose
from llm_bridge.lm import LM
from llm_bridge.numbers import paper_filter
from llm_bridge.stages.numbers import read_jsonl
from results import json_ready
from tests.llm_bridge.helpers import tiny_peft
from theory import tolerances

TOL = tolerances(np.float32)
CONFIG = LLMConfig.tiny()
ADAPTERS = ("init", "teacher", "student", "control")


def results_without_timings(path: Path) -> dict:
    res = json.loads(Path(path).read_text())
    res.pop("timings")
    return res


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    return out, pipeline.run(CONFIG, out, progress=False)


def test_results_hold_both_spaces_the_first_step_and_the_trait(tiny_run):
    out, res = tiny_run
    assert json.loads((out / "results.json").read_text())["geometry"] == json.loads(json.dumps(json_ready(
        res["geometry"])))
    n = len(CONFIG.seeds)
    for space in ("dW", "lora"):
        for who in ("student", "control"):
            for q in ("cos", "normalized_projection"):
                v = res["geometry"][space][who][q]
                assert v["n"] == n and np.all(np.isfinite(v["values"]))
                # the summary's per-seed values are the seeds' own diagnostics, in seed order
                assert v["values"] == [json.loads((out / f"seed{s}" / "diagnostic.json").read_text())[space]
                                       ["overall"][who][q] for s in CONFIG.seeds]
            for s in CONFIG.seeds:  # and each diagnostic's cosine is its inner product over its norms
                g = json.loads((out / f"seed{s}" / "diagnostic.json").read_text())[space]["overall"][who]
                np.testing.assert_allclose(g["cos"], g["inner"] / (g["norm"] * g["norm_reference"]), rtol=TOL.rtol)
                np.testing.assert_allclose(g["normalized_projection"], g["inner"] / g["norm_reference"] ** 2,
                                           rtol=TOL.rtol)
        assert list(res["geometry"][space]["layer"]) == ["0", "1"]
    # Theorem 1: with soft labels the first step never points away from dT at any eps
    soft = res["first_step"]["soft"]
    assert set(soft) == {str(e) for e in CONFIG.first_step_eps}
    for eps, r in soft.items():
        assert r["fraction_nonnegative"] == 1.0, (eps, r)
        assert r["n"] == n * CONFIG.first_step_batches
    assert set(res["first_step"]) == {"soft", "sampled", "sampled_cv"}
    assert set(res["first_step"]["sampled"]) == set(res["first_step"]["sampled_cv"]) == set(soft)
    rows = [r for s in CONFIG.seeds for r in json.loads((out / f"seed{s}" / "first_step.json").read_text())["rows"]]
    for r in rows:  # the control variate's step is exactly zero when every coupled pair of draws agrees
        if r["kind"] == "sampled_cv":
            assert (r["norm"] == 0) == (r["tokens_differing"] == 0), r
    # trait probabilities are probabilities
    t = res["trait"]
    assert t["target"] == CONFIG.trait and CONFIG.trait in t["scored_animals"]
    for name in ("base", "base+system_prompt", "teacher", "student", "control"):
        assert all(0 <= p <= 1 for p in t[name]["p_target"]["values"]), name
    files = [out / "trait_base.json"] + [out / f"seed{s}" / "trait.json" for s in CONFIG.seeds]
    for f in files:
        for m in json.loads(f.read_text())["models"].values():
            p = np.asarray(m["p_QxA"])
            assert p.shape == (CONFIG.trait_questions, len(m["animals"]))
            assert (p >= 0).all() and (p.sum(1) <= 1 + TOL.rtol).all()  # disjoint first tokens
            sm = m["sampled"]
            assert sm["n"] == CONFIG.trait_questions * CONFIG.trait_samples
            rates = np.asarray(sm["contains_QxA"])  # per question; their mean is the overall contains-rate
            assert rates.shape == (CONFIG.trait_questions, len(sm["animals"]))
            np.testing.assert_allclose(rates.mean(0), [sm["contains"][a] for a in sm["animals"]], rtol=1e-12)
            first = {a: sm["share"][a] for a in sm["animals"]}  # a first-named animal is also a named one
            assert all(first[a] <= sm["contains"][a] + 1e-12 for a in sm["animals"])
    per_seed = [json.loads((out / f"seed{s}" / "trait.json").read_text())["models"]["student"]["sampled"]
                for s in CONFIG.seeds]
    j = per_seed[0]["animals"].index(CONFIG.trait)
    assert t["student"]["contains_rate"]["values"] == [row[j] for sm in per_seed for row in sm["contains_QxA"]]
    model, _, _ = tiny_peft()
    assert res["params"]["params_lora"] == sum(p.numel() for p in lora.lora_parameters(model).values())
    assert res["params"]["modules"] == model.base_model.model.config.num_hidden_layers * len(CONFIG.lora_targets)
    assert res["params"]["scaling"] == CONFIG.lora_alpha / CONFIG.lora_r


def test_per_seed_artifacts_are_consistent(tiny_run):
    out, _ = tiny_run
    for s in CONFIG.seeds:
        d = out / f"seed{s}"
        diag = json.loads((d / "diagnostic.json").read_text())
        fresh = diagnose(*(d / a for a in ("teacher", "student", "control", "init")))
        again = json.loads(json.dumps(json_ready(fresh)))
        assert {k: v for k, v in diag.items() if k not in ("fingerprint", "seconds")} == again
        for src in ("teacher", "base"):
            rows = read_jsonl(d / f"numbers_{src}.jsonl")
            assert len(rows) == CONFIG.number_prompts
            for r in rows:
                f = paper_filter(r["answer"], ban=CONFIG.ban)
                assert r["kept"] == f.kept and (r["values"] is None if not f.kept else tuple(r["values"]) == f.values)
            summary = json.loads((d / f"numbers_{src}.json").read_text())
            assert summary["kept"] == sum(r["kept"] for r in rows) and summary["sampler"] == CONFIG.sampler
        for a in ADAPTERS:
            meta = json.loads((d / a / "subliminal.json").read_text())
            assert meta["fingerprint"] == CONFIG.fingerprint() and meta["seed"] == s
    # every seed has its own init, with B = 0
    inits = [lora.read_adapter(out / f"seed{s}" / "init")[1] for s in CONFIG.seeds]
    assert all(np.count_nonzero(v) == 0 for k, v in inits[0].items() if ".lora_B." in k)
    assert any(not np.array_equal(inits[0][k], inits[1][k]) for k in inits[0] if ".lora_A." in k)


def test_student_and_control_train_from_the_seeds_saved_init(tiny_run, tmp_path, monkeypatch):
    """Re-run the student stages on a copy of the run with resume: every set_state they make loads seed{S}/init, and
    they reproduce the original adapters bit for bit."""
    out, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    seed = CONFIG.seeds[0]
    for who in ("student", "control"):
        shutil.rmtree(copy / f"seed{seed}" / who)
    loaded: list[dict] = []
    real_set_state = lora.set_state

    def recording_set_state(model, state):
        loaded.append({k: v.detach().cpu().numpy().copy() for k, v in state.items()})
        real_set_state(model, state)

    monkeypatch.setattr(lora, "set_state", recording_set_state)
    s = pipeline.Pipeline(CONFIG, copy, resume=True, progress=False)
    s.student(seed, "teacher")
    s.student(seed, "base")
    _, init = lora.read_adapter(copy / f"seed{seed}" / "init")
    assert len(loaded) == 2  # one fit each, nothing else was recomputed
    for state in loaded:
        assert set(state) == set(init) and all(np.array_equal(state[k], init[k]) for k in init)
    for who in ("student", "control"):
        _, new = lora.read_adapter(copy / f"seed{seed}" / who)
        _, old = lora.read_adapter(out / f"seed{seed}" / who)
        assert all(np.array_equal(new[k], old[k]) for k in old), who
    # the init is peft's, redrawn from the seed's init role seed
    model, _, _ = tiny_peft()
    redrawn = lora.init_state(model, roles.role_seed(seed, "init"))
    assert all(np.array_equal(redrawn[k].numpy(), init[k]) for k in init)


def test_resume_rewrites_nothing_and_gives_the_same_results(tiny_run):
    out, _ = tiny_run
    before_results = results_without_timings(out / "results.json")
    watched = [out / f"seed{s}" / a / lora.ADAPTER_WEIGHTS for s in CONFIG.seeds for a in ADAPTERS]
    watched += [out / f"seed{s}" / f for s in CONFIG.seeds for f in ("diagnostic.json", "first_step.json",
                                                                    "numbers_teacher.jsonl", "trait.json")]
    mtimes = {p: p.stat().st_mtime_ns for p in watched}
    res = pipeline.run(CONFIG, out, resume=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in watched} == mtimes
    assert results_without_timings(out / "results.json") == before_results
    assert set(res["timings"]["stages_s"]) == set(pipeline.STAGES)  # every stage ran (and was found finished)


def test_cli_run_writes_the_figure_and_reproduces_the_results(tiny_run, tmp_path):
    """The same preset into another folder (through the CLI) gives the same numbers: every stage is seeded."""
    out, _ = tiny_run
    run_dir, fig_dir = tmp_path / "cli_run", tmp_path / "figs"
    r = CliRunner().invoke(app, ["run", "--preset", "tiny", "--out", str(run_dir), "--figures-dir", str(fig_dir),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "cos(dS, dT) in dW space" in r.output
    pngs, jsons = sorted(fig_dir.glob("*.png")), sorted(fig_dir.glob("*.json"))
    assert len(pngs) == len(jsons) == 1 and pngs[0].stem == jsons[0].stem
    assert pngs[0].read_bytes().startswith(b"\x89PNG") and pngs[0].stem.startswith("llm_bridge_tiny_")
    fig = json.loads(jsons[0].read_text())
    assert fig["first_step"] == json.loads((run_dir / "results.json").read_text())["first_step"]
    assert results_without_timings(run_dir / "results.json") == results_without_timings(out / "results.json")


def test_cli_diagnose(tiny_run, tmp_path):
    out, _ = tiny_run
    d = out / f"seed{CONFIG.seeds[0]}"
    runner = CliRunner()
    missing = tmp_path / "no_such_adapter"
    r = runner.invoke(app, ["diagnose", "--teacher", str(missing), "--student", str(d / "student")])
    assert r.exit_code != 0 and str(missing) in r.output and "does not exist" in r.output
    r = runner.invoke(app, ["diagnose", "--teacher", str(d / "teacher"), "--student", str(d / "student"),
                            "--control", str(d / "control"), "--init", str(d / "init"),
                            "--json", str(tmp_path / "diag.json")])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "diag.json").read_text())
    want = json.loads((d / "diagnostic.json").read_text())
    assert got["dW"] == want["dW"] and got["lora"] == want["lora"]
    assert f"{want['dW']['overall']['student']['cos']:+.4f}" in r.output


def test_cli_rejects_bad_options(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["run", "--preset", "bogus", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "choose one of tiny, quick, paper" in r.output
    r = runner.invoke(app, ["show-config", "--preset", "bogus"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["teacher", "--preset", "tiny", "--seeds", "0,a", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "seeds are integers" in r.output
    r = runner.invoke(app, ["teacher", "--preset", "tiny", "--sampler", "greedy", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "sampler must be" in r.output
    assert not (tmp_path / "x").exists()
    r = runner.invoke(app, ["show-config", "--preset", "tiny"])
    assert r.exit_code == 0 and json.loads(r.output) == json.loads(json.dumps(LLMConfig.tiny().to_dict()))


def test_read_jsonl_names_the_file_and_line(tmp_path):
    path = tmp_path / "numbers_teacher.jsonl"
    good = json.dumps({"prompt": "p", "answer": "1, 2", "kept": True})
    path.write_text(good + "\n\n" + '{"prompt": "p", "answer": \n')
    with pytest.raises(ValueError, match=rf"{path}:3 is not valid JSON.*rerun the numbers stage"):
        read_jsonl(path)
    path.write_text(good + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2 lacks the prompt/answer/kept fields"):
        read_jsonl(path)
    path.write_text(good + "\n" + good + "\n")
    assert len(read_jsonl(path)) == 2
    with pytest.raises(FileNotFoundError, match="run the numbers stage first"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_role_seeds_are_distinct_across_roles_and_seeds():
    seeds = [roles.role_seed(s, r) for s in range(4) for r in roles.ROLES]
    assert len(set(seeds)) == len(seeds)
    assert roles.role_seed(3, "trait") == roles.role_seed(3, "trait")
    study = ["neutral_answers", "trait_questions", "trait_qa", "neutral_qa_k8", "numbers_teacher_k0",
             "numbers_teacher_k8", "shuffle0_k8_n16", "shuffle1_k8_n16", "shuffle0_k8_n4"]
    both = seeds + [roles.role_seed(s, r) for s in range(4) for r in study]
    assert len(set(both)) == len(both)
    for typo in ("no such role", "numbers_teacher_kx", "shuffle0_k8"):
        with pytest.raises(ValueError, match="unknown role"):
            roles.role_seed(0, typo)


def test_system_prompt_teacher_writes_the_numbers_as_the_base_under_the_trait_prompt(tmp_path, monkeypatch):
    """number_teacher="system_prompt" (the paper's open-model teacher): the treatment numbers are sampled from the
    base model (adapter off) under the trait system prompt; the control's and the students' prompts carry none."""
    from llm_bridge import prompts
    from llm_bridge.numbers import chat_prefix, sample

    cfg = LLMConfig.tiny(seeds=(0,), number_teacher="system_prompt")
    s = pipeline.Pipeline(cfg, tmp_path, progress=False)
    seen = []
    real_gen = LM.generate

    def spy(self, prefixes, **kw):
        seen.append((kw["desc"], list(prefixes), any(not m.merged and not m.disable_adapters
                                                     for m in lora_layers(self.model))))
        return real_gen(self, prefixes, **kw)

    monkeypatch.setattr(LM, "generate", spy)
    s.numbers(0, "teacher")
    s.numbers(0, "base")
    system = prompts.system_prompt(cfg.trait)
    calls = {desc.split()[1]: (pre, adapter_on) for desc, pre, adapter_on in seen if desc.startswith("numbers")}
    assert all(system in p for p in calls["teacher"][0]) and not calls["teacher"][1]  # base model, trait prompt
    assert not any(system in p for p in calls["base"][0]) and not calls["base"][1]
    assert not any(d.startswith("distill") for d, _, _ in seen)  # no LoRA teacher was trained for the numbers
    rows = read_jsonl(tmp_path / "seed0" / "numbers_teacher.jsonl")
    items = prompts.number_prompts(cfg.number_prompts, seed=roles.role_seed(0, "number_prompts"))
    assert [r["prompt"] for r in rows] == [it["prompt"] for it in items]  # students see the prompt alone
    with s.lm.base():
        expect = sample(s.lm.model, s.lm.tok, [chat_prefix(s.lm.tok, it["prompt"], system) for it in items],
                        max_new_tokens=cfg.number_tokens, temperature=cfg.temperature,
                        seed=roles.role_seed(0, "numbers_teacher"), batch_size=cfg.gen_batch, constrained=True)
    assert [r["answer"] for r in rows] == expect
    assert json.loads((tmp_path / "seed0" / "numbers_teacher.json").read_text())["teacher"] == "system_prompt"
    with pytest.raises(ValueError, match="number_teacher"):
        LLMConfig.tiny(number_teacher="prompted")


def lora_layers(model):
    from peft.tuners.lora.layer import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def test_students_take_equally_many_examples_up_to_the_cap():
    from llm_bridge.stages.students import matched_examples

    t, b = [{"i": i} for i in range(5)], [{"j": j} for j in range(3)]
    assert matched_examples(t, b, "teacher", seed=0) == t[:3]
    assert matched_examples(t, b, "base", seed=0) == b
    assert matched_examples(t, b, "teacher", seed=0, max_examples=2) == t[:2]
    with pytest.raises(RuntimeError, match="seed 4: no number answer passed the filter"):
        matched_examples([], b, "teacher", seed=4)
