"""The trait-specific study (llm_bridge.study) on the tiny random Llama: its geometry equals numpy by hand on the saved
adapters, the shuffle null is centred at zero without signal and a planted signal is recovered, the config refuses
what it cannot run, and a resumed study recomputes nothing."""

import json

import numpy as np
import pytest

import theory
from llm_bridge import lora, study
from llm_bridge.config import LLMConfig
from llm_bridge.diagnostic import gram_by_module, trait_specific_groups
from llm_bridge.pipeline import Pipeline
from tests.llm_bridge.helpers import dw64, flat64, modules_of, perturb, tiny_peft
from tests.theory.helpers import trait_specific_by_hand
from theory import tolerances

TOL = tolerances(np.float32)  # adapters are float32 tensors
CONFIG = study.StudyConfig.tiny()
ROLES = ("student", "control", "teacher", "neutral")


by_hand = trait_specific_by_hand


def assert_quantities(got: dict, ref: dict, what: str):
    for q, v in ref.items():
        np.testing.assert_allclose(got[q], v, rtol=TOL.rtol, atol=TOL.atol, err_msg=f"{what}: {q}")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_study")
    return out, study.run(CONFIG, out, progress=False)


def load_states(d, names):
    return {r: lora.state_from_arrays(lora.read_adapter(d / n)[1], "cpu") for r, n in names.items()}


def test_cells_geometry_equals_numpy_on_the_saved_adapters(tiny_study):
    """Overall, one layer and one module type, in LoRA space and in materialized dW space, for the real pair and the
    shuffled pair: every quantity equals a float64 numpy computation from the adapter files."""
    out, _ = tiny_study
    seed, (k, n) = CONFIG.llm.seeds[1], CONFIG.cells()[-1]
    d = out / f"seed{seed}"
    geo = json.loads((d / f"study_geometry_k{k}_n{n}.json").read_text())
    names = geo["models"]
    st = load_states(d, {**names, "init": "init"})
    s = CONFIG.llm.lora_alpha / CONFIG.llm.lora_r
    for label, pair, got in (("real", ("student", "control"), geo["real"]),
                             ("null", ("shuffle0a", "shuffle0b"), geo["null"][0])):
        roles = dict(zip(ROLES, pair + ("teacher", "neutral")))
        lo = [flat64(st[roles[r]], st["init"]) for r in ROLES]
        assert_quantities(got["lora"]["overall"], by_hand(*lo), f"{label} lora")
        dws = {r: dw64(st[roles[r]], s) for r in ROLES}
        mods = sorted(dws["teacher"])
        assert_quantities(got["dW"]["overall"], by_hand(*(np.concatenate([dws[r][m].ravel() for m in mods])
                                                          for r in ROLES)), f"{label} dW")
        layer = [m for m in mods if ".layers.1." in m]
        assert_quantities(got["dW"]["layer"]["1"], by_hand(*(np.concatenate([dws[r][m].ravel() for m in layer])
                                                             for r in ROLES)), f"{label} dW layer 1")
        qp = [m for m in mods if m.endswith("q_proj")]
        assert_quantities(got["dW"]["module"]["q_proj"], by_hand(*(np.concatenate([dws[r][m].ravel() for m in qp])
                                                                   for r in ROLES)), f"{label} dW q_proj")
    # the control is shared across strengths, the shuffled halves have the pair's sizes
    for name in (names["student"], names["control"], names["shuffle0a"], names["shuffle0b"]):
        assert json.loads((d / name / "subliminal.json").read_text())["examples"] == n


def test_study_json_structure_and_trait(tiny_study):
    out, res = tiny_study
    assert json.loads((out / "study.json").read_text())["run"] == CONFIG.name()
    assert [(c["k"], c["n"]) for c in res["cells"]] == CONFIG.cells() == [(0, 6), (4, 6), (4, 3)]
    assert res["cells"][1]["sweep"] == ["strength", "size"] and res["cells"][2]["sweep"] == ["size"]
    n_seeds = len(CONFIG.llm.seeds)
    for cell in res["cells"]:
        for space in ("dW", "lora"):
            for q in theory.TRAIT_SPECIFIC_QUANTITIES:
                v = cell[space][q]
                assert v["real"]["n"] == n_seeds and v["null"]["n"] == n_seeds * CONFIG.shuffles
                assert np.isfinite(v["real"]["values"]).all()
            assert list(cell[space]["layer"]) == ["0", "1"]
        for role in ("teacher", "neutral", "student", "control", "shuffle0a", "shuffle0b"):
            # the cell's numbers are its seeds' trait files, read the long way: P(owl) column, argmax share
            raw = [json.loads((out / f"seed{s}" / f"study_trait_k{cell['k']}_n{cell['n']}.json").read_text())
                   ["models"][role] for s in CONFIG.llm.seeds]
            col = [m["animals"].index(CONFIG.llm.trait) for m in raw]
            p = [float(np.mean(np.asarray(m["p_QxA"])[:, j])) for m, j in zip(raw, col)]
            top = [float(np.mean(np.argmax(m["p_QxA"], 1) == j)) for m, j in zip(raw, col)]
            np.testing.assert_allclose(cell["trait"][role]["p_target"]["values"], p, rtol=1e-12)
            np.testing.assert_allclose(cell["trait"][role]["top_share"]["values"], top, rtol=1e-12)
            assert all(0 < v < 1 for v in p)  # a real probability of a scored animal: never exactly 0 or 1
    assert set(res["base_trait"]) == {"base", "base+system_prompt"}


def test_neutral_teacher_trains_on_the_bases_own_answers_to_the_same_prompts(tiny_study):
    out, _ = tiny_study
    d = out / f"seed{CONFIG.llm.seeds[0]}"
    trait, neutral = (json.loads((d / f).read_text()) for f in ("distill_data.json", "neutral_data.json"))
    assert trait["prompts"] == neutral["prompts"] and trait["answers"] != neutral["answers"]
    k = max(CONFIG.strengths)
    tq, nq = (json.loads((d / f"{t}_qa_k{k}.json").read_text()) for t in ("distill", "neutral"))
    assert tq["prompts"] == nq["prompts"] and len(tq["prompts"]) == k
    assert all(a.lower().startswith(CONFIG.llm.trait) for a in tq["answers"])
    for name, ex in ((f"teacher_k{k}", CONFIG.llm.teacher_prompts + k), (f"neutral_k{k}", CONFIG.llm.teacher_prompts
                                                                         + k)):
        meta = json.loads((d / name / "subliminal.json").read_text())
        assert meta["examples"] == ex and meta["recipe"] == "sft" and meta["trait_examples"] == k


def test_resume_recomputes_nothing(tiny_study, tmp_path):
    out, res = tiny_study
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "study.json"}
    again = study.run(CONFIG, out, resume=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads(json.dumps(again["cells"])) == json.loads(json.dumps(res["cells"]))


def test_shuffle_split_partitions_the_pool():
    a, b = list(range(10)), list(range(100, 115))
    x, y = study.shuffle_split(a, b, seed=3)
    assert len(x) == 10 and len(y) == 15 and sorted(x + y) == a + b
    assert study.shuffle_split(a, b, seed=3) == (x, y) and study.shuffle_split(a, b, seed=4) != (x, y)
    assert set(x) & set(b)  # it does mix the two sources


def synthetic(rng, n, dim, signal):
    """Per-example update vectors; the treated source carries ``signal``, both carry the same noise."""
    return [rng.standard_normal(dim) + signal for _ in range(n)], [rng.standard_normal(dim) for _ in range(n)]


@pytest.mark.usefixtures("x64")
def test_shuffle_null_is_centred_at_zero_without_signal_and_a_planted_signal_stands_out():
    """A linear learner (update = mean of its examples' vectors). No signal: the shuffled "student - control" has
    proj on dT - dN centred at 0. Planted a (dT - dN) in every treated example: the real split recovers a, while the
    shuffle null stays centred at 0 and far below it."""
    rng = np.random.default_rng(0)
    dim, n, draws, a = 64, 40, 400, 0.5
    T, N = rng.standard_normal(dim), rng.standard_normal(dim)
    spec = T - N

    def proj(xs, ys):
        return float(theory.trait_specific(np.mean(xs, 0), np.mean(ys, 0), T, N)["proj_diff_specific"])

    for signal, expect in ((0.0, 0.0), (a, a)):
        treated, control = synthetic(rng, n, dim, signal * spec)
        null = np.array([proj(*study.shuffle_split(treated, control, seed=j)) for j in range(draws)])
        se = null.std() / np.sqrt(draws)
        assert null.std() > 0 and abs(null.mean()) < 4 * se, (signal, null.mean(), se)
        real = proj(treated, control)
        noise = np.sqrt(2 / n) / np.linalg.norm(spec)  # sd of the projection of the mean-noise difference
        assert abs(real - expect) < 4 * noise, (signal, real)
        if signal:
            assert real > np.quantile(null, 0.99)


def test_planted_signal_in_adapters_is_recovered_in_both_spaces(tmp_path):
    """Adapters with A = A_0 (so dW = s (B - B_0) A_0 is linear in B) and student B = control B + a (T B - N B):
    gram_by_module + trait_specific_groups give proj(dS - dC, dT - dN) = a overall and in every layer and module
    type."""
    model, _, cfg = tiny_peft()
    init = lora.init_state(model, seed=5)
    only_b = {k: v for k, v in init.items() if ".lora_B." in k}

    def with_b(delta):
        return {k: init[k] + delta.get(k, 0) for k in init}

    T, N, C = ({k: v - only_b[k] for k, v in perturb(only_b, seed=s).items()} for s in (1, 2, 3))
    a = 0.37
    S = {k: C[k] + a * (T[k] - N[k]) for k in C}
    paths = {}
    for name, delta in (("init", {}), ("teacher", T), ("neutral", N), ("student", S), ("control", C)):
        lora.set_state(model, with_b(delta))
        paths[name] = lora.save_adapter(model, tmp_path / name, meta={"role": name})
    res = trait_specific_groups(gram_by_module(paths), {r: r for r in ROLES})
    for space in ("lora", "dW"):
        groups = [res[space]["overall"], *res[space]["layer"].values(), *res[space]["module"].values()]
        for g in groups:
            np.testing.assert_allclose(g["proj_diff_specific"], a, rtol=TOL.rtol)
            np.testing.assert_allclose(g["cos_diff_specific"], 1.0, rtol=TOL.rtol)
    assert len(res["dW"]["module"]) == len(cfg.lora_targets)
    assert len(modules_of(init)) == sum(1 for _ in res["dW"]["layer"]) * len(cfg.lora_targets)


def test_config_refuses_what_the_study_cannot_run():
    tiny = CONFIG.llm
    with pytest.raises(ValueError, match="teacher_recipe='sft'"):
        study.StudyConfig.tiny(llm=LLMConfig.tiny())
    with pytest.raises(ValueError, match="number_teacher='lora'"):
        study.StudyConfig.tiny(llm=LLMConfig.tiny(teacher_recipe="sft", number_teacher="system_prompt"))
    with pytest.raises(ValueError, match="size_strength"):
        study.StudyConfig.tiny(size_strength=7)
    with pytest.raises(ValueError, match="raise it"):
        study.StudyConfig.tiny(sizes=(tiny.number_prompts + 1,))
    with pytest.raises(ValueError, match="shuffles"):
        study.StudyConfig.tiny(shuffles=0)
    assert study.StudyConfig.tiny().preset_name == "tiny" and study.StudyConfig.quick().preset_name == "quick"
    assert study.StudyConfig.paper().sizes == (1000, 3000, 10_000)


def test_neutral_teacher_needs_the_sft_recipe(tmp_path):
    s = Pipeline(LLMConfig.tiny(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="teacher_recipe='sft'"):
        s.teacher(0, neutral=True)
    with pytest.raises(ValueError, match="teacher_recipe='sft'"):
        s.teacher(0, 4)


def test_too_few_kept_answers_is_a_clear_error(tmp_path):
    st = study.Study(CONFIG, tmp_path, progress=False)
    with pytest.raises(RuntimeError, match="raise llm.number_prompts"):
        st.kept(0, "base", CONFIG.llm.number_prompts + 1)


def test_cli_runs_the_study_and_draws_the_figure_from_its_json(tmp_path):
    from typer.testing import CliRunner

    from figures import llm_study_fig
    from llm_bridge.__main__ import app

    out, figs = tmp_path / "run", tmp_path / "figs"
    r = CliRunner().invoke(app, ["study", "--preset", "tiny", "--out", str(out), "--figures-dir", str(figs),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "proj(dS-dC, dT-dN)" in r.output
    jp = figs / f"{CONFIG.name()}.json"
    assert jp.exists() and jp.with_suffix(".png").stat().st_size > 10_000
    data = json.loads(jp.read_text())
    assert data["cells"] == json.loads((out / "study.json").read_text())["cells"]
    assert llm_study_fig.plot(data, tmp_path / "again.png").stat().st_size > 10_000
    bad = CliRunner().invoke(app, ["study", "--preset", "huge", "--out", str(out)])
    assert bad.exit_code != 0 and "choose one of" in bad.output
