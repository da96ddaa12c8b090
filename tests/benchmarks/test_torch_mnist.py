"""The torch baseline of the speed benchmarks (``benchmarks/torch_mnist.py``, the authors' approach to paper Section
6.2): every student imitates the teacher it is paired with ON ITS OWN INPUTS, as the authors' script does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import torch_mnist

SIZES = (784, 16, 13)


def alone(params, r: int, x_BxD: torch.Tensor) -> torch.Tensor:
    """Model r of a stack, applied by itself."""
    with torch.no_grad():
        return torch_mnist.forward([p.detach()[r:r + 1] for p in params], x_BxD[None])[0]


def test_teacher_logits_pair_each_run_with_its_teacher_on_its_own_inputs():
    R = 3
    teacher = torch_mnist.init_stack(R, SIZES, seed=4)
    x = torch.rand(R, 8, SIZES[0], generator=torch.Generator().manual_seed(1)) * 2 - 1
    other = torch.tensor([2, 0, 1])
    got = torch_mnist.teacher_logits(teacher, x, other)
    for r in range(R):
        torch.testing.assert_close(got["same"][r], alone(teacher, r, x[r]))
        torch.testing.assert_close(got["other"][r], alone(teacher, int(other[r]), x[r]))
        # the mispairing this guards against: the other teacher on the other run's inputs
        assert not torch.allclose(got["other"][r], alone(teacher, int(other[r]), x[int(other[r])]))


@pytest.mark.parametrize("targets", [None, "cached"])
def test_every_student_step_of_a_run_imitates_its_paired_teacher_on_the_batch_it_sees(monkeypatch, targets):
    """The whole protocol on a small synthetic set: each student step's target is log_softmax of the paired teacher's
    logits (the run's own for *_same, run pairing[r]'s for *_other) on the very images of that step."""
    R, n, batch = 3, 64, 32
    g = torch.Generator().manual_seed(0)
    x_train, y_train = torch.rand(n, 784, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)
    seen = {"teacher": None, "steps": []}
    teacher_step, student_step = torch_mnist.teacher_step, torch_mnist.student_step

    def spy_teacher(params, *a):
        seen["teacher"] = params  # the stack trained in place: final once the students start
        return teacher_step(params, *a)

    def spy_student(params, opt, x, target, cols):
        seen["steps"].append((x.clone(), target.clone(), cols))
        return student_step(params, opt, x, target, cols)

    monkeypatch.setattr(torch_mnist, "teacher_step", spy_teacher)
    monkeypatch.setattr(torch_mnist, "student_step", spy_student)
    kw = {} if targets is None else {"targets": targets}
    res = torch_mnist.run(x_train, y_train, x_train[:16], y_train[:16], runs=R, epochs=1, batch=batch, n_noise=n,
                          **kw)
    pairing = np.asarray(res["pairing"])
    assert sorted(pairing.tolist()) == list(range(R)) and not np.any(pairing == np.arange(R))
    kinds = list(torch_mnist.KINDS)
    assert len(seen["steps"]) == len(kinds) * (n // batch)
    for i, (x, target, cols) in enumerate(seen["steps"]):
        kind = kinds[i % len(kinds)]
        for r in range(R):
            source = r if kind.endswith("_same") else int(pairing[r])
            want = torch.log_softmax(alone(seen["teacher"], source, x[r])[:, cols], -1)
            torch.testing.assert_close(target[r], want, rtol=1e-5, atol=1e-5, msg=f"{kind}, run {r}")
