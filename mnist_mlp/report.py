"""The Fig. 10 experiment's results JSON (paper Section 6.2): per-run numbers, means with 95% bootstrap CIs, the
first-step and teacher-loss diagnostics, timings and versions."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax

from mnist_mlp import train
from mnist_mlp.config import MnistConfig
from results import environment
from theory.stats import bootstrap_ci


def assemble(config: MnistConfig, acc_ref, acc_teacher, chunks: list[dict], timings: dict) -> dict:
    """Per-run numbers, means with 95% bootstrap CIs, timings and versions: the JSON the figure is drawn from."""
    per_run = {"reference": {"accuracy": list(acc_ref)}, "teacher": {"accuracy": list(acc_teacher)}}
    for name in train.STUDENTS:
        per_run[name] = {}
        # a quantity logged by every chunk (a chunk resumed from older code may lack a newer log)
        keys = set.intersection(*(set(c["students"][name]) for c in chunks))
        for c in chunks:
            for key, v in c["students"][name].items():
                if key not in keys:
                    continue
                if key.endswith("_curve"):  # (log step) x (runs of chunk) -> runs x log steps
                    v = np.asarray(v).T.tolist()
                per_run[name].setdefault(key, []).extend(v)
    summary = {}
    for model, d in per_run.items():
        summary[model] = {}
        for key in ("accuracy", "total_update_cos", "total_update_projection", "first_step_gradient_cos",
                    "first_step_gradient_projection", "first_step_adam_cos"):
            if key in d:
                v = np.asarray(d[key], float)
                summary[model][key] = {"mean": float(v.mean()), "ci95": bootstrap_ci(v), "min": float(v.min()),
                                       "max": float(v.max())}
        if "teacher_loss_curve" in d:
            curve = np.asarray(d["teacher_loss_curve"], float)
            change = curve[:, 1] - curve[:, 0]
            summary[model]["teacher_loss_first_step_change"] = {
                "mean": float(change.mean()), "ci95": bootstrap_ci(change),
                "fraction_negative": float(np.mean(change < 0))}
    steps_total = config.epochs_student * train.n_steps(config.n_noise, config.batch_size)
    model_epochs = config.runs * (config.epochs_teacher + config.epochs_student * len(train.STUDENTS))
    return {
        "config": dataclasses.asdict(config),
        "fingerprint": config.fingerprint(),
        "pairing": [p for c in chunks for p in c["paired_teacher"]],
        # the run folders of the cells any chunk was trained with as one vmapped batch (sweeps.stack_groups)
        "stacked_with": sorted({d for c in chunks for d in c.get("stacked_with", [])}),
        "log_steps": chunks[0]["log_steps"],
        "per_run": per_run,
        "summary": summary,
        "timings": {**timings, "model_epochs_per_s": model_epochs / max(
                        (timings.get("teachers_compute_s") or 0) + (timings.get("students_compute_s") or 0)
                        or timings.get("total_s", 0), 1e-9),
                    "steps_per_student_run": steps_total},
        "versions": environment(jax=jax.__version__, jaxlib=getattr(jax.lib, "__version__", ""),
                                optax=optax.__version__, numpy=np.__version__, backend=jax.default_backend(),
                                device=str(jax.devices()[0])),
    }
