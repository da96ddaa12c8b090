"""The tiny random Llama with a LoRA adapter, seeded perturbations of adapter states, and flat numpy views."""

from __future__ import annotations

import numpy as np
import torch

from llm_bridge import lora
from llm_bridge.config import LLMConfig
from llm_bridge.models import load_base


def tiny_peft(config: LLMConfig | None = None):
    """(fresh tiny Llama wrapped with peft LoRA, tokenizer, config); the base weights are the same on every call."""
    config = config or LLMConfig.tiny()
    base, tok, _ = load_base("tiny", device="cpu")
    return lora.attach_lora(base, config, seed=0), tok, config


def perturb(state: dict, *, seed: int, scale: float = 0.1) -> dict:
    """``state`` + ``scale`` * N(0, 1) on every tensor (B included), from a torch generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in sorted(state.items())}


def flat64(state: dict, minus: dict | None = None) -> np.ndarray:
    """All tensors of ``state`` (minus ``minus``), in sorted key order, as one float64 vector."""
    keys = sorted(state)
    return np.concatenate([(state[k] - (0 if minus is None else minus[k])).double().numpy().ravel() for k in keys])


def modules_of(state: dict) -> list[str]:
    return sorted({k.rsplit(".lora_", 1)[0] for k in state})


def dw64(state: dict, scale: float) -> dict[str, np.ndarray]:
    """Materialized dW = scale * B @ A per module, in float64 numpy."""
    return {m: scale * (state[f"{m}.lora_B.weight"].double().numpy() @ state[f"{m}.lora_A.weight"].double().numpy())
            for m in modules_of(state)}


def cos64(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
