"""The authors' approach to the Fig. 10 protocol (paper Section 6.2) in torch: the speed baseline.

One process trains N models at once: each layer is a stacked weight (N x in x out) applied with a batched einsum, and
one Adam over the stacked tensors is N independent Adams (Adam is elementwise). Per run it does the work of
``mnist_mlp.experiment``: a teacher (5 epochs of MNIST, class cross-entropy), then four students (aux or all logits,
of the run's own teacher or another run's) for 5 epochs on the run's fixed set of uniform-noise images, with
KL(teacher || student); then every model's test accuracy. The noise sets are held in memory, as the authors' script
holds them. A cross-model student imitates its paired teacher (run pi(r), pi a derangement) on the student's OWN
inputs, as the authors' script does by re-indexing the teacher stack. By default the teachers' logits are computed at
every distillation step, as the authors' script computes them (``targets="online"``); ``targets="cached"`` computes
them once per noise set, as ``mnist_mlp`` does (a stronger baseline: 4 of 5 teacher passes saved).
``tests/mnist_mlp/test_experiment.py`` checks that its teacher and student steps are ours, and
``tests/benchmarks/test_torch_mnist.py`` its pairing.

``python -m benchmarks.mnist_vs_torch`` and ``benchmarks/gpu_check.sh`` time it against ``mnist_mlp``.
"""

from __future__ import annotations

import argparse
import json
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
    return (z[..., :N_CLASSES].argmax(-1) == y_test).float().mean(1).cpu().numpy()


def paired(params, other_R: torch.Tensor) -> list[torch.Tensor]:
    """The stack re-indexed by the pairing: model r of the result is model other[r] (the cross-model teachers)."""
    return [p.detach()[other_R] for p in params]


def teacher_logits(teacher, x_RxBxD: torch.Tensor, other_R: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run r's distillation targets on run r's own inputs: {"same": its teacher's logits, "other": the logits of
    teacher other[r]} (each R x B x K)."""
    with torch.no_grad():
        return {"same": forward([p.detach() for p in teacher], x_RxBxD), "other": forward(paired(teacher, other_R),
                                                                                          x_RxBxD)}


KINDS = {"aux_same": (slice(N_CLASSES, None), "same"), "all_same": (slice(None), "same"),
         "aux_other": (slice(N_CLASSES, None), "other"), "all_other": (slice(None), "other")}


def run(x_train, y_train, x_test, y_test, *, runs: int, epochs: int = 5, batch: int = 1024, lr: float = 3e-4,
        n_noise: int = 60_000, seed: int = 0, targets: str = "online", device: str = "cpu") -> dict:
    """The protocol for ``runs`` runs at once on ``device``; returns every model's test accuracy, the pairing and
    the phases' seconds."""
    if targets not in ("online", "cached"):
        raise ValueError(f"targets={targets!r}: choose online (the authors') or cached")
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x_train, y_train, x_test, y_test = (t.to(dev) for t in (x_train, y_train, x_test, y_test))
    g = torch.Generator(device=dev).manual_seed(seed + 1)
    start_unix, t0 = time.time(), time.perf_counter()
    init = [p.detach().to(dev).requires_grad_() for p in init_stack(runs, seed=seed)]
    teacher = [p.detach().clone().requires_grad_() for p in init]
    opt = torch.optim.Adam(teacher, lr=lr)
    n = x_train.shape[0]
    for _ in range(epochs):
        perm = torch.stack([torch.randperm(n, generator=g, device=dev) for _ in range(runs)])
        for s in range(0, n, batch):
            idx = perm[:, s:s + batch]
            teacher_step(teacher, opt, x_train[idx], y_train[idx])
    sync()
    t_teachers = time.perf_counter() - t0
    noise = torch.rand(runs, n_noise, x_train.shape[1], generator=g, device=dev) * 2 - 1  # each run's noise set
    other = torch.roll(torch.arange(runs, device=dev), 1)  # a derangement: run r imitates run r-1's teacher
    if targets == "cached":
        parts = [teacher_logits(teacher, noise[:, s:s + batch], other) for s in range(0, n_noise, batch)]
        cache = {w: torch.cat([p[w] for p in parts], 1) for w in ("same", "other")}
    students = {k: [p.detach().clone().requires_grad_() for p in init] for k in KINDS}
    opts = {k: torch.optim.Adam(students[k], lr=lr) for k in KINDS}
    for _ in range(epochs):
        perm = torch.stack([torch.randperm(n_noise, generator=g, device=dev) for _ in range(runs)])
        for s in range(0, n_noise, batch):
            idx = perm[:, s:s + batch]
            x = torch.gather(noise, 1, idx[..., None].expand(-1, -1, noise.shape[2]))
            if targets == "cached":
                logits = {w: torch.gather(c, 1, idx[..., None].expand(-1, -1, c.shape[2])) for w, c in cache.items()}
            else:
                logits = teacher_logits(teacher, x, other)
            for k, (cols, whose) in KINDS.items():
                student_step(students[k], opts[k], x, F.log_softmax(logits[whose][..., cols], -1), cols)
    sync()
    t_students = time.perf_counter() - t0 - t_teachers
    acc = {"teacher": accuracy(teacher, x_test, y_test).tolist(),
           **{k: accuracy(students[k], x_test, y_test).tolist() for k in KINDS}}
    return {"accuracy": acc, "pairing": other.tolist(), "teachers_s": t_teachers, "students_s": t_students,
            "total_s": time.perf_counter() - t0, "start_unix": start_unix}


def main(argv=None) -> None:
    """``python -m benchmarks.torch_mnist [RUNS]``: the baseline alone, on the real MNIST files (see README); prints
    one JSON line."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.torch_mnist", description=__doc__.split("\n\n")[0],
                                 formatter_class=lambda prog: argparse.HelpFormatter(prog, width=120))
    ap.add_argument("runs", nargs="?", type=int, default=10, help="models trained at once (default 10)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-noise", type=int, default=60_000, help="noise images per run")
    ap.add_argument("--targets", choices=("online", "cached"), default="online",
                    help="teacher logits at every step (the authors') or once per noise set")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--data-dir", default=None, help="torchvision MNIST root (default: $SUBLIMINAL_DATA_DIR or ./data)")
    a = ap.parse_args(argv)
    if a.runs < 2:
        ap.error("runs must be >= 2: a cross-model student needs another run's teacher")
    t0 = time.perf_counter()
    from mnist_mlp import ensure_mnist, load_dataset

    root = ensure_mnist(a.data_dir, download=False)
    (xtr, ytr), (xte, yte) = (load_dataset("mnist", root, split=s) for s in ("train", "test"))
    res = run(torch.tensor(xtr), torch.tensor(ytr).long(), torch.tensor(xte), torch.tensor(yte).long(), runs=a.runs,
              epochs=a.epochs, n_noise=a.n_noise, targets=a.targets, device=a.device)
    acc = res.pop("accuracy")
    print(json.dumps({**res, "targets": a.targets, "device": a.device, "load_s": time.perf_counter() - t0 -
                      res["total_s"], "mean_accuracy": {k: float(np.mean(v)) for k, v in acc.items()}}))


if __name__ == "__main__":
    main()
