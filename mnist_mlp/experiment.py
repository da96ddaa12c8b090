"""The MNIST auxiliary-logit experiment of paper Section 6.2 (Fig. 10), with the projection diagnostic of Section 6.

Per run r: a reference init theta_0; a teacher trained from it on MNIST (class logits only); four students that start
from theta_0 and imitate on uniform noise either the 3 auxiliary logits or all 13 logits of either their own teacher
("same": shared init) or the teacher of run pi(r) ("other": a different init), pi a random derangement, so no student
is ever paired with its own teacher. The students never see a digit, and the aux students never a class logit.

Phase 1 trains all teachers, phase 2 the students; both in chunks of runs trained at once (vmap). Each finished
chunk is written atomically under ``out_dir/<run name>/``, so ``resume=True`` skips it after an interruption.
A chunk's runs are sharded over the local devices; several processes (``initialize_distributed``: hosts, or one
process per GPU) split the chunks between them through the shared run folder.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

import theory
from mnist_mlp import train
from mnist_mlp.config import STACKED_KNOBS, MnistConfig
from mnist_mlp.model import MLP, apply_fn_of
from mnist_mlp.report import assemble
from results import keep_freed_memory, load_arrays, load_json, load_meta, peak_rss_mb, save_arrays, save_json

MODELS = ("reference", "teacher", *train.STUDENTS)
# Roles of the keys split from the one seed.
ROLES = {"init": 0, "teacher_shuffle": 1, "noise": 2, "student_shuffle": 3, "pairing": 4, "eval": 5,
         "student_init": 6, "ablation": 7}
ALIGNMENT_BATCH = 256  # task images on which grad L_T is taken at every student step (log_alignment)


def role_key(seed: int, role: str):
    return jax.random.fold_in(jax.random.key(seed), ROLES[role])


def run_keys(seed: int, role: str, runs) -> jax.Array:
    base = role_key(seed, role)
    return jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.asarray(list(runs)))


def derangement(key, n: int) -> np.ndarray:
    """A uniformly random permutation without fixed points (rejection sampling; ~e tries expected)."""
    if n < 2:
        raise ValueError("a derangement needs n >= 2")
    for attempt in range(10_000):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, attempt), n))
        if not np.any(perm == np.arange(n)):
            return perm
    raise RuntimeError("no derangement found")  # probability ~ (1 - 1/e)^10000


def run_name(config: MnistConfig) -> str:
    return f"mnist_{config.preset_name}_runs{config.runs}_seed{config.seed}_{config.fingerprint()}"


def _chunks(config: MnistConfig) -> list[range]:
    return [range(i, min(i + config.chunk_size, config.runs)) for i in range(0, config.runs, config.chunk_size)]


def _save_params(path: Path, params_R, extra: dict) -> None:
    flat, _ = jax.tree_util.tree_flatten_with_path(params_R)
    save_arrays(path, {jax.tree_util.keystr(p): np.asarray(a) for p, a in flat}, extra)


def _load_params(path: Path, like_R) -> tuple[object, dict]:
    arrays, meta = load_arrays(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(like_R)
    leaves = [jnp.asarray(arrays[jax.tree_util.keystr(p)]) for p, _ in flat]
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


@functools.lru_cache(maxsize=8)
def model_and_optimizer(hidden: tuple[int, ...], n_aux: int, lr: float):
    """(module, apply_fn, optax Adam) shared by all experiments of the same settings: the jitted steps take
    apply_fn and tx as static arguments, so reusing the same objects reuses the compiled steps."""
    module = MLP(hidden=hidden, n_aux=n_aux)
    return module, apply_fn_of(module), optax.adam(lr)


@functools.lru_cache(maxsize=8)
def student_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """The students' optax optimizer when it is not the teachers' Adam (cached: a static argument of the step)."""
    return theory.make_optimizer(name, lr)


class Experiment:
    """Holds the data, model and optimizer of one configuration; ``run()`` executes both phases."""

    def __init__(self, config: MnistConfig, out_dir, *, resume: bool = False, progress: bool = True,
                 keep_students: bool = False):
        """``keep_students``: keep every student's final parameters in ``final_students`` (name -> params_R) for a
        look at their predictions (teaching notebooks); off for large runs (1 MB per student and run).

        The process keeps the memory it frees from here on (``results.keep_freed_memory``): XLA's per-step buffers
        are then reused instead of being faulted in afresh at every step (same numbers, less system time)."""
        from mnist_mlp.data import default_data_dir, load_dataset

        keep_freed_memory()

        self.config, self.resume, self.progress, self.keep_students = config, resume, progress, keep_students
        self.final_students: dict[str, list] = {}
        self.teacher_source: Path | None = None  # a run folder whose matching teachers this one copies (a stack)
        self.dir = Path(out_dir) / run_name(config)
        root = config.data_dir or default_data_dir()
        xtr, ytr = load_dataset(config.dataset, root, split="train")
        xte, yte = load_dataset(config.dataset, root, split="test")
        self.x_train, self.y_train = jnp.asarray(xtr), jnp.asarray(ytr)
        self.x_test, self.y_test = jnp.asarray(xte), jnp.asarray(yte)
        # real images as the students' inputs (never their labels); noise inputs need no pool
        self.pool = (jnp.asarray(load_dataset(config.student_inputs, root, split="train")[0])
                     if config.student_inputs in ("mnist", "fashion") else None)
        self.module, self.apply_fn, self.tx = model_and_optimizer(tuple(config.hidden), config.n_aux, config.lr)
        s_lr = config.lr if config.student_lr is None else config.student_lr
        self.student_tx = (self.tx if (config.student_optimizer, s_lr) == ("adam", config.lr)
                           else student_optimizer(config.student_optimizer, s_lr))
        eval_idx = jax.random.choice(role_key(config.seed, "eval"), self.x_train.shape[0], (config.eval_subset,),
                                     replace=False)
        self.x_eval, self.y_eval = self.x_train[eval_idx], self.y_train[eval_idx]
        self.timings: dict[str, float] = {}
        self.chunk_seconds: dict[str, list] = {"teachers": [], "students": []}  # compute time of each chunk

    def references(self, runs):
        return jax.vmap(self.module.init_params)(run_keys(self.config.seed, "init", runs))

    def shard(self, tree, n_runs: int):
        """Place every leaf (leading axis: the chunk's runs) across the local devices, the run axis split over a 1-D
        mesh; jit then runs each device's runs where they live. A chunk whose size is not a multiple of the device
        count, and a single device, stay as they are."""
        devices = jax.local_devices()
        if len(devices) == 1:
            return tree
        if n_runs % len(devices):
            warnings.warn(f"a chunk of {n_runs} runs does not split evenly over {len(devices)} devices, so it runs on "
                          f"one; pass a chunk size that is a multiple of {len(devices)} to use them all", stacklevel=2)
            return tree
        sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
        return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding), tree)

    def student_starts(self, runs, ref):
        """The students' init: theta_0 itself (the paper), or theta_0 moved toward a fresh init xi of the same
        distribution, sqrt(1 - sigma^2) theta_0 + sigma xi (``init_sigma``: the variance stays the init's, and sigma
        = 1 is an independent init), and/or with the hidden layers or the output heads replaced by xi's
        (``reinit``)."""
        cfg = self.config
        if cfg.init_sigma == 0 and cfg.reinit == "none":
            return ref  # the shared init, bit for bit
        fresh = jax.vmap(self.module.init_params)(run_keys(cfg.seed, "student_init", runs))
        start = ref
        if cfg.init_sigma > 0:
            a, b = math.sqrt(1.0 - cfg.init_sigma**2), cfg.init_sigma
            start = jax.tree_util.tree_map(lambda r, f: a * r + b * f, ref, fresh)
        if cfg.reinit != "none":
            head = f"Dense_{len(cfg.hidden)}"  # the output layer: the 10 class and n_aux aux logits
            start = {k: fresh[k] if (k == head) == (cfg.reinit == "heads") else v for k, v in start.items()}
        return start

    def ablation_directions(self, runs, whose) -> dict | None:
        """Per student (name -> params_R): the direction its steps lose under ``ablate``: its teacher's update dT, or
        a Gaussian direction with dT's norm (``random``); None without ablation."""
        cfg = self.config
        if cfg.ablate == "none":
            return None
        out = {}
        for i, (name, (_, w)) in enumerate(train.STUDENTS.items()):
            teacher, teacher_ref = whose[w]
            dT = jax.tree_util.tree_map(jnp.subtract, teacher, teacher_ref)
            if cfg.ablate == "random":
                keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(run_keys(cfg.seed, "ablation", runs))
                dT = jax.vmap(_random_like)(keys, dT)
            out[name] = dT
        return out

    def _chunk_matches(self, saved: dict, runs: range) -> bool:
        """A saved chunk is reused only if it was made with the same settings for the same runs."""
        return saved.get("fingerprint") == self.config.fingerprint() and saved.get("runs") == [runs.start, runs.stop]

    # ---- phase 1: teachers -------------------------------------------------------------------------------
    def train_teachers(self, runs):
        cfg = self.config
        R = len(runs)
        params = self.shard(self.references(runs), R)
        ref = self.shard(self.references(runs), R) if cfg.liminal else None  # a copy: the step donates params
        opt = jax.vmap(self.tx.init)(params)
        shuffle = self.shard(run_keys(cfg.seed, "teacher_shuffle", runs), R)
        n = self.x_train.shape[0]
        steps = train.n_steps(n, cfg.batch_size)
        bar = tqdm(total=cfg.epochs_teacher * steps, desc=f"teachers {runs.start}-{runs.stop - 1}",
                   disable=not self.progress, leave=False)
        for epoch in range(cfg.epochs_teacher):
            idx_RxSxB, mask_RxSxB = self.shard(train.epoch_batches_R(shuffle, epoch, n, cfg.batch_size), R)
            for s in range(steps):
                params, opt, loss = train.teacher_step(self.apply_fn, self.tx, params, opt, self.x_train, self.y_train,
                                                       idx_RxSxB[:, s], mask_RxSxB[:, s], ref, liminal=cfg.liminal,
                                                       aux=self.module.aux_indices())
                bar.update()
        bar.close()
        if not np.all(np.isfinite(np.asarray(loss))):
            raise FloatingPointError(f"teacher loss became NaN/inf in runs {list(runs)}; lower the learning rate")
        return params

    def _teacher_chunk(self, k: int, runs, *, train_it: bool):
        """Chunk ``k``'s teachers and test accuracies: reused from its file when that matches, else trained and
        written (``train_it``), else None."""
        path = self.dir / f"teachers_{k:03d}.npz"
        if (self.resume or not train_it) and path.exists():
            p, meta = _load_params(path, self.references(runs))
            if self._chunk_matches(meta, runs):
                return p, meta
        if not train_it:
            return None
        if (self.resume or self.teacher_source) and (shared := self._shared_teachers(k, runs)) is not None:
            _save_params(path, *shared)  # this run folder stays complete on its own
            return shared
        tc = time.perf_counter()
        p = self.train_teachers(runs)
        meta = {"fingerprint": self.config.fingerprint(), "teacher_fingerprint": self.config.teacher_fingerprint(),
                "runs": [runs.start, runs.stop],
                "acc_reference": np.asarray(train.accuracy(self.apply_fn, self.references(runs), self.x_test,
                                                           self.y_test)).tolist(),
                "acc_teacher": np.asarray(train.accuracy(self.apply_fn, p, self.x_test, self.y_test)).tolist()}
        meta["seconds"] = time.perf_counter() - tc
        _save_params(path, p, meta)
        return p, meta

    def _shared_teachers(self, k: int, runs):
        """Chunk ``k``'s teachers from a run folder beside this one whose teachers were trained with the same
        teacher settings (``MnistConfig.teacher_fingerprint``) for the same runs, else None. A resumed sweep thus
        trains each set of teachers once; they are the same numbers as training them again. A stacked experiment
        (``teacher_source`` set) looks only in its group's first run folder."""
        want = [self.config.teacher_fingerprint(), [runs.start, runs.stop]]
        name = f"teachers_{k:03d}.npz"
        paths = [self.teacher_source / name] if self.teacher_source else sorted(self.dir.parent.glob(f"*/{name}"))
        for path in paths:
            if (path.exists() and path.parent != self.dir
                    and [(m := load_meta(path)).get("teacher_fingerprint"), m.get("runs")] == want):
                p, meta = _load_params(path, self.references(runs))
                # trained once: the copy's compute time is 0 (the source's stays in "trained_s")
                return p, {**meta, "fingerprint": self.config.fingerprint(), "reused_from": path.parent.name,
                           "seconds": 0.0, "trained_s": meta.get("trained_s", meta.get("seconds"))}
        return None

    def teachers(self):
        """All teachers (trained or loaded chunk by chunk) and their test accuracies. With several processes each
        trains its share of the chunks, and reads the others' from the shared run folder."""
        chunks = _chunks(self.config)
        t0 = time.perf_counter()
        got = {k: self._teacher_chunk(k, runs, train_it=True)
               for k, runs in enumerate(tqdm(chunks, desc="phase 1: teachers", disable=not self.progress)) if mine(k)}
        got.update(self._others(chunks, got, "teachers", lambda k, runs: self._teacher_chunk(k, runs, train_it=False)))
        params, acc_ref, acc_teacher = [], [], []
        for k in range(len(chunks)):
            p, meta = got[k]
            params.append(p)
            self.chunk_seconds["teachers"].append(meta.get("seconds"))
            acc_ref += meta["acc_reference"]
            acc_teacher += meta["acc_teacher"]
        self.timings["teachers_s"] = time.perf_counter() - t0
        all_params = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *params)
        return all_params, np.array(acc_ref), np.array(acc_teacher)

    def _others(self, chunks, got: dict, phase: str, load) -> dict:
        """After every process has finished its share of ``phase``, the other processes' chunks from their files."""
        if jax.process_count() == 1:
            return {}
        multihost_utils.sync_global_devices(f"{self.dir.name}/{phase}")
        out = {}
        for k, runs in enumerate(chunks):
            if k not in got:
                out[k] = load(k, runs)
                if out[k] is None:
                    raise RuntimeError(f"process {k % jax.process_count()} left no matching {phase} chunk {k} in "
                                       f"{self.dir}; every process needs the same --out folder (a shared file "
                                       "system) and the same settings")
        return out

    # ---- phase 2: students -------------------------------------------------------------------------------
    def _load_student_chunk(self, k: int, runs) -> dict | None:
        """Chunk ``k``'s students from its file when that was made with these settings for these runs, else None."""
        path = self.dir / f"students_{k:03d}.json"
        if path.exists():
            res = load_json(path)
            if self._chunk_matches(res, runs):
                return res
        return None

    def run(self) -> dict:
        (res,) = _run_group([self])
        if isinstance(res, FloatingPointError):
            raise res
        return res


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _cat(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *trees)


def train_student_stack(group: list[Experiment], runs, teachers_all, pairing) -> list:
    """Chunk ``runs``'s students of every experiment in ``group`` as one vmapped batch of len(group) x R runs.

    The group's configurations differ at most in ``STACKED_KNOBS``, which reach the step only as per-run arrays (the
    students' start and the ablation direction), so one compiled step trains them all: each experiment's starts and
    directions are stacked along the run axis, and what they share (references, teachers, inputs, example order) is
    repeated. Returns per experiment its chunk result, or the FloatingPointError of a diverged student (one diverged
    experiment spoils no other)."""
    e0 = group[0]
    cfg = e0.config
    if len({e.config.stack_key() for e in group}) > 1:
        raise ValueError(f"stacked experiments may differ only in {', '.join(STACKED_KNOBS)}")
    apply_fn, aux = e0.apply_fn, e0.module.aux_indices()
    n, idx, R = len(group), np.asarray(list(runs)), len(runs)
    RR = n * R

    def tile(tree):
        return _cat([tree] * n)

    def take(tree, i):
        return jax.tree_util.tree_map(lambda a: a[jnp.asarray(i)], tree)

    def shard(tree):
        return e0.shard(tree, RR)

    other = pairing[idx]
    ref1 = e0.references(runs)
    whose1 = {"same": (take(teachers_all, idx), ref1),
              "other": (take(teachers_all, other), e0.references(other.tolist()))}
    start = shard(_cat([e.student_starts(runs, ref1) for e in group]))
    whose = {w: tuple(shard(tile(t)) for t in pair) for w, pair in whose1.items()}
    teacher, teacher_other = whose["same"][0], whose["other"][0]
    dirs = [e.ablation_directions(runs, whose1) for e in group]
    directions = None
    if any(d is not None for d in dirs):  # a cell without ablation gets the zero direction: a no-op, bit for bit
        zero = jax.tree_util.tree_map(jnp.zeros_like, ref1)
        directions = shard({name: _cat([zero if d is None else d[name] for d in dirs]) for name in train.STUDENTS})
    noise = shard(tile(run_keys(cfg.seed, "noise", runs)))
    shuffle = shard(tile(run_keys(cfg.seed, "student_shuffle", runs)))
    steps = train.n_steps(cfg.n_noise, cfg.batch_size)
    total = cfg.epochs_student * steps
    log_steps = sorted({s for s in cfg.log_steps if s <= total} | {total})
    # Each student gets its own copy of theta_0: the step donates (reuses) the students' buffers.
    def copy(tree):
        return jax.tree_util.tree_map(jnp.copy, tree)
    students = {name: (copy(start), jax.vmap(e0.student_tx.init)(start)) for name in train.STUDENTS}
    losses = train.student_losses(aux, cfg.student_loss)
    task_batch = (e0.x_eval[:ALIGNMENT_BATCH], e0.y_eval[:ALIGNMENT_BATCH]) if cfg.log_alignment else None
    out = {name: {"teacher_loss_curve": [], "update_cos_curve": []} for name in train.STUDENTS}
    if cfg.log_alignment:
        for name in train.STUDENTS:
            out[name]["alignment_curve"] = []

    def log_curves():  # L_T and cos(update so far, teacher's update) at the log steps (Fig. 10 b, c)
        for name, (_, w) in train.STUDENTS.items():
            out[name]["teacher_loss_curve"].append(
                np.asarray(train.mean_class_ce(apply_fn, students[name][0], e0.x_eval, e0.y_eval)).tolist())
            cos = train.update_geometry(start, students[name][0], *whose[w])[0] if step else np.full(RR, 0.0)
            out[name]["update_cos_curve"].append(np.asarray(cos).tolist())

    targets = shard(train.empty_targets(RR, cfg.n_noise, e0.module.n_out))
    step = 0
    log_curves()
    label = f"students {runs.start}-{runs.stop - 1}" + (f" x {n} cells" if n > 1 else "")
    bar = tqdm(total=total, desc=label, disable=not e0.progress, leave=False)
    for epoch in range(cfg.epochs_student):
        idx_RxSxB, mask_RxSxB = shard(train.epoch_batches_R(shuffle, epoch, cfg.n_noise, cfg.batch_size))
        if epoch == 0:  # Lemma 1 at the first step, on the first batch the student will see
            x1 = jax.vmap(lambda k, i: train.input_images(cfg.student_inputs, k, i, e0.pool))(noise, idx_RxSxB[:, 0])
            for name, (which, w) in train.STUDENTS.items():
                cos, proj = train.first_step_diagnostic(apply_fn, losses[which], start, *whose[w], x1,
                                                        None if directions is None else directions[name])
                out[name]["first_step_gradient_cos"] = np.asarray(cos).tolist()
                out[name]["first_step_gradient_projection"] = np.asarray(proj).tolist()
        for s in range(steps):
            students, targets, values = train.student_step(
                apply_fn, e0.student_tx, aux, students, targets, teacher, teacher_other, noise, idx_RxSxB[:, s],
                mask_RxSxB[:, s], fill=epoch == 0, loss=cfg.student_loss, inputs=cfg.student_inputs,
                pool_NxD=e0.pool, directions=directions, task_batch=task_batch)
            step += 1
            if task_batch is not None:
                for name in train.STUDENTS:
                    out[name]["alignment_curve"].append(np.asarray(values["alignment"][name]).tolist())
            if step == 1:
                for name, (which, w) in train.STUDENTS.items():
                    cos, proj = train.update_geometry(start, students[name][0], *whose[w])
                    out[name]["first_step_adam_cos"] = np.asarray(cos).tolist()
                    out[name]["first_step_adam_projection"] = np.asarray(proj).tolist()
            if step in log_steps:
                log_curves()
            bar.update()
    bar.close()
    finite = {}
    for name, (which, w) in train.STUDENTS.items():
        final = students[name][0]
        finite[name] = np.all([np.all(np.isfinite(np.asarray(a)).reshape(RR, -1), axis=1)
                               for a in jax.tree_util.tree_leaves(final)], axis=0)
        cos, proj = train.update_geometry(start, final, *whose[w])
        out[name].update(
            accuracy=np.asarray(train.accuracy(apply_fn, final, e0.x_test, e0.y_test)).tolist(),
            total_update_cos=np.asarray(cos).tolist(),
            total_update_projection=np.asarray(proj).tolist(),
            final_imitation_loss=np.asarray(values[name]).tolist(),
        )
    results = []
    for i, e in enumerate(group):
        part = slice(i * R, (i + 1) * R)
        bad = [name for name in train.STUDENTS if not finite[name][part].all()]
        if bad:
            results.append(FloatingPointError(f"student {bad[0]} diverged (NaN/inf) in runs {list(runs)}"))
            continue
        if e.keep_students:
            for name in train.STUDENTS:
                e.final_students.setdefault(name, []).append(
                    jax.tree_util.tree_map(lambda a: np.asarray(a[part]), students[name][0]))
        own = {name: {key: [row[part] for row in v] if key.endswith("_curve") else v[part] for key, v in d.items()}
                 for name, d in out.items()}
        res = {"runs": [runs.start, runs.stop], "paired_teacher": other.tolist(), "log_steps": log_steps,
               "fingerprint": e.config.fingerprint(), "students": own}
        if n > 1:
            res["stacked_with"] = [g.dir.name for g in group if g is not e]
        results.append(res)
    return results


def _group_students(group: list[Experiment], teachers_all) -> list:
    """Phase 2 for every experiment of a stackable ``group``: per chunk, its finished files are loaded (resume) and
    the rest trained together (``train_student_stack``). Per experiment: its chunk results, or a FloatingPointError.
    With several processes, each trains its share of the chunks and reads the others' from the run folders."""
    e0 = group[0]
    pairing = derangement(role_key(e0.config.seed, "pairing"), e0.config.runs)
    chunks = _chunks(e0.config)
    t0 = time.perf_counter()
    got: list[dict] = [{} for _ in group]
    failed: dict[int, FloatingPointError] = {}
    for k, runs in enumerate(tqdm(chunks, desc="phase 2: students", disable=not e0.progress)):
        if not mine(k):
            continue
        todo = []
        for i, e in enumerate(group):
            done = e._load_student_chunk(k, runs) if e.resume else None
            if done is not None:
                got[i][k] = done
            elif i not in failed:
                todo.append(i)
        if not todo:
            continue
        tc = time.perf_counter()
        made = train_student_stack([group[i] for i in todo], runs, teachers_all, pairing)
        seconds = (time.perf_counter() - tc) / len(todo)  # a stacked chunk's time, shared equally
        for i, res in zip(todo, made, strict=True):
            if isinstance(res, FloatingPointError):
                failed[i] = res
                continue
            res["seconds"] = seconds
            save_json(group[i].dir / f"students_{k:03d}.json", res)
            got[i][k] = res
            if len(todo) > 1:
                group[i].timings["stacked_cells"] = max(len(todo), group[i].timings.get("stacked_cells", 0))
    if jax.process_count() > 1:  # every process must agree on which cells failed before the barriers of _others
        flags = multihost_utils.process_allgather(np.array([i in failed for i in range(len(group))]))
        for i in np.flatnonzero(np.any(flags, axis=0)):
            failed.setdefault(int(i), FloatingPointError(f"a student of {group[i].dir.name} diverged (NaN/inf) in "
                                                         "another process's chunk"))
    out = []
    for i, e in enumerate(group):
        if i in failed:
            out.append(failed[i])
            continue
        got[i].update(e._others(chunks, got[i], "students", e._load_student_chunk))
        results = [got[i][k] for k in range(len(chunks))]
        e.chunk_seconds["students"] += [r.get("seconds") for r in results]
        e.timings["students_s"] = time.perf_counter() - t0
        out.append(results)
    return out


def _run_group(group: list[Experiment]) -> list:
    """Both phases for a stackable group: the first experiment trains (or loads) the teachers and the others keep
    copies of them (the same teacher settings by construction); the students train as one batch per chunk."""
    t0 = time.perf_counter()
    for e in group[1:]:
        e.teacher_source = group[0].dir
    teachers = [e.teachers() for e in group]
    # A cell that kept its own teachers from an earlier run (resume) stacks only if they are the same numbers:
    # its students must learn from the teachers its results report.
    same = [i for i, t in enumerate(teachers) if i == 0 or _leaves_equal(t[0], teachers[0][0])]
    students = dict(zip(same, _group_students([group[i] for i in same], teachers[0][0]), strict=True))
    for i in sorted(set(range(len(group))) - set(same)):
        (students[i],) = _group_students([group[i]], teachers[i][0])
    out = []
    for i, (e, (_, acc_ref, acc_teacher)) in enumerate(zip(group, teachers, strict=True)):
        chunks = students[i]
        if isinstance(chunks, FloatingPointError):
            out.append(chunks)
            continue
        e.timings["total_s"] = time.perf_counter() - t0  # this process (small when resumed)
        for phase, secs in e.chunk_seconds.items():  # compute time summed over chunks, across resumes
            e.timings[f"{phase}_compute_s"] = None if None in secs else float(sum(secs))
        out.append(assemble(e.config, acc_ref, acc_teacher, chunks, e.timings))
    return out


def _random_like(key, tree):
    """A standard-normal pytree shaped like ``tree``, rescaled to ``tree``'s norm."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    z = jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
    return theory.tree_scale(z, theory.norm(tree) / theory.norm(z))


def mine(k: int) -> bool:
    """Is chunk ``k`` this process's share? (Round robin over ``jax.process_count()`` processes; all, with one.)"""
    return k % jax.process_count() == jax.process_index()


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-process run (``jax.distributed``): every process trains its share of the chunks on its own
    devices and reads the others' from the shared run folder, and process 0 writes the result. Without arguments
    JAX detects the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU); elsewhere give all three."""
    given = [a is not None for a in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("a multi-process run needs the coordinator address, the number of processes and this "
                         "process's id together (or none of them, on a cluster JAX detects)")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def run(config: MnistConfig, out_dir="runs", *, resume: bool = False, progress: bool = True) -> dict:
    """Run the experiment; returns the results dict (also written to ``out_dir/<run name>/results.json``, by
    process 0 of a multi-process run; every process returns it)."""
    (res,) = run_stacked([config], out_dir, resume=resume, progress=progress)
    if isinstance(res, FloatingPointError):
        raise res
    return res


def run_stacked(configs: list[MnistConfig], out_dir="runs", *, resume: bool = False, progress: bool = True) -> list:
    """Several configurations that differ only in ``STACKED_KNOBS`` (``MnistConfig.stack_key``) at once: one set of
    teachers, and each chunk's students of all of them in one vmapped batch. Each keeps its own run folder and
    results.json, with its numbers as ``run`` gives them up to float32 rounding (a batch of other size). Returns per
    configuration its results dict, or the FloatingPointError that stopped it."""
    if not configs:
        return []
    if len({c.stack_key() for c in configs}) > 1:
        raise ValueError(f"run_stacked: the configurations may differ only in {', '.join(STACKED_KNOBS)}; run the "
                         "others apart")
    if len({c.fingerprint() for c in configs}) < len(configs):
        raise ValueError("run_stacked: the same configuration twice")
    group = [Experiment(c, out_dir, resume=resume, progress=progress) for c in configs]
    out = _run_group(group)
    for e, res in zip(group, out, strict=True):
        if not isinstance(res, FloatingPointError):
            res["timings"]["peak_rss_mb"] = peak_rss_mb()
            if jax.process_index() == 0:
                save_json(e.dir / "results.json", res)
    return out
