"""LoRA adapters on the tiny random Llama: B = 0 leaves the base model untouched, seeded inits, parameter counts from
the model's shapes, save/load round trips, and clear errors for wrong-rank, missing and corrupt adapters."""

import numpy as np
import pytest
import torch

from llm_bridge import lora
from llm_bridge.config import ALL_PROJECTIONS, LLMConfig
from llm_bridge.lora import AdapterError
from llm_bridge.numbers import chat_prefix
from llm_bridge.train import encode
from tests.llm_bridge.helpers import perturb, tiny_peft
from theory import tolerances

TOL = tolerances(np.float32)


def logits(model, tok):
    batch = encode(tok, [chat_prefix(tok, "Continue: 1, 2, 3."), chat_prefix(tok, "Hi")], ["4, 5", "owl"], "cpu")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def adapted_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) features of every adapted projection, from the Llama config alone."""
    h, inter = config.hidden_size, config.intermediate_size
    hd = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h), "gate_proj": (h, inter),
            "up_proj": (h, inter), "down_proj": (inter, h)}


def test_zero_B_leaves_the_base_model_exactly():
    model, tok, _ = tiny_peft()
    state = lora.init_state(model, seed=3)
    assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if ".lora_B." in k)
    assert all(torch.count_nonzero(v) > 0 for k, v in state.items() if ".lora_A." in k)
    with model.disable_adapter():
        base = logits(model, tok)
    assert torch.equal(logits(model, tok), base)
    # ... and a nonzero B does change the outputs (the comparison above is not vacuous)
    lora.set_state(model, perturb(state, seed=0))
    assert not torch.allclose(logits(model, tok), base, rtol=TOL.rtol, atol=TOL.atol)
    with model.disable_adapter():
        assert torch.equal(logits(model, tok), base)


def test_init_state_depends_on_the_seed_alone():
    model, _, _ = tiny_peft()
    a = lora.init_state(model, seed=7)
    lora.set_state(model, perturb(a, seed=1))
    torch.manual_seed(12345)  # the global RNG state does not matter
    b = lora.init_state(model, seed=7)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    other, _, _ = tiny_peft()  # nor does the model instance
    b2 = lora.init_state(other, seed=7)
    assert all(torch.equal(a[k], b2[k]) for k in a)
    c = lora.init_state(model, seed=8)
    assert all(not torch.equal(a[k], c[k]) for k in a if ".lora_A." in k)


def test_parameter_count_is_the_hand_formula():
    model, _, cfg = tiny_peft()
    mc = model.base_model.model.config
    shapes = adapted_shapes(mc)
    assert set(shapes) == set(cfg.lora_targets) == set(ALL_PROJECTIONS)
    r = cfg.lora_r
    expected = mc.num_hidden_layers * sum(r * (i + o) for i, o in shapes.values())
    params = lora.lora_parameters(model)
    assert sum(p.numel() for p in params.values()) == expected
    assert len(params) == 2 * mc.num_hidden_layers * len(shapes)
    for k, p in params.items():
        i, o = shapes[k.split(".lora_")[0].rsplit(".", 1)[-1]]
        assert tuple(p.shape) == ((r, i) if ".lora_A." in k else (o, r)), k
    # the base weights are frozen, the adapter's are not
    assert all(p.requires_grad == (".lora_" in n) for n, p in model.named_parameters())


def test_save_read_round_trip_restores_tensors_and_outputs(tmp_path):
    model, tok, cfg = tiny_peft()
    state = perturb(lora.init_state(model, seed=0), seed=2)
    lora.set_state(model, state)
    expected = logits(model, tok)
    path = lora.save_adapter(model, tmp_path / "adapter", meta={"role": "test"})
    assert (path / lora.ADAPTER_WEIGHTS).is_file() and (path / "subliminal.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    adapter_cfg, arrays = lora.read_adapter(path)
    assert adapter_cfg["r"] == cfg.lora_r and adapter_cfg["lora_alpha"] == cfg.lora_alpha
    assert set(arrays) == set(state)
    for k in state:
        assert arrays[k].dtype == np.float32
        np.testing.assert_array_equal(arrays[k], state[k].numpy())
    lora.set_state(model, lora.init_state(model, seed=1))
    assert not torch.allclose(logits(model, tok), expected, rtol=TOL.rtol, atol=TOL.atol)
    lora.set_state(model, lora.state_from_arrays(arrays, "cpu"))
    assert torch.equal(logits(model, tok), expected)
    # saving again over an existing adapter replaces it
    lora.set_state(model, perturb(state, seed=3))
    lora.save_adapter(model, path, meta={})
    _, arrays2 = lora.read_adapter(path)
    assert any(not np.array_equal(arrays[k], arrays2[k]) for k in arrays)


def test_set_state_rejects_other_ranks_and_other_modules():
    model, _, _ = tiny_peft()
    r8, _, _ = tiny_peft(LLMConfig.tiny(lora_r=8))
    with pytest.raises(AdapterError, match=r"adapter shape \(8, 32\) != model \(4, 32\).*different rank"):
        lora.set_state(model, lora.get_state(r8))
    state = lora.get_state(model)
    dropped = dict(list(state.items())[1:])
    with pytest.raises(AdapterError, match="do not match the model's LoRA modules"):
        lora.set_state(model, dropped)
    with pytest.raises(AdapterError, match="no LoRA parameters"):
        lora.lora_parameters(torch.nn.Linear(2, 2))


def test_read_adapter_errors_name_the_file(tmp_path):
    with pytest.raises(AdapterError, match=rf"{tmp_path / 'nowhere'} does not exist.*save_pretrained"):
        lora.read_adapter(tmp_path / "nowhere")
    model, _, _ = tiny_peft()
    path = lora.save_adapter(model, tmp_path / "a", meta={})
    weights = path / lora.ADAPTER_WEIGHTS
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])  # truncated mid-tensor
    with pytest.raises(AdapterError, match=rf"{path} is corrupt .*re-save"):
        lora.read_adapter(path)
    weights.write_bytes(blob[:5])  # truncated inside the header
    with pytest.raises(AdapterError, match=rf"{path} is corrupt"):
        lora.read_adapter(path)
    weights.unlink()
    with pytest.raises(AdapterError, match=rf"{weights} is missing: not a peft LoRA adapter folder"):
        lora.read_adapter(path)
    weights.write_bytes(blob)
    (path / lora.ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(AdapterError, match=rf"{path} is corrupt"):
        lora.read_adapter(path)


def test_interpolate_endpoints_and_midpoint():
    model, _, _ = tiny_peft()
    init = lora.init_state(model, seed=0)
    target = perturb(init, seed=5)
    at0, at1, half = (lora.interpolate(init, target, e) for e in (0.0, 1.0, 0.5))
    for k in init:
        assert torch.equal(at0[k], init[k])
        torch.testing.assert_close(at1[k], target[k], rtol=TOL.rtol, atol=TOL.atol)
        torch.testing.assert_close(half[k], (init[k] + target[k]) / 2, rtol=TOL.rtol, atol=TOL.atol)


def test_scaling_is_alpha_over_r_or_sqrt_r():
    assert lora.scaling({"r": 4, "lora_alpha": 8}) == 2.0
    assert lora.scaling({"r": 4, "lora_alpha": 8, "use_rslora": True}) == 4.0
    assert lora.scaling({"r": 8}) == 1.0  # peft's default alpha is r
