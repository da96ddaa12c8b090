"""The projection diagnostic on saved peft adapters equals the same geometry computed by hand with numpy (LoRA space
and materialized dW = (alpha / r) B A space), and incompatible or broken adapters are refused with clear errors."""

import json
import re
import shutil

import numpy as np
import pytest

import theory
from llm_bridge import diagnostic, lora
from llm_bridge.config import ALL_PROJECTIONS, LLMConfig
from llm_bridge.lora import AdapterError
from tests.llm_bridge.helpers import cos64, dw64, flat64, modules_of, perturb, tiny_peft
from theory import tolerances

TOL = tolerances(np.float32)
QUANTITIES = ("cos", "normalized_projection", "inner", "norm", "norm_reference")


def reference_geometry(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    ip = float(np.dot(a, b))
    return {"cos": cos64(a, b), "normalized_projection": ip / float(np.dot(b, b)), "inner": ip,
            "norm": float(np.linalg.norm(a)), "norm_reference": float(np.linalg.norm(b))}


def assert_geometry(got: dict, a: np.ndarray, b: np.ndarray):
    ref = reference_geometry(a, b)
    for q in QUANTITIES:
        np.testing.assert_allclose(got[q], ref[q], rtol=TOL.rtol, atol=TOL.atol, err_msg=q)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """init (B = 0), teacher = init + dT, student = init + dT / 2 + noise, control = init + noise, saved as peft
    adapters; returns (folders, torch states, config)."""
    root = tmp_path_factory.mktemp("adapters")
    model, _, cfg = tiny_peft()
    init = lora.init_state(model, seed=11)
    teacher = perturb(init, seed=1)
    noise = perturb(init, seed=2)
    states = {"init": init, "teacher": teacher,
              "student": {k: init[k] + 0.5 * (teacher[k] - init[k]) + (noise[k] - init[k]) for k in init},
              "control": perturb(init, seed=3)}
    paths = {}
    for name, st in states.items():
        lora.set_state(model, st)
        paths[name] = lora.save_adapter(model, root / name, meta={"role": name})
    return paths, states, cfg


def test_lora_space_geometry_is_numpys(adapters):
    paths, states, _ = adapters
    res = diagnostic.diagnose(paths["teacher"], paths["student"], paths["control"], paths["init"])
    dT = flat64(states["teacher"], states["init"])
    for who in ("student", "control"):
        assert_geometry(res["lora"]["overall"][who], flat64(states[who], states["init"]), dT)
    # the student shares half of dT: its cos is clearly positive, the control's is not (the check discriminates)
    assert res["lora"]["overall"]["student"]["cos"] > res["lora"]["overall"]["control"]["cos"] + 0.1
    np.testing.assert_allclose(res["lora"]["overall"]["student"]["cos"],
                               float(theory.cosine(flat64(states["student"], states["init"]), dT)),
                               rtol=TOL.rtol, atol=TOL.atol)


def test_dw_space_geometry_is_numpys_on_materialized_products(adapters):
    paths, states, cfg = adapters
    res = diagnostic.diagnose(paths["teacher"], paths["student"], paths["control"], paths["init"])
    s = cfg.lora_alpha / cfg.lora_r
    assert res["scaling"] == s and res["r"] == cfg.lora_r and res["init_max_abs_B"] == 0.0
    dw = {k: dw64(states[k], s) for k in ("teacher", "student", "control")}
    flat = {k: np.concatenate([v[m].ravel() for m in sorted(v)]) for k, v in dw.items()}
    assert res["params_dW"] == flat["teacher"].size
    assert res["params_lora"] == flat64(states["teacher"]).size
    assert res["modules"] == len(dw["teacher"])
    for who in ("student", "control"):
        assert_geometry(res["dW"]["overall"][who], flat[who], flat["teacher"])
    # per layer: the same numbers on the layer's modules only
    for layer, by_who in res["dW"]["layer"].items():
        mods = [m for m in sorted(dw["teacher"]) if re.search(rf"layers\.{layer}\.", m)]
        assert mods
        for who in ("student", "control"):
            a = np.concatenate([dw[who][m].ravel() for m in mods])
            b = np.concatenate([dw["teacher"][m].ravel() for m in mods])
            assert_geometry(by_who[who], a, b)
    # without the init, dW space is unchanged (B_0 = 0) and LoRA space is not computed
    no_init = diagnostic.diagnose(paths["teacher"], paths["student"], paths["control"])
    assert no_init["lora"] is None and "init" in no_init["note"]
    for who in ("student", "control"):
        for q in QUANTITIES:
            np.testing.assert_allclose(no_init["dW"]["overall"][who][q], res["dW"]["overall"][who][q],
                                       rtol=TOL.rtol, atol=TOL.atol)


def test_lowrank_inner_equals_inner_of_materialized_dw(adapters):
    paths, states, cfg = adapters
    trees = {k: lora.module_tree(lora.read_adapter(paths[k])[1]) for k in ("teacher", "student")}
    s = cfg.lora_alpha / cfg.lora_r
    fast = diagnostic.dw_inner_lowrank(trees["student"], s, trees["teacher"], s)
    full = float(theory.inner(diagnostic.dw_tree(trees["student"], s), diagnostic.dw_tree(trees["teacher"], s)))
    np.testing.assert_allclose(fast, full, rtol=TOL.rtol, atol=TOL.atol)
    dw = {k: dw64(states[k], s) for k in ("teacher", "student")}
    np.testing.assert_allclose(fast, sum(np.sum(dw["student"][m] * dw["teacher"][m]) for m in dw["teacher"]),
                               rtol=TOL.rtol)
    # different scalings enter as the product s1 * s2
    np.testing.assert_allclose(diagnostic.dw_inner_lowrank(trees["student"], 3.0, trees["teacher"], 0.5),
                               fast * 1.5 / s**2, rtol=TOL.rtol)


def test_groups_partition_the_modules(adapters):
    paths, _, _ = adapters
    tree = lora.module_tree(lora.read_adapter(paths["teacher"])[1])
    mods = list(tree)
    g = diagnostic.groups(mods)
    n_layers = tiny_peft()[0].base_model.model.config.num_hidden_layers
    for kind in ("layer", "module"):
        listed = [m for ms in g[kind].values() for m in ms]
        assert sorted(listed) == sorted(mods)  # every module once
    assert list(g["layer"]) == [str(i) for i in range(n_layers)]
    assert set(g["module"]) == set(ALL_PROJECTIONS)
    assert all(len(ms) == n_layers for ms in g["module"].values())
    assert all(len(ms) == len(ALL_PROJECTIONS) for ms in g["layer"].values())
    # numeric order of layers (10 after 9) and non-layer modules last
    g2 = diagnostic.groups(["model.layers.10.q_proj", "lm_head", "model.layers.9.q_proj", "model.layers.2.v_proj"])
    assert list(g2["layer"]) == ["2", "9", "10", "other"]


def copy_adapter(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_incompatible_or_broken_adapters_are_refused(adapters, tmp_path):
    paths, states, _ = adapters
    # another rank
    r8, _, _ = tiny_peft(LLMConfig.tiny(lora_r=8))
    lora.init_state(r8, seed=0)
    r8_path = lora.save_adapter(r8, tmp_path / "r8", meta={})
    with pytest.raises(AdapterError, match=r"adapters differ in r: .*teacher has 4, .*r8 has 8"):
        diagnostic.diagnose(paths["teacher"], r8_path)
    # another base model
    other = copy_adapter(paths["student"], tmp_path / "other_base")
    cfg = json.loads((other / lora.ADAPTER_CONFIG).read_text())
    cfg["base_model_name_or_path"] = "someone/another-model"
    (other / lora.ADAPTER_CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="different base models: 'tiny-random-llama'.*'someone/another-model'"):
        diagnostic.diagnose(paths["teacher"], other)
    # a missing weights file
    missing = copy_adapter(paths["student"], tmp_path / "missing")
    (missing / lora.ADAPTER_WEIGHTS).unlink()
    with pytest.raises(AdapterError, match=rf"{missing / lora.ADAPTER_WEIGHTS} is missing"):
        diagnostic.diagnose(paths["teacher"], missing)
    # NaN in one tensor
    model, _, _ = tiny_peft()
    bad = dict(states["student"])
    key = sorted(bad)[5]
    bad[key] = bad[key].clone()
    bad[key][0, 0] = float("nan")
    lora.set_state(model, bad)
    nan_path = lora.save_adapter(model, tmp_path / "nan", meta={})
    module = key.removeprefix("base_model.model.").split(".lora_")[0]
    with pytest.raises(AdapterError, match=rf"nan: {re.escape(module)}\.lora_.* holds NaN or inf"):
        diagnostic.diagnose(paths["teacher"], paths["student"], nan_path)
    # other target modules
    attn, _, _ = tiny_peft(LLMConfig.tiny(lora_targets=("q_proj", "v_proj")))
    attn_path = lora.save_adapter(attn, tmp_path / "attn", meta={})
    with pytest.raises(AdapterError, match="adapts other modules"):
        diagnostic.diagnose(paths["teacher"], attn_path)


def test_module_tree_keys_and_errors(adapters):
    _, states, _ = adapters
    arrays = {k: v.numpy() for k, v in states["teacher"].items()}
    tree = lora.module_tree(arrays)
    assert sorted(tree) == sorted(m.removeprefix("base_model.model.") for m in modules_of(states["teacher"]))
    assert all(set(ab) == {"A", "B"} for ab in tree.values())
    one = min(arrays)
    with pytest.raises(AdapterError, match="without both lora_A and lora_B"):
        lora.module_tree({one: arrays[one]})
    with pytest.raises(AdapterError, match="unexpected adapter tensor name"):
        lora.module_tree({"model.layers.0.q_proj.weight": np.zeros((2, 2), np.float32)})
