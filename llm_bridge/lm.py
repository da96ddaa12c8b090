"""The loaded language model every stage works on: a base wrapped once with a LoRA adapter whose weights are swapped
per role (init, teacher, student, ...), its tokenizer, and sampling with a progress bar."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llm_bridge import lora
from llm_bridge.config import LLMConfig
from llm_bridge.models import load_base
from llm_bridge.numbers import sample
from results import environment


@dataclass
class LM:
    model: torch.nn.Module  # peft model: the base plus one LoRA adapter
    tok: object
    device: torch.device
    base_id: str  # what was loaded (GGUF path, hub id, or "tiny")

    @contextmanager
    def base(self):
        """The base model itself (adapter bypassed)."""
        with self.model.disable_adapter():
            yield

    def load(self, state: dict[str, torch.Tensor]) -> None:
        lora.set_state(self.model, state)

    def state(self) -> dict[str, torch.Tensor]:
        return lora.get_state(self.model)

    def read_state(self, path: Path) -> dict[str, torch.Tensor]:
        _, arrays = lora.read_adapter(path)
        return lora.state_from_arrays(arrays, self.device)

    def generate(self, prefixes: list[str], *, config: LLMConfig, max_new_tokens: int, seed: int, constrained: bool,
                 desc: str, progress: bool = True) -> list[str]:
        # stop_rejected is left off: transformers runs a batch until its last row ends, so on our measurements
        # (benchmarks/llm_numbers.py) it saved no time, and full rejected answers are worth keeping in the JSONL
        with tqdm(total=len(prefixes), desc=desc, disable=not progress, leave=False) as bar:
            return sample(self.model, self.tok, prefixes, max_new_tokens=max_new_tokens,
                          temperature=config.temperature, seed=seed, batch_size=config.gen_batch,
                          constrained=constrained, progress=bar)

    def environment(self) -> dict:
        return environment(device=str(self.device), torch=torch.__version__, threads=torch.get_num_threads(),
                           gpu=torch.cuda.get_device_name() if self.device.type == "cuda" else None)


def load_lm(config: LLMConfig) -> LM:
    """The config's base model with a fresh LoRA adapter (its weights are replaced by each stage's state)."""
    base, tok, base_id = load_base(config.model, device=config.device)
    model = lora.attach_lora(base, config, seed=0)
    return LM(model, tok, next(model.parameters()).device, base_id)
