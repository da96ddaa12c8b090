"""Sweeps of the Fig. 10 protocol (paper Section 6.2) and the mechanism studies: where subliminal transfer happens,
and whether the theory's first-order quantity (Section 6, Lemma 1) predicts it.

``python -m mnist_mlp sweep NAME --preset quick|paper``. A sweep is a list of cells; a cell is the Fig. 10
experiment (``mnist_mlp.experiment``: the same step functions, vmapped over its runs) with a few ``MnistConfig``
knobs changed. Cells that differ only in the students' start or ablation direction (``STACKED_KNOBS``: the init,
ablation and heads sweeps) train as one vmapped batch, one set of teachers and one compiled step for all of them.
Every cell has the aux-only students of the same init (``aux_same``) and of a different init
(``aux_other``), and reports per student the test accuracy, the first-step gradient projection on the teacher's update
(Lemma 1's quantity; in the ablation cells, of the ablated step) and the cosine of the whole update, each as a mean
with a 95% bootstrap CI over runs. Cells that share a configuration share one fingerprint and one run folder, so with
resume (the CLI's default) the Fig. 10 baseline is trained once for all sweeps; cells that change only the students
share the baseline's trained teachers too (``MnistConfig.teacher_fingerprint``).

``transfer_map`` pools every finished sweep: each cell's first-order prediction against its measured transfer
(aux-student accuracy minus chance), with Spearman's rank correlation and its bootstrap CI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_mlp import experiment
from mnist_mlp.config import MnistConfig
from results import load_json, save_json
from theory.stats import bootstrap_ci, spearman_ci

CHANCE = 0.1
PRESETS = ("tiny", "quick", "full")
SWEEP_STUDENTS = ("aux_same", "aux_other", "all_same", "all_other")


@dataclass(frozen=True)
class Sweep:
    title: str
    axis: str  # the x-axis label of its figure
    cells: tuple[tuple[str, tuple[tuple[str, object], ...]], ...]  # (label, MnistConfig overrides)
    published: str = ""  # the trend published for it, which paper_notes.md sets ours against


def _cells(key: str, values, label=str) -> tuple:
    return tuple((label(v), ((key, v),)) for v in values)


SWEEPS: dict[str, Sweep] = {
    "init": Sweep("Init distance", "student init sigma (0 = shared, 1 = fresh)",
                  _cells("init_sigma", (0.0, 0.01, 0.03, 0.1, 0.3, 1.0), lambda v: f"{v:g}"),
                  "transfer needs a shared init (Fig. 10: 53.4% same vs 10.0% other)"),
    "width": Sweep("Width", "hidden units per layer",
                   tuple((str(w), (("hidden", (w, w)),)) for w in (64, 128, 256, 512, 1024)),
                   "wider layers weaken transfer"),
    "aux": Sweep("Aux logits", "auxiliary logits m", _cells("n_aux", (1, 2, 3, 10, 30)),
                 "more aux logits strengthen transfer"),
    "loss": Sweep("Imitation loss", "student loss", _cells("student_loss", ("kl", "mse", "kl_t0.5", "kl_t2")), ""),
    "optimizer": Sweep("Student optimizer", "optimizer (lr)",
                       (("adam 3e-4", ()), ("signsgd 3e-4", (("student_optimizer", "signsgd"),)),
                        *((f"sgd {lr:g}", (("student_optimizer", "sgd"), ("student_lr", lr))) for lr in
                          (0.01, 0.1, 1.0))),
                       "adaptive optimizers were reported necessary"),
    "student_epochs": Sweep("Distillation length", "student epochs", _cells("student_epochs", (1, 5, 20)),
                            "longer distillation helps (19.7% after 1 epoch, 77.2% after 40)"),
    "teacher_epochs": Sweep("Teacher training", "teacher epochs", _cells("teacher_epochs", (1, 2, 5, 10)),
                            "an inverted U in the teacher's training length"),
    "inputs": Sweep("Student inputs", "what the students see",
                    _cells("student_inputs", ("uniform", "gaussian", "mnist", "fashion")),
                    "noise beats real digits (54.9% vs 15.1%)"),
    "fashion": Sweep("Fashion-MNIST", "teacher's dataset", _cells("dataset", ("mnist", "fashion")),
                     "transfer also on Fashion-MNIST"),
    "ablation": Sweep("Projection ablation", "direction removed from each student step",
                      _cells("ablate", ("none", "teacher", "random")),
                      "removing the teacher-update direction should stop transfer; a random one should not"),
    "liminal": Sweep("Liminal training", "lambda (teacher's aux KL to its init)",
                     _cells("liminal", (0.0, 0.1, 1.0, 10.0), lambda v: f"{v:g}"),
                     "liminal training as a defence"),
    "heads": Sweep("Head compatibility", "student layers re-initialized",
                   (("none", ()), ("hidden", (("reinit", "hidden"),)), ("heads", (("reinit", "heads"),))), ""),
    "alignment": Sweep("Per-step alignment", "student step", (("aligned", (("log_alignment", True),)),),
                       "gradient alignment between distillation and the teacher's task"),
}
# figure-only sweeps do not enter the transfer map twice: "alignment" repeats the baseline with a per-step log
MAP_EXCLUDE = ("alignment",)


def base_config(preset: str, **kw) -> MnistConfig:
    """``full``: the paper's Fig. 10 protocol with 25 runs per cell. ``quick``: 2 runs and 10,240 noise images (10
    student steps per epoch) per cell, an end-to-end check too small for conclusions. ``tiny``: 2 runs of 1 epoch on
    2,048 noise images (tests). ``kw`` overrides (e.g.
    ``chunk_size``: a multiple of the device count shards the runs over the devices)."""
    if preset == "full":
        return MnistConfig(**{**dict(runs=25, chunk_size=25), **kw})
    if preset == "quick":
        return MnistConfig(**{**dict(runs=2, chunk_size=2, n_noise=10_240), **kw})
    if preset == "tiny":
        return MnistConfig(**{**dict(runs=2, chunk_size=2, epochs=1, n_noise=2048), **kw})
    raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def check_sweep(name: str) -> Sweep:
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; choose one of {', '.join(SWEEPS)}")
    return SWEEPS[name]


def cell_configs(name: str, preset: str, **kw) -> list[tuple[str, MnistConfig]]:
    """(label, config) of every cell of sweep ``name``; ``kw`` (e.g. ``data_dir``, ``seed``) applies to all."""
    sweep = check_sweep(name)
    base = base_config(preset, **kw)
    return [(label, dataclasses.replace(base, **dict(over))) for label, over in sweep.cells]


def _stat(v) -> dict:
    v = np.asarray(v, float)
    return {"mean": float(np.mean(v)), "ci95": bootstrap_ci(v)}


def summarize_cell(res: dict) -> dict:
    """The numbers of one cell from the experiment's results: per student, accuracy, transfer (accuracy minus
    chance), first-step gradient projection and cosine, whole-update cosine, final imitation loss; the teacher's
    accuracy; per-step alignment curves when logged."""
    pr = res["per_run"]
    out = {"teacher_accuracy": _stat(pr["teacher"]["accuracy"]),
           "reference_accuracy": _stat(pr["reference"]["accuracy"]), "students": {}}
    for name in SWEEP_STUDENTS:
        d = pr[name]
        out["students"][name] = {
            "accuracy": _stat(d["accuracy"]),
            "transfer": _stat(np.asarray(d["accuracy"], float) - CHANCE),
            "first_step_projection": _stat(d["first_step_gradient_projection"]),
            "first_step_cos": _stat(d["first_step_gradient_cos"]),
            "total_update_cos": _stat(d["total_update_cos"]),
            "final_imitation_loss": _stat(d["final_imitation_loss"]),
        }
        if "alignment_curve" in d:
            a = np.asarray(d["alignment_curve"], float)  # runs x steps
            out["students"][name]["alignment_curve"] = {"mean": a.mean(0).tolist(),
                                                        "ci95": [bootstrap_ci(a[:, j]) for j in range(a.shape[1])]}
    return out


def sweep_name(name: str, preset: str, seed: int = 0) -> str:
    return f"mnist_sweep_{name}_{preset}_seed{seed}"


STACK_RUNS = 100  # at most this many runs per stacked batch (4 cells of 25 runs: the paper protocol's 100)


def stack_groups(configs: list[MnistConfig], max_runs: int = STACK_RUNS) -> list[list[int]]:
    """Which cells train together (``experiment.run_stacked``): those with one ``MnistConfig.stack_key`` (the same
    shapes and compiled step; they differ only in the students' start or ablation direction), in sweep order, at
    most ``max_runs`` runs per batch (one chunk of each cell). ``max_runs`` below a chunk: every cell alone. A cell
    with the stacked knobs at their defaults trains alone: stacking changes a batch's size, and with it the rounding."""
    by_key: dict[tuple, list[int]] = {}
    groups = []
    seen = set()
    for i, c in enumerate(configs):
        if c.fingerprint() in seen:  # the same cell twice (a sweep-wide override): alone, as before stacking
            groups.append([i])
        elif c.fingerprint() == c.stack_key()[0]:  # the stacked knobs at their defaults: the Fig. 10 protocol itself,
            groups.append([i])  # alone, so that its numbers are `python -m mnist_mlp`'s bit for bit
        else:
            by_key.setdefault(c.stack_key(), []).append(i)
        seen.add(c.fingerprint())
    for members in by_key.values():
        per = max(1, max_runs // min(experiment.chunk_size(configs[members[0]]), configs[members[0]].runs))
        groups += [members[j:j + per] for j in range(0, len(members), per)]
    return sorted(groups)


def run_sweep(name: str, preset: str = "quick", *, out_dir="runs", resume: bool = False, progress: bool = True,
              stack_runs: int = STACK_RUNS, **kw) -> dict:
    """Every cell of sweep ``name`` (each resumable through the experiment's chunk files under ``out_dir/sweeps``);
    returns the sweep's JSON-ready result. Cells whose shapes agree train as one vmapped batch (``stack_groups``;
    ``stack_runs`` caps its runs). A cell whose students diverge is recorded as diverged, not dropped."""
    sweep = check_sweep(name)
    configs = cell_configs(name, preset, **kw)
    rows: list[dict] = [{"label": label, "overrides": dict(over), "config": config.science_dict(),
                         "fingerprint": config.fingerprint()}
                        for (label, config), (_, over) in zip(configs, sweep.cells, strict=True)]
    label_of = {experiment.run_name(c): label for label, c in configs}
    order = {d: j for j, d in enumerate(label_of)}
    for group in stack_groups([c for _, c in configs], stack_runs):
        try:
            results = experiment.run_stacked([configs[i][1] for i in group], Path(out_dir) / "sweeps",
                                             resume=resume, progress=progress)
        except FloatingPointError as e:  # the teachers the group shares
            results = [e] * len(group)
        for i, res in zip(group, results, strict=True):
            row = rows[i]
            if isinstance(res, FloatingPointError):
                row.update(diverged=str(res))
                continue
            # compute time summed over the cell's chunk files, so a resumed sweep reports what training took, not how
            # long loading it took. A stacked chunk's student time is shared equally; teachers copied from a group's
            # first cell count 0 s. None when a chunk file has no time (older code): unknown, not zero.
            secs = [res["timings"].get(f"{phase}_compute_s") for phase in ("teachers", "students")]
            row.update(summarize_cell(res), compute_s=None if None in secs else float(sum(secs)))
            # the cells a chunk of this one was trained with, as its chunk files record it (not merely grouped now),
            # in the sweep's order
            stacked = [label_of.get(d, d) for d in sorted(res.get("stacked_with", []), key=lambda d: order.get(d, -1))]
            if stacked:
                row["stacked_with"] = stacked
    secs = [r["compute_s"] for r in rows if "diverged" not in r]
    return {"sweep": name, "title": sweep.title, "axis": sweep.axis, "published": sweep.published, "preset": preset,
            "runs_per_cell": configs[0][1].runs, "cells": rows,
            "compute_s": None if None in secs else float(sum(secs))}


def transfer_map(sweeps: list[dict], *, predictors=("first_step_projection", "first_step_cos", "total_update_cos"),
                 students=("aux_same", "aux_other"), n_boot: int = 2000, seed: int = 0) -> dict:
    """Each (cell, aux student) of the finished sweeps as a point (predictor, transfer); per predictor, Spearman's r
    over the points and its bootstrap CI, resampling whole cells (a cell's students share its teachers). Identical
    cells of different sweeps count once (one fingerprint, one run folder). The same, over the same-init students
    alone, in ``correlations_same_init``."""
    seen, points = set(), []
    pooled = [sw for sw in sweeps if sw["sweep"] not in MAP_EXCLUDE]
    for sw in pooled:
        for cell in sw["cells"]:
            if "diverged" in cell or cell["fingerprint"] in seen:
                continue
            seen.add(cell["fingerprint"])
            for st in students:
                d = cell["students"][st]
                points.append({"sweep": sw["sweep"], "label": cell["label"], "cell": cell["fingerprint"],
                               "student": st, "transfer": d["transfer"]["mean"],
                               **{p: d[p]["mean"] for p in predictors}})
    same = [p for p in points if p["student"] == "aux_same"]
    # Pooled, most of the rank correlation is the split between shared and different inits (the latter at chance);
    # among the same-init students alone it asks whether the quantity predicts how MUCH transfers.
    return {"sweeps": [sw["sweep"] for sw in pooled], "points": points, "n": len(points), "n_cells": len(seen),
            "correlations": _spearman_by_cell(points, predictors, n_boot, seed),
            "n_same_init": len(same), "correlations_same_init": _spearman_by_cell(same, predictors, n_boot, seed)}


def _spearman_by_cell(points: list[dict], predictors, n_boot: int, seed: int) -> dict:
    """Per predictor, Spearman's r of (predictor, transfer) over ``points`` and its bootstrap CI over whole cells.
    A point whose predictor is undefined (None: the cosine of a student that never moved) is left out of that one."""
    out = {}
    for pred in predictors:
        have = [p for p in points if p[pred] is not None]
        r = spearman_ci([p[pred] for p in have], [p["transfer"] for p in have], groups=[p["cell"] for p in have],
                        n_boot=n_boot, seed=seed)
        if r:  # too few points, or a constant: no rank correlation
            out[pred] = r
    return out


def load_sweeps(folder, preset: str, seed: int = 0) -> list[dict]:
    """The finished sweeps of ``preset`` in ``folder`` (their JSON files), in SWEEPS order."""
    out = []
    for name in SWEEPS:
        p = Path(folder) / f"{sweep_name(name, preset, seed)}.json"
        if p.exists():
            out.append(load_json(p))
    return out


def save_sweep(result: dict, folder, seed: int = 0) -> Path:
    path = Path(folder) / f"{sweep_name(result['sweep'], result['preset'], seed)}.json"
    save_json(path, result)
    return path
