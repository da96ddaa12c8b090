"""Training on completion tokens: the label mask, the KL imitation loss, Theorem 1's first student step on the tiny
random Llama (soft labels from teacher = init + eps dT: <-grad, dT> >= 0), and the optimizer loop's guards."""

import numpy as np
import pytest
import torch

from llm_bridge import lora, prompts, train
from llm_bridge.diagnostic import geometry
from llm_bridge.numbers import chat_prefix, sample
from tests.llm_bridge.helpers import perturb, tiny_peft
from theory import tolerances

TOL = tolerances(np.float32)


def number_batch(model, tok, *, n: int, seed: int):
    """``n`` of the pipeline's number prompts with answers sampled (digits grammar) from the model's current state."""
    pre = [chat_prefix(tok, it["prompt"]) for it in prompts.number_prompts(n, seed=seed)]
    answers = sample(model, tok, pre, max_new_tokens=12, temperature=1.0, seed=seed, batch_size=n, constrained=True)
    return train.encode(tok, pre, [a.strip() for a in answers], "cpu")


def test_encode_masks_prefix_and_padding():
    _, tok, _ = tiny_peft()
    prefixes = [chat_prefix(tok, "A short question?"), chat_prefix(tok, "A much, much longer question here?")]
    completion = "123, 45"
    batch = train.encode(tok, prefixes, [completion, completion], "cpu")
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape
    c_ids = tok(completion, add_special_tokens=False).input_ids + [tok.eos_token_id]
    for row, p in enumerate(prefixes):
        n_p = len(tok(p, add_special_tokens=False).input_ids)
        n = n_p + len(c_ids)
        assert (labels[row, :n_p] == -100).all()  # prompt tokens
        assert labels[row, n_p:n].tolist() == ids[row, n_p:n].tolist() == c_ids  # completion (+ EOS)
        assert (labels[row, n:] == -100).all() and (ids[row, n:] == tok.pad_token_id).all()  # right padding
        assert mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)
    # the shorter row is padded, and its completion tokens are the longer row's
    assert mask[0].sum() < mask[1].sum() == ids.shape[1]
    assert labels[0][labels[0] != -100].tolist() == labels[1][labels[1] != -100].tolist()
    no_eos = train.encode(tok, prefixes[:1], [completion], "cpu", add_eos=False)
    assert no_eos["labels"][0][no_eos["labels"][0] != -100].tolist() == c_ids[:-1]
    with pytest.raises(ValueError):
        train.encode(tok, prefixes, [completion], "cpu")  # one completion per prefix


def test_completion_logits_are_the_positions_before_each_label():
    model, tok, _ = tiny_peft()
    batch = train.encode(tok, [chat_prefix(tok, "Numbers?")] * 2, ["1, 2", "345"], "cpu")
    logits, targets = train.completion_logits(model, batch)
    assert logits.shape == (int((batch["labels"] != -100).sum()), len(tok))
    assert targets.tolist() == batch["labels"][batch["labels"] != -100].tolist()
    np.testing.assert_allclose(train.sft_loss(model, batch).item(),
                               torch.nn.functional.cross_entropy(logits, targets).item(), rtol=TOL.rtol)


def test_kl_to_is_zero_on_own_logits_and_positive_otherwise():
    model, tok, _ = tiny_peft()
    lora.set_state(model, perturb(lora.init_state(model, seed=0), seed=1))
    batch = number_batch(model, tok, n=3, seed=0)
    with torch.no_grad():
        own, _ = train.completion_logits(model, batch)
        with model.disable_adapter():
            base, _ = train.completion_logits(model, batch)
    assert abs(train.kl_to(model, batch, own).item()) <= TOL.atol
    assert train.kl_to(model, batch, base).item() > TOL.atol
    with pytest.raises(ValueError, match="completion positions differ"):
        train.kl_to(model, batch, own[:-1])


@pytest.mark.parametrize("seed", range(5))
def test_first_soft_label_step_has_nonnegative_projection_on_the_teacher_update(seed):
    """Theorem 1: student and teacher share theta_0, teacher = theta_0 + eps dT; the student's first gradient step on
    the teacher's full next-token distributions satisfies <-grad, dT> >= 0 for small eps (here on all LoRA
    parameters, with B_0 = 0 as peft initializes it)."""
    model, tok, _ = tiny_peft()
    init = lora.init_state(model, seed=seed)
    full = perturb(init, seed=100 + seed, scale=0.3)  # init + dT, with B nonzero
    dT = {k: (full[k] - init[k]).numpy() for k in init}
    lora.set_state(model, full)
    batch = number_batch(model, tok, n=4, seed=seed)
    for eps in (1e-3, 1e-2):
        lora.set_state(model, lora.interpolate(init, full, eps))
        with torch.no_grad():
            target, _ = train.completion_logits(model, batch)
        lora.set_state(model, init)
        grad = train.lora_gradient(model, train.kl_to(model, batch, target))
        g = geometry({k: -v.numpy() for k, v in grad.items()}, dT)
        assert g["norm"] > 0  # not vacuous: the teacher's distributions differ from the student's
        assert g["inner"] >= 0, (eps, g)
        # at B = 0 every lora_A gradient is exactly zero (dL/dA = s B^T dL/dh x^T); B carries the whole first step
        assert all(torch.count_nonzero(v) == 0 for k, v in grad.items() if ".lora_A." in k)
        assert any(torch.count_nonzero(v) > 0 for k, v in grad.items() if ".lora_B." in k)


def test_fit_trains_only_the_adapter_and_is_seeded():
    model, tok, _ = tiny_peft()
    init = lora.init_state(model, seed=0)
    pre = [chat_prefix(tok, it["prompt"]) for it in prompts.number_prompts(4, seed=0)]
    ans = ["1, 2, 3", "44, 55", "600", "7, 8, 9, 10"]

    def loss(idx):
        return train.sft_loss(model, train.encode(tok, [pre[i] for i in idx], [ans[i] for i in idx], "cpu"))

    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" not in n}
    kw = {"epochs": 3, "batch_size": 2, "lr": 1e-2, "desc": "test", "progress": False}
    losses = train.fit(model, loss, len(pre), seed=0, **kw)
    assert len(losses) == 3 * 2 and all(np.isfinite(losses))
    assert not model.training  # back in eval mode
    trained = lora.get_state(model)
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters() if ".lora_" not in n)
    assert any(not torch.equal(trained[k], init[k]) for k in init if ".lora_B." in k)
    lora.set_state(model, init)
    assert train.fit(model, loss, len(pre), seed=0, **kw) == losses
    assert all(torch.equal(v, trained[k]) for k, v in lora.get_state(model).items())
    lora.set_state(model, init)
    assert train.fit(model, loss, len(pre), seed=1, **kw) != losses  # another example order


def test_fit_refuses_a_nan_loss():
    model, _, _ = tiny_peft()
    before = lora.get_state(model)

    def nan_loss(idx):
        return torch.tensor(float("nan"), requires_grad=True)

    with pytest.raises(FloatingPointError, match="nan-test: loss is nan at step 0; lower the learning rate"):
        train.fit(model, nan_loss, 4, epochs=1, batch_size=2, lr=1e-3, seed=0, desc="nan-test", progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lora.get_state(model).items())  # no step was taken
