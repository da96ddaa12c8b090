"""Training on completion tokens: the label mask, the KL imitation loss, Theorem 1's first student step on the tiny
random Llama (soft labels from teacher = init + eps dT: <-grad, dT> >= 0), and the optimizer loop's guards."""

import ml_dtypes
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


def sft_setup():
    """The tiny model with its LoRA init, 4 number prompts, their SFT loss on fixed answers, and a copy of the base
    weights: (model, init, prompts, loss(indices), base weights)."""
    model, tok, _ = tiny_peft()
    init = lora.init_state(model, seed=0)
    pre = [chat_prefix(tok, it["prompt"]) for it in prompts.number_prompts(4, seed=0)]
    ans = ["1, 2, 3", "44, 55", "600", "7, 8, 9, 10"]

    def loss(idx):
        return train.sft_loss(model, train.encode(tok, [pre[i] for i in idx], [ans[i] for i in idx], "cpu"))

    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" not in n}
    return model, init, pre, loss, base_before


def test_fit_trains_only_the_adapter_and_is_seeded():
    model, init, pre, loss, base_before = sft_setup()
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


def test_fit_under_bf16_autocast_moves_the_loss_slightly_and_keeps_the_adapter_float32():
    """The opt-in (``LLMConfig.bf16``): one step's loss from the same init and batch differs from float32's by a
    nonzero amount within bf16's roundoff; the adapter, its gradients and the base weights stay float32, the base
    untouched."""
    model, init, pre, loss, base_before = sft_setup()
    kw = {"epochs": 1, "batch_size": 4, "lr": 1e-2, "seed": 0, "desc": "bf16", "progress": False}
    (fp32,) = train.fit(model, loss, 4, **kw)
    lora.set_state(model, init)
    (bf16,) = train.fit(model, loss, 4, bf16=True, **kw)
    assert 0 < abs(bf16 - fp32) / fp32 <= tolerances(ml_dtypes.bfloat16).rtol, (fp32, bf16)
    adapter = lora.lora_parameters(model)
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in adapter.values())
    assert any(not torch.equal(lora.get_state(model)[k], init[k]) for k in init if ".lora_B." in k)  # it trained
    assert all(p.dtype == torch.float32 and torch.equal(p, base_before[n])
               for n, p in model.named_parameters() if ".lora_" not in n)
    lora.set_state(model, init)
    assert train.fit(model, loss, 4, **kw) == [fp32]  # the autocast did not outlive its steps


def test_fit_refuses_a_nan_loss():
    model, _, _ = tiny_peft()
    before = lora.get_state(model)

    def nan_loss(idx):
        return torch.tensor(float("nan"), requires_grad=True)

    with pytest.raises(FloatingPointError, match="student nan-test: the training loss is nan at step 1 of 2; nothing "
                       "of this model was saved: lower the learning rate"):
        train.fit(model, nan_loss, 4, epochs=1, batch_size=2, lr=1e-3, seed=0, desc="nan-test", role="student",
                  progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lora.get_state(model).items())  # no step was taken


def test_fit_refuses_a_nan_gradient_of_a_finite_loss():
    """sqrt at 0 has a finite value and an infinite slope: the loss passes, its gradient (inf * 0) is NaN."""
    model, _, _ = tiny_peft()
    before = lora.get_state(model)
    first = next(iter(lora.lora_parameters(model).values()))

    def loss(idx):
        return torch.sqrt(first.abs().sum() * 0.0)

    with pytest.raises(FloatingPointError, match="teacher t s0: the gradient's norm is nan at step 1 of 2"):
        train.fit(model, loss, 4, epochs=1, batch_size=2, lr=1e-3, seed=0, desc="t s0", role="teacher",
                  progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lora.get_state(model).items())  # no step was taken


def test_inverse_cdf_sample_follows_the_distribution_and_couples_equal_ones():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]] * 20_000)
    u = torch.rand(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = train.inverse_cdf_sample(logits, u)
    freq = np.bincount(y.numpy(), minlength=4) / len(y)
    p = torch.softmax(logits[0].double(), -1).numpy()
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p.max() / len(y)))  # within 4 standard errors
    assert torch.equal(train.inverse_cdf_sample(logits + 3.0, u), y)  # the same distribution: the same tokens
    shifted = logits.clone()
    shifted[:, 0] += 0.01  # a nearby distribution: tokens differ at most where the CDFs do
    cdf_l1 = np.abs(np.cumsum(torch.softmax(shifted[0].double(), -1).numpy()) - np.cumsum(p)).sum()
    differ = (train.inverse_cdf_sample(shifted, u) != y).float().mean().item()
    assert 0 < differ <= cdf_l1 + 4 * np.sqrt(cdf_l1 / len(y))
    assert train.inverse_cdf_sample(logits[:1], torch.tensor([1.0])).item() == 3  # u at the top: the last token


def test_sampled_token_steps_are_unbiased_for_the_soft_step():
    """E over the uniforms of the sampled-token gradient (with and without the coupled control variate) equals the
    soft step's gradient: checked on its projection on dT, Monte Carlo over 300 draws, within 4 standard errors. The
    control variate's spread is far smaller at small eps (what makes its sign informative)."""
    model, tok, _ = tiny_peft()
    init = lora.init_state(model, seed=0)
    full = perturb(init, seed=100, scale=0.3)
    dT = {k: (full[k] - init[k]).numpy() for k in init}
    lora.set_state(model, full)
    batch = number_batch(model, tok, n=2, seed=0)
    lora.set_state(model, lora.interpolate(init, full, 0.1))
    with torch.no_grad():
        target, _ = train.completion_logits(model, batch)
    lora.set_state(model, init)
    with torch.no_grad():
        own, _ = train.completion_logits(model, batch)

    def proj(loss):
        g = train.lora_gradient(model, loss)
        return geometry({k: -v.numpy() for k, v in g.items()}, dT)["inner"]

    soft = proj(train.kl_to(model, batch, target))
    gen = torch.Generator().manual_seed(1)
    plain, cv = [], []
    for _ in range(300):
        u = torch.rand(target.shape[0], generator=gen, dtype=torch.float64)
        y, y0 = train.inverse_cdf_sample(target, u), train.inverse_cdf_sample(own, u)
        plain.append(proj(train.sampled_token_loss(model, batch, y)))
        cv.append(proj(train.sampled_token_loss(model, batch, y, y0)))
    for draws in (plain, cv):
        se = np.std(draws) / np.sqrt(len(draws))
        assert abs(np.mean(draws) - soft) <= 4 * se + TOL.atol, (np.mean(draws), soft, se)
    assert np.std(cv) < 0.5 * np.std(plain)
    assert soft > 0  # Theorem 1's sign, which the unbiased estimates share on average


def test_fit_warms_up_and_clips_the_gradient_norm(monkeypatch):
    model, tok, _ = tiny_peft()
    lora.init_state(model, seed=0)
    pre = [chat_prefix(tok, it["prompt"]) for it in prompts.number_prompts(4, seed=0)]

    def loss(idx):
        return 1e3 * train.sft_loss(model, train.encode(tok, [pre[i] for i in idx], ["1, 2"] * len(idx), "cpu"))

    norms, lrs = [], []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item())
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    train.fit(model, loss, 4, epochs=2, batch_size=1, lr=1e-3, seed=0, desc="t", warmup_steps=3, max_grad_norm=1.0,
              progress=False)
    assert max(norms) <= 1.0 + 1e-5 and len(norms) == 8
    np.testing.assert_allclose(lrs[:4], [0.0, 1e-3 / 3, 2e-3 / 3, 1e-3], rtol=1e-6)  # warm-up, then linear decay
    assert lrs[4] < lrs[3]
