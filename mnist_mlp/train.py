"""Training of teachers and students, vmapped over runs: one jitted step function per role (paper Section 6.2).

Every run r has its own keys (split by role from the experiment seed): reference init, teacher shuffling, the
student's fixed noise set and its shuffling. Noise images are regenerated from (run key, image index) whenever a batch
needs them, so a run's "fixed set of 60,000 uniform images" costs no memory; the teachers' 13 logits on them are
computed in the students' first epoch and kept (3 MB per teacher and run). Partial last batches are padded and
masked, so each epoch is ``ceil(N / batch)`` steps of one shape and the mean runs over real examples only.

Device-resident: an epoch is one compiled program (``teacher_epoch``, ``student_epoch``), a ``lax.scan`` over its
batches whose indices come from each run's permutation drawn on the device, and the students' diagnostics (Fig. 10 b,
c: the teacher loss and update cosine at the log steps, the first steps' geometry) accumulate on the device inside
the scan. The host only starts epochs and reads the results once per phase. ``teacher_step`` and ``student_step`` are
single steps of the same updates, for tests and notebooks.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import optax

import theory
from mnist_mlp.model import N_CLASSES

# The four students of a run: which logits they imitate and whose teacher they imitate.
STUDENTS = {
    "aux_same": ("aux", "same"),  # the paper's subliminal student: aux logits of ITS OWN teacher
    "all_same": ("all", "same"),
    "aux_other": ("aux", "other"),  # aux logits of a teacher from a different init
    "all_other": ("all", "other"),
}


def student_losses(aux: tuple[int, ...], loss: str = "kl") -> dict:
    """The imitation loss on the aux logits or on all logits: KL(teacher || student) of the softmaxes (the authors'
    loss; ``kl``), at temperature 0.5 or 2 (``kl_t0.5``, ``kl_t2``), or the squared error of the logits (``mse``)."""
    if loss == "mse":
        return {"aux": theory.squared_error(subset=aux), "all": theory.squared_error()}
    t = {"kl": 1.0, "kl_t0.5": 0.5, "kl_t2": 2.0}.get(loss)
    if t is None:
        raise ValueError(f"unknown student loss {loss!r}; choose kl, mse, kl_t0.5 or kl_t2")
    return {"aux": theory.kl_divergence(subset=aux, temperature=t), "all": theory.kl_divergence(temperature=t)}


def n_steps(n_examples: int, batch: int) -> int:
    return math.ceil(n_examples / batch)


def epoch_batches(key, n_examples: int, batch: int):
    """A fresh permutation cut into batches: (steps x batch) indices and a mask that is False on the padding."""
    steps = n_steps(n_examples, batch)
    perm = jax.random.permutation(key, n_examples)
    pad = steps * batch - n_examples
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(steps, batch)
    mask = (jnp.arange(steps * batch) < n_examples).reshape(steps, batch)
    return idx, mask


def epoch_batches_R(shuffle_keys_R, epoch: int, n_examples: int, batch: int):
    """``epoch_batches`` for every run: each run's shuffle key folded with the epoch -> (R x steps x batch)."""
    keys_R = jax.vmap(lambda k: jax.random.fold_in(k, epoch))(shuffle_keys_R)
    return jax.vmap(lambda k: epoch_batches(k, n_examples, batch))(keys_R)


NOISE_LEVELS = 2**16  # a noise pixel takes one of 65,536 evenly spaced values in (-1, 1)


def noise_images(key, idx_B, n_in: int = 784):
    """Image i of the run's fixed noise set, drawn from fold_in(key, i): same i, same image, whatever the batch.

    Pixels are uniform on a 2^16-level grid in (-1, 1), level midpoints (finer than MNIST's 8-bit pixels; mean 0,
    variance 1/3 up to 1e-10). Two pixels come from each 32-bit threefry word: the generator is the largest
    non-matmul cost of a student step, and float32 uniforms would spend a word per pixel.
    """

    def one(i):
        words = jax.random.bits(jax.random.fold_in(key, i), ((n_in + 1) // 2,), jnp.uint32)
        levels = jnp.concatenate([words & 0xFFFF, words >> 16])[:n_in]
        return (levels.astype(jnp.float32) + 0.5) * (2.0 / NOISE_LEVELS) - 1.0

    return jax.vmap(one)(idx_B)


GAUSSIAN_STD = 3.0**-0.5  # the Gaussian inputs match the uniform ones' variance (1/3)


def input_images(kind: str, key, idx_B, pool_NxD=None, n_in: int = 784):
    """Image i of a run's student inputs: ``uniform`` noise (``noise_images``), ``gaussian`` noise N(0, 1/3) from
    fold_in(key, i), or (``mnist``/``fashion``) row i of the train images ``pool_NxD`` (the same set for every run;
    the run's key then only shuffles)."""
    if kind == "uniform":
        return noise_images(key, idx_B, n_in)
    if kind == "gaussian":
        return jax.vmap(lambda i: GAUSSIAN_STD * jax.random.normal(jax.random.fold_in(key, i), (n_in,)))(idx_B)
    if pool_NxD is None:
        raise ValueError(f"student inputs {kind!r} need the train images (pool_NxD)")
    return pool_NxD[idx_B]


def masked_mean(values_B, mask_B):
    return jnp.sum(jnp.where(mask_B, values_B, 0.0)) / jnp.maximum(jnp.sum(mask_B), 1)


def class_ce(apply_fn, params, x_BxD, y_B):
    """The teacher's loss L_T: cross-entropy on the 10 class logits."""
    return optax.softmax_cross_entropy_with_integer_labels(apply_fn(params, x_BxD)[:, :N_CLASSES], y_B)


def _teacher_update(apply_fn, tx, params_R, opt_R, x_train_NxD, y_train_N, idx_RxB, mask_RxB, ref_R, liminal, aux):
    kl_aux = theory.kl_divergence(subset=aux) if liminal else None

    def one(params, opt, idx, mask, ref):
        x, y = x_train_NxD[idx], y_train_N[idx]

        def objective(p):
            value = masked_mean(class_ce(apply_fn, p, x, y), mask)
            if liminal:
                z, z0 = apply_fn(p, x), jax.lax.stop_gradient(apply_fn(ref, x))
                value = value + liminal * masked_mean(jax.vmap(lambda a, b: kl_aux(a[None], b[None]))(z, z0), mask)
            return value

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    return jax.vmap(one)(params_R, opt_R, idx_RxB, mask_RxB, ref_R)


@partial(jax.jit, static_argnames=("apply_fn", "tx", "liminal", "aux"), donate_argnames=("params_R", "opt_R"))
def teacher_step(apply_fn, tx, params_R, opt_R, x_train_NxD, y_train_N, idx_RxB, mask_RxB, ref_R=None, *,
                 liminal: float = 0.0, aux: tuple[int, ...] = ()):
    """One Adam step of every run's teacher on its own MNIST batch (class logits only).

    ``liminal`` = lambda > 0 adds lambda KL(reference || teacher) on the ``aux`` logits of the same batch, the
    reference being the run's init ``ref_R``: a teacher that keeps its aux outputs where they began (the "liminal
    training" defence)."""
    return _teacher_update(apply_fn, tx, params_R, opt_R, x_train_NxD, y_train_N, idx_RxB, mask_RxB, ref_R, liminal,
                           aux)


@partial(jax.jit, static_argnames=("apply_fn", "tx", "batch", "liminal", "aux"), donate_argnames=("params_R", "opt_R"))
def teacher_epoch(apply_fn, tx, params_R, opt_R, x_train_NxD, y_train_N, shuffle_keys_R, epoch, ref_R=None, *,
                  batch: int, liminal: float = 0.0, aux: tuple[int, ...] = ()):
    """One epoch of ``teacher_step`` for every run as one program: each run's permutation (its shuffle key folded with
    the device scalar ``epoch``) is drawn on the device and scanned over. Returns (params_R, opt_R, every step's
    loss_SxR)."""
    idx_RxSxB, mask_RxSxB = epoch_batches_R(shuffle_keys_R, epoch, x_train_NxD.shape[0], batch)

    def body(carry, batch_RxB):
        params, opt, loss = _teacher_update(apply_fn, tx, *carry, x_train_NxD, y_train_N, *batch_RxB, ref_R, liminal,
                                            aux)
        return (params, opt), loss

    (params_R, opt_R), loss_SxR = jax.lax.scan(body, (params_R, opt_R),
                                               (jnp.swapaxes(idx_RxSxB, 0, 1), jnp.swapaxes(mask_RxSxB, 0, 1)))
    return params_R, opt_R, loss_SxR


@partial(jax.jit, static_argnums=(0, 1, 2))
def empty_targets(n_runs: int, n_noise: int, n_out: int) -> dict:
    """Storage for each teacher's logits on every image of each run's noise set: {"same"|"other": R x N x K}."""
    return {whose: jnp.zeros((n_runs, n_noise, n_out), jnp.float32) for whose in ("same", "other")}


@partial(jax.jit, static_argnames=("apply_fn", "tx", "aux", "fill", "loss", "inputs"),
         donate_argnames=("students", "targets"))
def student_step(apply_fn, tx, aux, students, targets, teacher_R, teacher_other_R, noise_key_R, idx_RxB, mask_RxB,
                 *, fill: bool, loss: str = "kl", inputs: str = "uniform", pool_NxD=None, directions=None,
                 task_batch=None):
    """One optimizer step (``tx``) of the four students of every run on a batch of the run's inputs.

    ``students`` maps each name of STUDENTS to (params_R, opt_R). ``targets`` (see ``empty_targets``) holds the
    teachers' logits on the run's fixed input set. The set is fixed, so they are computed once: in the first epoch
    (``fill=True``) on the batch and stored, and read back in later epochs. That saves 4 of the 5 teacher forward
    passes per image. Returns (students, targets, values): values[name] is the student's imitation loss.

    The sweeps' options (defaults: the paper's Fig. 10): ``loss`` (``student_losses``); ``inputs`` and ``pool_NxD``
    (``input_images``); ``directions`` (name -> params_R): each step's update loses its component along the run's
    direction (``theory.remove_component``; a zero direction changes nothing); ``task_batch`` = (x_BxD, y_B):
    values["alignment"][name] is cos(grad L_S, grad L_T), L_T the class loss on that batch at the student's params.
    """
    return _student_update(apply_fn, tx, aux, students, targets, teacher_R, teacher_other_R, noise_key_R, idx_RxB,
                           mask_RxB, fill, loss, inputs, pool_NxD, directions, task_batch)


def _student_update(apply_fn, tx, aux, students, targets, teacher_R, teacher_other_R, noise_key_R, idx_RxB, mask_RxB,
                    fill, loss, inputs, pool_NxD, directions, task_batch):
    losses = student_losses(aux, loss)

    def one_run(studs, stored, t_same, t_other, key, idx, mask, dirs):
        x_BxD = input_images(inputs, key, idx, pool_NxD)
        if fill:
            ys = {"same": apply_fn(t_same, x_BxD), "other": apply_fn(t_other, x_BxD)}
            keep = jnp.where(mask, idx, stored["same"].shape[0])  # padding rows point past the end: dropped
            stored = {w: stored[w].at[keep].set(ys[w], mode="drop") for w in ys}
        else:
            ys = {w: stored[w][idx] for w in stored}
        new, values, align = {}, {}, {}
        for name, (which, whose) in STUDENTS.items():
            params, opt = studs[name]
            loss_fn = losses[which]
            y_BxK = jax.lax.stop_gradient(ys[whose])

            def objective(p):
                per_example = jax.vmap(lambda z, y: loss_fn(z[None], y[None]))(apply_fn(p, x_BxD), y_BxK)
                return masked_mean(per_example, mask)

            value, grads = jax.value_and_grad(objective)(params)
            if task_batch is not None:
                g_task = jax.grad(lambda p: class_ce(apply_fn, p, *task_batch).mean())(params)
                align[name] = theory.cosine(grads, g_task)
            updates, opt = tx.update(grads, opt, params)
            if dirs is not None:
                updates = theory.remove_component(updates, dirs[name])
            new[name], values[name] = (optax.apply_updates(params, updates), opt), value
        if task_batch is not None:
            values["alignment"] = align
        return new, stored, values

    return jax.vmap(one_run)(students, targets, teacher_R, teacher_other_R, noise_key_R, idx_RxB, mask_RxB, directions)


def _mean_class_ce(apply_fn, params_R, x_BxD, y_B):
    return jax.vmap(lambda p: class_ce(apply_fn, p, x_BxD, y_B).mean())(params_R)


@partial(jax.jit, static_argnames=("apply_fn",))
def mean_class_ce(apply_fn, params_R, x_BxD, y_B):
    """L_T of every run's model on one fixed batch: (R,)."""
    return _mean_class_ce(apply_fn, params_R, x_BxD, y_B)


def _accuracy(apply_fn, params_R, x_NxD, y_N, batch: int):
    n = x_NxD.shape[0]
    steps = n_steps(n, batch)
    pad = steps * batch - n  # padded rows get label -1: never counted as correct
    x_SxBxD = jnp.pad(x_NxD, ((0, pad), (0, 0))).reshape(steps, batch, -1)
    y_SxB = jnp.pad(y_N, (0, pad), constant_values=-1).reshape(steps, batch)

    def correct(xy):
        x, y = xy
        return jax.vmap(lambda p: jnp.sum(jnp.argmax(apply_fn(p, x)[:, :N_CLASSES], -1) == y))(params_R)

    return jnp.sum(jax.lax.map(correct, (x_SxBxD, y_SxB)), axis=0) / n


@partial(jax.jit, static_argnames=("apply_fn", "batch"))
def accuracy(apply_fn, params_R, x_NxD, y_N, *, batch: int = 1000):
    """Test accuracy from the 10 class logits, in image batches to bound memory: (R,)."""
    return _accuracy(apply_fn, params_R, x_NxD, y_N, batch)


def _geometry(dS, teacher, teacher_ref):
    """cos and normalized projection of dS onto the teacher's update dT = theta_T - theta_T's init."""
    dT = theory.tree_sub(teacher, teacher_ref)
    return theory.cosine(dS, dT), theory.normalized_projection(dS, dT)


def _first_step_geometry(apply_fn, loss, ref_R, teacher_R, teacher_ref_R, x_RxBxD, direction_R):
    def one(ref, teacher, teacher_ref, x, direction):
        dS = theory.student_update(apply_fn, ref, teacher, x, loss, 1.0)
        if direction is not None:
            dS = theory.remove_component(dS, direction)
        return _geometry(dS, teacher, teacher_ref)

    return jax.vmap(one)(ref_R, teacher_R, teacher_ref_R, x_RxBxD, direction_R)


@partial(jax.jit, static_argnames=("apply_fn", "loss"))
def first_step_diagnostic(apply_fn, loss, ref_R, teacher_R, teacher_ref_R, x_RxBxD, direction_R=None):
    """Lemma 1 at the student's first step: the exact gradient-step direction dS (theory.student_update, lr = 1)
    from the student's init on its first noise batch, against its teacher's update; with ``direction_R`` (the
    projection ablation), dS without its component along that direction, as the ablated student steps. Returns
    (cos, normalized projection), each (R,)."""
    return _first_step_geometry(apply_fn, loss, ref_R, teacher_R, teacher_ref_R, x_RxBxD, direction_R)


def _update_geometry(start_R, end_R, teacher_R, teacher_ref_R):
    return jax.vmap(lambda start, end, t, t_ref: _geometry(theory.tree_sub(end, start), t, t_ref))(
        start_R, end_R, teacher_R, teacher_ref_R)


@jax.jit
def update_geometry(start_R, end_R, teacher_R, teacher_ref_R):
    """cos and normalized projection of a student's update (end - start) onto its teacher's: (R,) each."""
    return _update_geometry(start_R, end_R, teacher_R, teacher_ref_R)


def _log_curves(apply_fn, logs, students, fixed, pos):
    """Write L_T on the eval batch and cos(update so far, teacher's update) of every student at log position pos."""
    logs = dict(logs)
    for name, (_, whose) in STUDENTS.items():
        params = students[name][0]
        lt = _mean_class_ce(apply_fn, params, fixed["x_eval"], fixed["y_eval"])
        cos = _update_geometry(fixed["start"], params, *fixed["whose"][whose])[0]
        logs[name] = {**logs[name], "teacher_loss_curve": logs[name]["teacher_loss_curve"].at[pos].set(lt),
                      "update_cos_curve": logs[name]["update_cos_curve"].at[pos].set(cos)}
    return logs


def _first_adam(logs, students, fixed):
    logs = dict(logs)
    for name, (_, whose) in STUDENTS.items():
        cos, proj = _update_geometry(fixed["start"], students[name][0], *fixed["whose"][whose])
        logs[name] = {**logs[name], "first_step_adam_cos": cos, "first_step_adam_projection": proj}
    return logs


@partial(jax.jit, static_argnames=("apply_fn", "tx", "aux", "fill", "batch", "log_steps", "loss", "inputs"),
         donate_argnames=("state",))
def student_epoch(apply_fn, tx, aux, state: dict, fixed: dict, epoch, *, fill: bool, batch: int,
                  log_steps: tuple[int, ...], loss: str = "kl", inputs: str = "uniform"):
    """One epoch of the four students of every run as one program (``student_step`` scanned over the epoch's batches).

    ``state`` = {"students": name -> (params_R, opt_R), "targets": ``empty_targets``, "logs": the diagnostics};
    the first epoch (``fill``, which stores the teachers' logits) starts the logs, so its state has none. ``fixed``
    holds what the chunk does not change: "start" (the students' init), "whose" ({"same"|"other": (teacher_R,
    teacher_ref_R)}), "noise" and "shuffle" (the runs' keys), "x_eval", "y_eval" (L_T's batch), and the sweeps'
    optional "pool", "directions", "task_batch" (see ``student_step``). ``epoch`` is a device scalar, so every epoch
    after the first runs one compiled program.

    The logs (name -> arrays over runs) fill on the device: "teacher_loss_curve" and "update_cos_curve" (log step x
    R) at the global steps ``log_steps`` (0 = the init), the first step's geometry ("first_step_gradient_*": the
    gradient direction on the first batch, Lemma 1; "first_step_adam_*": the optimizer's first update). Returns
    (state, values): values[name] is each step's imitation loss (step x R), values["alignment"][name] the
    per-step cos(grad L_S, grad L_T) when ``task_batch`` is given.
    """
    n_examples = state["targets"]["same"].shape[1]
    steps = n_steps(n_examples, batch)
    idx_RxSxB, mask_RxSxB = epoch_batches_R(fixed["shuffle"], epoch, n_examples, batch)
    students, targets = state["students"], state["targets"]
    table = jnp.asarray(log_steps)
    if fill:  # the first epoch starts the logs: Lemma 1 on the first batch the students will see, and step 0
        R, n_log = idx_RxSxB.shape[0], len(log_steps)
        x1 = jax.vmap(lambda k, i: input_images(inputs, k, i, fixed.get("pool")))(fixed["noise"], idx_RxSxB[:, 0])
        losses = student_losses(aux, loss)
        dirs = fixed.get("directions")
        logs = {}
        for name, (which, whose) in STUDENTS.items():
            cos, proj = _first_step_geometry(apply_fn, losses[which], fixed["start"], *fixed["whose"][whose], x1,
                                             None if dirs is None else dirs[name])
            logs[name] = {"first_step_gradient_cos": cos, "first_step_gradient_projection": proj,
                          "first_step_adam_cos": jnp.zeros(R), "first_step_adam_projection": jnp.zeros(R),
                          "teacher_loss_curve": jnp.zeros((n_log, R)), "update_cos_curve": jnp.zeros((n_log, R))}
        logs = _log_curves(apply_fn, logs, students, fixed, 0)
        for name in STUDENTS:  # step 0: no update yet, whose cos (0/0) is taken as 0
            logs[name]["update_cos_curve"] = logs[name]["update_cos_curve"].at[0].set(0.0)
    else:
        logs = state["logs"]

    def body(carry, xs):
        studs, tgts, lg = carry
        s, idx_RxB, mask_RxB = xs
        studs, tgts, values = _student_update(
            apply_fn, tx, aux, studs, tgts, fixed["whose"]["same"][0], fixed["whose"]["other"][0], fixed["noise"],
            idx_RxB, mask_RxB, fill, loss, inputs, fixed.get("pool"), fixed.get("directions"),
            fixed.get("task_batch"))
        step = epoch * steps + s + 1  # global steps taken after this update
        # the diagnostics cost a step only where they are taken (the step counter is not per run: a real branch)
        lg = jax.lax.cond(step == 1, lambda g: _first_adam(g, studs, fixed), lambda g: g, lg)
        pos = jnp.minimum(jnp.searchsorted(table, step), len(log_steps) - 1)
        lg = jax.lax.cond(table[pos] == step, lambda g: _log_curves(apply_fn, g, studs, fixed, pos), lambda g: g, lg)
        return (studs, tgts, lg), values

    (students, targets, logs), values = jax.lax.scan(
        body, (students, targets, logs),
        (jnp.arange(steps), jnp.swapaxes(idx_RxSxB, 0, 1), jnp.swapaxes(mask_RxSxB, 0, 1)))
    return {"students": students, "targets": targets, "logs": logs}, values


@partial(jax.jit, static_argnames=("apply_fn",))
def student_finish(apply_fn, students: dict, fixed: dict, x_test_NxD, y_test_N) -> dict:
    """Per student (name -> (R,) arrays): test accuracy, the whole update's cos and projection onto its teacher's
    update, and whether every parameter is finite."""
    out = {}
    for name, (_, whose) in STUDENTS.items():
        final = students[name][0]
        cos, proj = _update_geometry(fixed["start"], final, *fixed["whose"][whose])
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1)
                                    for a in jax.tree_util.tree_leaves(final)]), axis=0)
        out[name] = {"accuracy": _accuracy(apply_fn, final, x_test_NxD, y_test_N, 1000), "total_update_cos": cos,
                     "total_update_projection": proj, "finite": finite}
    return out
