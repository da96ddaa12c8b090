"""LoRA adapters through peft: one deterministic init per seed (saved, so teacher and students start from EXACTLY the
same A and B = 0), weight swapping on one wrapped base model, and atomic save/load in peft's safetensors format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from llm_bridge.config import LLMConfig
from results import atomic_dir

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class AdapterError(ValueError):
    """A missing, corrupt or incompatible adapter; the message names the file and what to do."""


def lora_config(config: LLMConfig):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=list(config.lora_targets),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


def attach_lora(base, config: LLMConfig, *, seed: int):
    """Wrap ``base`` with a fresh LoRA adapter (peft's init: A Kaiming-uniform, B = 0) drawn from ``seed`` alone."""
    from peft import get_peft_model

    dev = next(base.parameters()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        return get_peft_model(base, lora_config(config))


def _canonical(name: str) -> str:
    # parameter names carry the adapter name ("lora_A.default.weight"); saved files do not
    return name.replace(".default.", ".")


def lora_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The adapter's parameters keyed as in peft's saved safetensors file."""
    params = {_canonical(n): p for n, p in model.named_parameters() if ".lora_" in n}
    if not params:
        raise AdapterError("the model carries no LoRA parameters")
    return params


def get_state(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in lora_parameters(model).items()}


@torch.no_grad()
def set_state(model, state: dict[str, torch.Tensor]) -> None:
    params = lora_parameters(model)
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state))[:3], sorted(set(state) - set(params))[:3]
        raise AdapterError(f"adapter tensors do not match the model's LoRA modules (missing {missing}, "
                           f"unexpected {extra}): was it trained with other targets or on another base?")
    for k, p in params.items():
        if p.shape != state[k].shape:
            raise AdapterError(f"{k}: adapter shape {tuple(state[k].shape)} != model {tuple(p.shape)} "
                               "(different rank or base model)")
        p.copy_(state[k])


def interpolate(init: dict, target: dict, eps: float) -> dict:
    """theta_0 + eps * (theta_target - theta_0), tensor by tensor (the theorem's teacher at step size eps)."""
    return {k: init[k] + eps * (target[k] - init[k]) for k in init}


def save_adapter(model, path: Path, *, meta: dict) -> Path:
    """Atomically save the current adapter (peft format) plus ``subliminal.json`` metadata into ``path``."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, save_embedding_layers=False)  # LoRA only; no hub lookup of the base
        (tmp / "subliminal.json").write_text(json.dumps(meta, indent=1))

    return atomic_dir(path, fill)


def read_adapter(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(adapter_config.json as a dict, LoRA tensors as float32 numpy arrays keyed as saved) of a peft adapter dir."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"adapter folder {path} does not exist (a peft adapter folder holds {ADAPTER_CONFIG} and "
                           f"{ADAPTER_WEIGHTS}; pass the folder that model.save_pretrained wrote)")
    for f in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (path / f).is_file():
            raise AdapterError(f"{path / f} is missing: not a peft LoRA adapter folder")
    try:
        cfg = json.loads((path / ADAPTER_CONFIG).read_text())
        tensors = load_file(str(path / ADAPTER_WEIGHTS))
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        raise AdapterError(f"{path} is corrupt ({e}); re-save the adapter") from e
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{path}: peft_type {cfg.get('peft_type')!r}; only LoRA adapters are supported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise AdapterError(f"{path}: per-module rank_pattern/alpha_pattern are not supported")
    lora = {k: v.astype(np.float32) for k, v in tensors.items() if ".lora_A." in k or ".lora_B." in k}
    if not lora:
        raise AdapterError(f"{path / ADAPTER_WEIGHTS} holds no lora_A/lora_B tensors")
    return cfg, lora


def state_from_arrays(arrays: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


_MODULE = re.compile(r"^(?:base_model\.model\.)?(.*)\.lora_([AB])\.weight$")


def module_tree(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{module path, e.g. "model.layers.3.self_attn.q_proj": {"A": r x in, "B": out x r}} from saved tensor names."""
    tree: dict[str, dict[str, np.ndarray]] = {}
    for k, v in tensors.items():
        m = _MODULE.match(k)
        if m is None:
            raise AdapterError(f"unexpected adapter tensor name {k!r}")
        tree.setdefault(m.group(1), {})[m.group(2)] = v
    broken = [m for m, ab in tree.items() if set(ab) != {"A", "B"}]
    if broken:
        raise AdapterError(f"modules without both lora_A and lora_B: {broken[:3]}")
    return tree


def scaling(cfg: dict) -> float:
    """dW = scaling * B @ A: alpha / r (alpha / sqrt(r) with rsLoRA)."""
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg["r"])
    return alpha / (r ** 0.5 if cfg.get("use_rslora") else r)


@torch.no_grad()
def init_state(model, seed: int) -> dict[str, torch.Tensor]:
    """Re-draw every LoRA layer's init (peft's: A Kaiming-uniform, B = 0) from ``seed`` alone, in module order, and
    return it. The pipeline saves this state once per seed: teacher, student and control all load it."""
    from peft.tuners.lora.layer import LoraLayer

    dev = next(model.parameters()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_A:
                    module.reset_lora_parameters(name, True)
    return get_state(model)
