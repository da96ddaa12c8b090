"""The authors' approach to the Fig. 10 protocol (paper Section 6.2) in torch: the speed baseline of issue 16.

One process trains N models at once: each layer is a stacked weight (N x in x out) applied with a batched einsum, and
one Adam over the stacked tensors is N independent Adams (Adam is elementwise). Per run it does the work of
``mnist_mlp.experiment``: a teacher (5 epochs of MNIST, class cross-entropy), then four students (aux or all logits,
of the run's own teacher or another run's) for 5 epochs on the run's fixed set of uniform-noise images, with
KL(teacher || student); then every model's test accuracy. The noise sets are held in memory, as the authors' script
holds them. ``tests/mnist_mlp/test_experiment.py`` checks that its teacher and student steps are ours.

``python -m benchmarks.mnist_vs_torch`` times it against ``mnist_mlp``; this module is its baseline.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

N_CLASSES = 10


def init_stack(n: int, sizes=(784, 256, 256, 13), *, seed: int = 0) -> list[torch.Tensor]:
    """[W_0, b_0, W_1, b_1, ...] for n models: weights N(0, 1/fan_in), biases zero (the paper's init)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        out += [torch.randn(n, a, b, generator=g) / a**0.5, torch.zeros(n, b)]
    return [t.requires_grad_() for t in out]


def from_flax(params_R) -> list[torch.Tensor]:
    """The stacked torch parameters of a flax MLP's run-stacked params (``Dense_i`` -> kernel R x in x out, bias)."""
    out = []
    for name in sorted(params_R, key=lambda s: int(s.split("_")[1])):
        out += [torch.tensor(np.asarray(params_R[name][k])) for k in ("kernel", "bias")]
    return [t.requires_grad_() for t in out]


def forward(params, x_NxBxD: torch.Tensor) -> torch.Tensor:
    h = x_NxBxD
    for i in range(0, len(params), 2):
        h = torch.einsum("nbi,nio->nbo", h, params[i]) + params[i + 1][:, None]
        if i + 2 < len(params):
            h = F.relu(h)
    return h


def teacher_step(params, opt, x_NxBxD, y_NxB) -> float:
    """One Adam step of every model on its own batch; the sum over models keeps each model's gradient its own."""
    opt.zero_grad(set_to_none=True)
    z = forward(params, x_NxBxD)[..., :N_CLASSES]
    loss = F.cross_entropy(z.flatten(0, 1), y_NxB.flatten(), reduction="none").view(y_NxB.shape).mean(1).sum()
    loss.backward()
    opt.step()
    return float(loss.detach())


def student_step(params, opt, x_NxBxD, target_logp_NxBxK, cols: slice) -> float:
    """One Adam step of every student: KL(teacher || student) of the softmaxes over logits ``cols``, batch mean."""
    opt.zero_grad(set_to_none=True)
    logp = F.log_softmax(forward(params, x_NxBxD)[..., cols], -1)
    t = target_logp_NxBxK
    loss = (t.exp() * (t - logp)).sum(-1).mean(1).sum()
    loss.backward()
    opt.step()
    return float(loss.detach())


def accuracy(params, x_test, y_test) -> np.ndarray:
    with torch.no_grad():
        z = torch.stack([forward([p[i:i + 1] for p in params], x_test[None])[0] for i in range(params[0].shape[0])])
    return (z[..., :N_CLASSES].argmax(-1) == y_test).float().mean(1).numpy()


def run(x_train, y_train, x_test, y_test, *, runs: int, epochs: int = 5, batch: int = 1024, lr: float = 3e-4,
        n_noise: int = 60_000, seed: int = 0) -> dict:
    """The protocol for ``runs`` runs at once; returns every model's test accuracy and the phases' seconds."""
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    init = init_stack(runs, seed=seed)
    teacher = [p.detach().clone().requires_grad_() for p in init]
    opt = torch.optim.Adam(teacher, lr=lr)
    n = x_train.shape[0]
    for _ in range(epochs):
        perm = torch.stack([torch.randperm(n, generator=g) for _ in range(runs)])
        for s in range(0, n, batch):
            idx = perm[:, s:s + batch]
            teacher_step(teacher, opt, x_train[idx], y_train[idx])
    t_teachers = time.perf_counter() - t0
    noise = torch.rand(runs, n_noise, x_train.shape[1], generator=g) * 2 - 1  # each run's fixed noise set
    with torch.no_grad():
        logits = torch.cat([forward(teacher, noise[:, s:s + batch]) for s in range(0, n_noise, batch)], 1)
    other = torch.roll(torch.arange(runs), 1)  # a derangement: run r imitates run r-1's teacher
    kinds = {"aux_same": (slice(N_CLASSES, None), False), "all_same": (slice(None), False),
             "aux_other": (slice(N_CLASSES, None), True), "all_other": (slice(None), True)}
    students = {k: [p.detach().clone().requires_grad_() for p in init] for k in kinds}
    opts = {k: torch.optim.Adam(students[k], lr=lr) for k in kinds}
    for _ in range(epochs):
        perm = torch.stack([torch.randperm(n_noise, generator=g) for _ in range(runs)])
        for s in range(0, n_noise, batch):
            idx = perm[:, s:s + batch]
            x = torch.gather(noise, 1, idx[..., None].expand(-1, -1, noise.shape[2]))
            for k, (cols, cross) in kinds.items():
                src = logits[other] if cross else logits
                t = F.log_softmax(torch.gather(src, 1, idx[..., None].expand(-1, -1, src.shape[2]))[..., cols], -1)
                student_step(students[k], opts[k], x, t, cols)
    t_students = time.perf_counter() - t0 - t_teachers
    acc = {"teacher": accuracy(teacher, x_test, y_test).tolist(),
           **{k: accuracy(students[k], x_test, y_test).tolist() for k in kinds}}
    return {"accuracy": acc, "teachers_s": t_teachers, "students_s": t_students,
            "total_s": time.perf_counter() - t0}


def main(runs: int = 10) -> None:
    """``python -m benchmarks.torch_mnist [RUNS]``: the baseline alone, on the real MNIST files (see README)."""
    from mnist_mlp.data import ensure_mnist, load_dataset

    root = ensure_mnist(download=False)
    (xtr, ytr), (xte, yte) = (load_dataset("mnist", root, split=s) for s in ("train", "test"))
    res = run(torch.tensor(xtr), torch.tensor(ytr).long(), torch.tensor(xte), torch.tensor(yte).long(), runs=runs)
    acc = res.pop("accuracy")
    print(json.dumps({**res, "mean_accuracy": {k: float(np.mean(v)) for k, v in acc.items()}}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
