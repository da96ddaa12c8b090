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
import os
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
from mnist_mlp.config import MATMUL_PRECISIONS, STACKED_KNOBS, MnistConfig
from mnist_mlp.model import MLP, N_CLASSES, apply_fn_of
from mnist_mlp.report import assemble
from results import (
    ResultsError,
    injected,
    keep_freed_memory,
    load_arrays,
    load_json,
    load_meta,
    lock_folder,
    peak_rss_mb,
    save_arrays,
    save_json,
)

MODELS = ("reference", "teacher", *train.STUDENTS)
# Roles of the keys split from the one seed.
ROLES = {"init": 0, "teacher_shuffle": 1, "noise": 2, "student_shuffle": 3, "pairing": 4, "eval": 5,
         "student_init": 6, "ablation": 7}
ALIGNMENT_BATCH = 256  # task images on which grad L_T is taken at every student step (log_alignment)


def to_device(x) -> jax.Array:
    """A host value on the default device, as an explicit transfer (the training loops run under a transfer guard
    in the tests: no value may reach the device implicitly)."""
    return jax.device_put(np.asarray(x))


@jax.jit
def _fold(seed_role, runs_R):
    base = jax.random.fold_in(jax.random.key(seed_role[0]), seed_role[1])
    return base, jax.vmap(lambda r: jax.random.fold_in(base, r))(runs_R)


def role_key(seed: int, role: str):
    return _fold(to_device(np.array([seed, ROLES[role]], np.uint32)), to_device(np.zeros(0, np.uint32)))[0]


def run_keys(seed: int, role: str, runs) -> jax.Array:
    """One key per run: the role's key folded with the run's index (the same key whatever chunk the run is in)."""
    return _fold(to_device(np.array([seed, ROLES[role]], np.uint32)), to_device(np.asarray(list(runs), np.uint32)))[1]


@functools.partial(jax.jit, static_argnums=0)
def _init_params_R(module, keys_R):
    return jax.vmap(module.init_params)(keys_R)


@functools.partial(jax.jit, static_argnums=0)
def _init_opt_R(tx, params_R):
    return jax.vmap(tx.init)(params_R)


@jax.jit
def _copy(tree):
    """A fresh copy on the device (the epochs donate, i.e. reuse, their inputs' buffers)."""
    return jax.tree_util.tree_map(jnp.copy, tree)


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


def memory_per_run(config: MnistConfig, n_in: int = 784) -> int:
    """Bytes one run holds on the device while its students train (the larger phase), an upper estimate from the
    parameters, the batch and the input set: 4 students' parameters, Adam moments and gradients, their start, both
    teachers and their inits, the ablation directions; the stored teacher logits; each student's activations
    (forward, backward and temporaries) on a batch; the evaluation batch."""
    sizes = (n_in, *config.hidden, N_CLASSES + config.n_aux)
    params = 4 * sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    n_students = len(train.STUDENTS)
    state = (4 * n_students + 5 + n_students) * params
    targets = 2 * config.n_noise * sizes[-1] * 4
    activations = 3 * n_students * config.batch_size * sum(sizes) * 4
    evaluation = 2 * max(config.eval_subset, 1000) * sum(sizes[1:]) * 4
    return state + targets + activations + evaluation


def device_memory_budget() -> int:
    """Bytes the chunks may use on each local device: most of a GPU's free memory; a quarter of the host's RAM on a
    CPU (shared with the rest of the machine). Read once per process, so a resumed run cuts the same chunks."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(0.8 * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def auto_chunk_size(config: MnistConfig) -> int:
    """Runs per chunk when ``chunk_size`` is None: all of them in one chunk when the devices' memory holds them
    (``memory_per_run``), else the fewest chunks that fit, of equal size (one compiled shape), a multiple of the local
    device count where it can be, and at least one chunk per process of a multi-process run."""
    n_dev = jax.local_device_count()
    fit = max(1, n_dev * device_memory_budget() // memory_per_run(config))
    n_chunks = max(math.ceil(config.runs / fit), jax.process_count())
    size = math.ceil(config.runs / n_chunks)
    if n_dev > 1 and size >= n_dev:  # whole chunks shard evenly over the devices
        size = math.ceil(size / n_dev) * n_dev
    return min(size, config.runs)


def chunk_size(config: MnistConfig) -> int:
    return config.chunk_size or auto_chunk_size(config)


def _chunks(config: MnistConfig) -> list[range]:
    size = chunk_size(config)
    return [range(i, min(i + size, config.runs)) for i in range(0, config.runs, size)]


def _save_params(path: Path, params_R, extra: dict) -> None:
    flat, _ = jax.tree_util.tree_flatten_with_path(params_R)
    save_arrays(path, {jax.tree_util.keystr(p): np.asarray(a) for p, a in flat}, extra)


def _load_params(path: Path, like_R) -> tuple[object, dict]:
    """The parameters saved in ``path``, shaped as ``like_R``; a file holding other names or shapes (not written by
    this code for these settings) is a ``ResultsError`` that names it and the fix."""
    arrays, meta = load_arrays(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(like_R)
    leaves = []
    for p, like in flat:
        name = jax.tree_util.keystr(p)
        got = arrays.get(name)
        if got is None or got.shape != like.shape or got.dtype != like.dtype:
            found = "missing" if got is None else f"{got.dtype}{list(got.shape)}"
            raise ResultsError(f"{path} does not hold these runs' parameters ({name}: {found}, expected "
                               f"{like.dtype}{list(like.shape)}); delete it and rerun with --resume (the run's other "
                               "finished parts are kept)")
        leaves.append(jnp.asarray(got))
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
        are then reused instead of being faulted in afresh at every step (same numbers, less system time). The run
        folder is this process's from here on too (``results.lock_folder``), before any data is read: a second
        process on it stops at once."""
        from mnist_mlp.data import default_data_dir, load_dataset

        keep_freed_memory()

        self.config, self.resume, self.progress, self.keep_students = config, resume, progress, keep_students
        self.final_students: dict[str, list] = {}
        self.teacher_source: Path | None = None  # a run folder whose matching teachers this one copies (a stack)
        self.dir = Path(out_dir) / run_name(config)
        if jax.process_index() == 0:  # the run folder is this process's before any data is read (``_run_group``)
            lock_folder(self.dir)
        root = config.data_dir or default_data_dir()
        xtr, ytr = load_dataset(config.dataset, root, split="train")
        if poisoned := injected("nan-image"):  # a test hook (tests/faults): NaN pixels in these training images
            xtr = np.array(xtr)
            xtr[[int(k) for k in poisoned]] = np.nan
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
        self.task_batch = (self.x_eval[:ALIGNMENT_BATCH], self.y_eval[:ALIGNMENT_BATCH])  # for log_alignment
        self.timings: dict[str, float] = {}
        self.chunk_seconds: dict[str, list] = {"teachers": [], "students": []}  # compute time of each chunk

    def references(self, runs):
        return _init_params_R(self.module, run_keys(self.config.seed, "init", runs))

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
            start = _mix(ref, fresh, a, b)
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
                dT = _random_directions(run_keys(cfg.seed, "ablation", runs), dT, i)
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
        ref = self.shard(self.references(runs), R) if cfg.liminal else None  # a copy: the epochs donate params
        opt = _init_opt_R(self.tx, params)
        shuffle = self.shard(run_keys(cfg.seed, "teacher_shuffle", runs), R)
        losses = []
        for epoch in tqdm(range(cfg.epochs_teacher), desc=f"teachers {runs.start}-{runs.stop - 1}",
                          disable=not self.progress, leave=False):
            params, opt, loss_SxR = train.teacher_epoch(self.apply_fn, self.tx, params, opt, self.x_train,
                                                        self.y_train, shuffle, to_device(np.int32(epoch)), ref,
                                                        batch=cfg.batch_size, liminal=cfg.liminal,
                                                        aux=self.module.aux_indices())
            losses.append(loss_SxR)  # left on the device until the phase ends
        loss_ExSxR = np.stack(jax.device_get(losses))
        if not np.all(np.isfinite(loss_ExSxR)):  # the first non-finite step (every later one follows from it)
            flat = loss_ExSxR.reshape(-1, R)
            step, r = divmod(int(np.flatnonzero(~np.isfinite(flat))[0]), R)
            raise FloatingPointError(
                f"the teacher loss is {flat[step, r]} at step {step + 1} (epoch {step // loss_ExSxR.shape[1] + 1}) of "
                f"run {runs.start + r} (seed {cfg.seed}); the run stops and writes no result of these runs: lower the "
                "learning rate, or check the data for NaN/inf")
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
        with matmul_precision(self.config):
            (res,) = _run_group([self])
        if isinstance(res, FloatingPointError):
            raise res
        return res


def matmul_precision(config: MnistConfig):
    """The context every compiled step of ``config`` is traced in: its matmul precision (the default, "highest", is
    float32, the precision of every number published before the knob)."""
    return jax.default_matmul_precision(MATMUL_PRECISIONS[config.matmul_precision])


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _cat(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *trees)


@jax.jit
def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


@jax.jit
def _zeros_like(tree):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


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
        return _take(tree, to_device(np.asarray(i, np.int32)))

    def shard(tree):
        return e0.shard(tree, RR)

    other = pairing[idx]
    ref1 = e0.references(runs)
    whose1 = {"same": (take(teachers_all, idx), ref1),
              "other": (take(teachers_all, other), e0.references(other.tolist()))}
    start = shard(_cat([e.student_starts(runs, ref1) for e in group]))
    whose = {w: tuple(shard(tile(t)) for t in pair) for w, pair in whose1.items()}
    dirs = [e.ablation_directions(runs, whose1) for e in group]
    directions = None
    if any(d is not None for d in dirs):  # a cell without ablation gets the zero direction: a no-op, bit for bit
        zero = _zeros_like(ref1)
        directions = shard({name: _cat([zero if d is None else d[name] for d in dirs]) for name in train.STUDENTS})
    steps = train.n_steps(cfg.n_noise, cfg.batch_size)
    total = cfg.epochs_student * steps
    log_steps = tuple(sorted({s for s in cfg.log_steps if s <= total} | {0, total}))
    fixed = {"start": start, "whose": whose, "directions": directions, "pool": e0.pool,
             "noise": shard(tile(run_keys(cfg.seed, "noise", runs))),
             "shuffle": shard(tile(run_keys(cfg.seed, "student_shuffle", runs))),
             "x_eval": e0.x_eval, "y_eval": e0.y_eval, "task_batch": e0.task_batch if cfg.log_alignment else None}
    # Each student gets its own copy of theta_0: the epochs donate (reuse) the students' buffers.
    state = {"students": {name: (_copy(start), _init_opt_R(e0.student_tx, start)) for name in train.STUDENTS},
             "targets": shard(train.empty_targets(RR, cfg.n_noise, e0.module.n_out))}
    label = f"students {runs.start}-{runs.stop - 1}" + (f" x {n} cells" if n > 1 else "")
    per_epoch = []
    for epoch in tqdm(range(cfg.epochs_student), desc=label, disable=not e0.progress, leave=False):
        state, values = train.student_epoch(apply_fn, e0.student_tx, aux, state, fixed, to_device(np.int32(epoch)),
                                            fill=epoch == 0, batch=cfg.batch_size, log_steps=log_steps,
                                            loss=cfg.student_loss, inputs=cfg.student_inputs)
        per_epoch.append(values)  # left on the device until the phase ends
    final = train.student_finish(apply_fn, state["students"], fixed, e0.x_test, e0.y_test)
    # the phase's one read-back: the diagnostics, the per-step values and the final numbers
    logs, per_epoch, final = jax.device_get((state["logs"], per_epoch, final))
    out = {}
    for name in train.STUDENTS:
        d = {k: np.asarray(v) for k, v in logs[name].items()}
        d.update({k: np.asarray(v) for k, v in final[name].items()})
        d["final_imitation_loss"] = np.asarray(per_epoch[-1][name])[-1]
        if cfg.log_alignment:
            d["alignment_curve"] = np.concatenate([np.asarray(v["alignment"][name]) for v in per_epoch])
        out[name] = d
    finite = {name: out[name].pop("finite") for name in train.STUDENTS}
    results = []
    for i, e in enumerate(group):
        part = slice(i * R, (i + 1) * R)
        bad = [name for name in train.STUDENTS if not finite[name][part].all()]
        if bad:
            results.append(FloatingPointError(f"student {bad[0]}'s parameters became NaN/inf in runs {list(runs)} "
                                              f"(seed {cfg.seed}); no result of them is written"))
            continue
        if e.keep_students:
            for name in train.STUDENTS:
                e.final_students.setdefault(name, []).append(
                    jax.tree_util.tree_map(lambda a: np.asarray(a)[part], jax.device_get(state["students"][name][0])))
        # curves are (log step x runs), the rest (runs,): each cell's runs, as lists for the chunk file
        own = {name: {key: (v[:, part] if key.endswith("_curve") else v[part]).tolist() for key, v in d.items()}
               for name, d in out.items()}
        res = {"runs": [runs.start, runs.stop], "paired_teacher": other.tolist(), "log_steps": list(log_steps),
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
    if jax.process_index() == 0:  # one process at a time per run folder (the others of a multi-process run share it)
        for e in group:
            lock_folder(e.dir)
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
        e.timings["chunk_size"] = chunk_size(e.config)  # the runs trained at once (automatic unless set)
        for phase, secs in e.chunk_seconds.items():  # compute time summed over chunks, across resumes
            e.timings[f"{phase}_compute_s"] = None if None in secs else float(sum(secs))
        out.append(assemble(e.config, acc_ref, acc_teacher, chunks, e.timings))
    return out


@functools.partial(jax.jit, static_argnums=(2, 3))
def _mix(ref, fresh, a: float, b: float):
    return jax.tree_util.tree_map(lambda r, f: a * r + b * f, ref, fresh)


@functools.partial(jax.jit, static_argnums=2)
def _random_directions(keys_R, like_R, i: int):
    """Per run, a Gaussian direction with the norm of the run's ``like_R`` (student i's own key)."""
    return jax.vmap(lambda k, t: _random_like(jax.random.fold_in(k, i), t))(keys_R, like_R)


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
    with matmul_precision(configs[0]):
        out = _run_group(group)
    for e, res in zip(group, out, strict=True):
        if not isinstance(res, FloatingPointError):
            res["timings"]["peak_rss_mb"] = peak_rss_mb()
            if jax.process_index() == 0:
                save_json(e.dir / "results.json", res)
    return out
