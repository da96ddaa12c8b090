"""The numerical check of Lemma 1 and Theorem 1 over a grid of random networks, losses and input distributions.

For every case (architecture x imitation loss x input distribution x seed) and every eps of a sweep it measures:
- Lemma 1 with a random teacher update dT: dS . dT (shared init), and the same for a student that starts from a
  different init (the paper's negative control, Section 6);
- Theorem 1 with dT = -grad L_T(theta_0), L_T = class cross-entropy of a teacher batch (real MNIST labels when the
  inputs are MNIST, random labels otherwise): does L_T fall after the student's imitation step?
- the relative first-order error |dS/eps - first_order_update| / |first_order_update|, whose log-log slope in eps
  should be 1 (the O(eps^2) remainder of the Lemma's expansion).

Cases sharing an architecture (and the run's dtype) are vmapped over seeds, inputs and imitation losses under one
``jax.jit``: one compiled program per architecture (``compiles`` in the summary counts them), the loss of each case
chosen by a traced index (``CaseLoss``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from theory import zoo
from theory.config import ALL_ARCHS, AUX, INPUTS, LOSS_NAMES, N_AUX, N_CLASSES, TheoryConfig, arch_from_name
from theory.lemma import lemma1_sweep, teacher_loss_change
from theory.losses import get_loss
from theory.pytree import tree_scale
from theory.stats import slope_stats
from theory.tolerances import tolerances

__all__ = ["ALL_ARCHS", "INPUTS", "LOSSES", "GridStore", "TheoryConfig", "fmt", "run", "summarize", "table_rows"]

LOSSES = {
    "ce": lambda: get_loss("ce"),
    "se": lambda: get_loss("se"),
    "aux-ce": lambda: get_loss("ce", subset=AUX),
    "aux-se": lambda: get_loss("se", subset=AUX),
}
assert tuple(LOSSES) == LOSS_NAMES
# (dT kind, student start) -> result group: Lemma 1 uses a random dT, Theorem 1 dT = -grad L_T.
GROUPS = {"lemma_shared": (0, 0), "lemma_other": (0, 1), "theorem_shared": (1, 0), "theorem_other": (1, 1)}
MnistArrays = tuple[np.ndarray, np.ndarray]  # (images_NxD scaled to [-1, 1], labels_N)


class GridStore(Protocol):
    """Where a grid keeps its finished parts (one per architecture here, per architecture and loss in the optimizer
    grid), so that a run stopped at any point resumes from them; the caller's (theory reads and writes no files), and
    for one grid's settings only (``TheoryConfig.science_dict``: a store made for other settings must not be passed).
    ``get(key)`` returns the arrays ``put(key, arrays)`` stored under ``key``, or None when it has none."""

    def get(self, key: str) -> dict[str, np.ndarray] | None: ...

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None: ...


def stored_part(store: GridStore | None, key: str, compute: Callable[[], dict], shapes: Callable[[], dict]
                ) -> tuple[dict, bool]:
    """(the nested dict of arrays of one part of a grid, whether it came from ``store``): the stored part when the
    store has one, else ``compute()``, put into the store. A stored part must hold the arrays ``shapes()`` describes
    (a pytree of shape/dtype structs, e.g. ``jax.eval_shape``'s), or it is a ValueError naming the part."""
    if store is not None and (flat := store.get(key)) is not None:
        want = {"/".join(str(k.key) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype))
                for path, leaf in jax.tree_util.tree_leaves_with_path(shapes())}
        got = {name: (a.shape, a.dtype) for name, a in flat.items()}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:3]
            raise ValueError(f"the stored part {key!r} of the grid does not hold this grid's arrays (e.g. {diff}): "
                             "remove it, or rerun with --no-resume")
        tree: dict = {}
        for name, a in flat.items():
            *parents, leaf = name.split("/")
            node = tree
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = a
        return tree, True
    tree = jax.tree_util.tree_map(np.asarray, compute())
    if store is not None:
        store.put(key, {"/".join(str(k.key) for k in path): leaf
                        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)})
    return tree, False


def mnist_subset(images_NxD, labels_N, n: int, *, key):
    """n of the caller's real MNIST images (scaled to [-1, 1]) with their labels, drawn without replacement."""
    images_NxD, labels_N = np.asarray(images_NxD), np.asarray(labels_N)
    if images_NxD.ndim != 2 or images_NxD.shape[1] != zoo.INPUT_DIM or labels_N.shape != images_NxD.shape[:1]:
        raise ValueError(f"MNIST inputs must be images_NxD with D = {zoo.INPUT_DIM} and labels_N, got "
                         f"{images_NxD.shape} and {labels_N.shape}")
    if images_NxD.shape[0] < n:
        raise ValueError(f"the grid needs {n} MNIST images, {images_NxD.shape[0]} were given")
    if not np.all(np.isfinite(images_NxD)):
        raise ValueError("the MNIST images hold NaN or inf")
    idx = np.asarray(jax.random.choice(key, images_NxD.shape[0], (n,), replace=False))
    return images_NxD[idx], labels_N[idx]


def _make_inputs(kind: str, n_cases: int, batch: int, dtype, *, key, mnist):
    """Student inputs xs, teacher inputs xt and teacher labels yt for n_cases cases of one input distribution."""
    k_s, k_t, k_y = jax.random.split(key, 3)
    shape = (n_cases, batch, zoo.INPUT_DIM)
    if kind == "gaussian":
        xs, xt = jax.random.normal(k_s, shape, dtype), jax.random.normal(k_t, shape, dtype)
    elif kind == "uniform":
        xs = jax.random.uniform(k_s, shape, dtype, -1.0, 1.0)
        xt = jax.random.uniform(k_t, shape, dtype, -1.0, 1.0)
    else:
        images, labels = mnist
        images = jnp.asarray(images, dtype).reshape(2 * n_cases, batch, zoo.INPUT_DIM)
        return images[:n_cases], images[n_cases:], jnp.asarray(labels, jnp.int32).reshape(2 * n_cases, batch)[n_cases:]
    return xs, xt, jax.random.randint(k_y, shape[:2], 0, N_CLASSES)


def case_model(arch_name: str, loss_name: str, config: TheoryConfig):
    """(module, apply_fn, loss, dtype) of the grid's cases for one (architecture, loss)."""
    module = arch_from_name(arch_name).module(N_CLASSES + N_AUX)
    return module, zoo.apply_fn_of(module), LOSSES[loss_name](), jnp.dtype(config.dtype)


def case_networks(module, apply_fn, key, xt, yt, dtype):
    """One case's networks from its key: (p0, p_other, dT_random, dT_grad, teacher_loss). p0 is the shared init and
    p_other a different one; Lemma 1 takes any dT (a random one), Theorem 1 takes dT = -grad L_T(p0), L_T being the
    class cross-entropy on (xt, yt). Every grid draws its cases here, so the same keys give the same networks."""
    k_init, k_other, k_dT = jax.random.split(key, 3)
    p0 = zoo.init_params(module, key=k_init, dtype=dtype)
    p_other = zoo.init_params(module, key=k_other, dtype=dtype)

    def teacher_loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xt)[:, :N_CLASSES], yt).mean()

    dT_random = zoo.random_update(p0, key=k_dT)
    dT_grad = tree_scale(jax.grad(teacher_loss)(p0), -1.0)
    return p0, p_other, dT_random, dT_grad, teacher_loss


def stack_trees(trees):
    """Pytrees of one structure stacked leaf by leaf along a new leading axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


class CaseLoss:
    """The imitation loss of one case of a group, chosen among ``losses`` by a traced ``index``: one compiled program
    then serves every loss. Under vmap the choice is a select: each loss is evaluated on the logits, and only the
    chosen one's value and derivatives reach the networks (the others' cotangents are exact zeros)."""

    def __init__(self, losses: tuple, index):
        self.losses, self.index = losses, index

    def __call__(self, logits_BxK, targets_BxK):
        return jax.lax.switch(self.index, [lambda z, y, f=f: f(z, y) for f in self.losses], logits_BxK, targets_BxK)


def _case_fn(arch_name: str, loss_names: tuple[str, ...], config: TheoryConfig):
    """One case of the grid for a fixed architecture: vmappable over (key, xs, xt, yt, loss index into
    ``loss_names``)."""
    module = arch_from_name(arch_name).module(N_CLASSES + N_AUX)
    apply_fn, dtype = zoo.apply_fn_of(module), jnp.dtype(config.dtype)
    losses = tuple(LOSSES[name]() for name in loss_names)
    eps_E = jnp.asarray(config.eps, dtype)

    def case(key, xs, xt, yt, loss_index):
        loss = losses[0] if len(losses) == 1 else CaseLoss(losses, loss_index)
        # Lemma 1 with the random dT, Theorem 1 with dT = -grad L_T; each from both starts.
        p0, p_other, dT_random, dT_grad, teacher_loss = case_networks(module, apply_fn, key, xt, yt, dtype)

        def sweep(dT, start):
            dS_E, rep = lemma1_sweep(apply_fn, p0, dT, xs, loss, config.lr, eps_E, start)
            return {**dataclasses.asdict(rep), **teacher_loss_change(teacher_loss, start, dS_E)}

        # One flat vmap over the four (dT, start) pairs: nesting vmaps here pushes attention tensors past the
        # rank XLA:CPU's fused kernels accept.
        pairs = [GROUPS[name] for name in GROUPS]
        dTs = stack_trees([(dT_random, dT_grad)[i] for i, _ in pairs])
        starts = stack_trees([(p0, p_other)[j] for _, j in pairs])
        out = jax.vmap(sweep)(dTs, starts)
        return {name: jax.tree_util.tree_map(lambda a, k=k: a[k], out) for k, name in enumerate(GROUPS)}

    return case


@functools.lru_cache(maxsize=256)
def compiled_case(arch_name: str, loss_names: tuple[str, ...], config: TheoryConfig):
    """The jitted case function, vmapped over cases; cached so a second run of the same config does not recompile."""
    return jax.jit(jax.vmap(_case_fn(arch_name, loss_names, config)))


_COMPILES = {"active": False, "n": 0}


def _count_compile(event: str, duration_secs: float, **_) -> None:
    if _COMPILES["active"] and event == "/jax/core/compile/backend_compile_duration":
        _COMPILES["n"] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def summarize(config: TheoryConfig, cases: list[dict], curves: dict) -> dict:
    eps = np.asarray(config.eps)
    small, large = eps <= config.small_eps_max, eps >= config.large_eps_min
    ls, lo, ts, to = (curves[k] for k in GROUPS)
    def both(name, a, b, sel: slice | np.ndarray = slice(None)):
        return np.concatenate([a[name][:, sel], b[name][:, sel]])
    roundoff = tolerances(config.dtype).roundoff
    # ReLU networks are only piecewise smooth: once eps crosses an activation kink the O(eps^2) remainder jumps.
    relu = np.array([c["arch"] == "cnn" or c["arch"].endswith("relu") for c in cases] * 2)
    rel_err = both("relative_error_E", ls, ts, small)
    shared_inner = both("inner_E", ls, ts, small)
    other_inner = both("inner_E", lo, to, small)
    fo_pos = np.all(ts["first_order_inner_E"][:, small] > 0, axis=1)
    falls = np.all(ts["teacher_loss_change_E"][:, small] < 0, axis=1)
    i_ref = int(np.nonzero(small)[0][-1])  # the largest small eps, for the cosine histograms
    return {
        "n_cases": len(cases),
        "n_checks": int(shared_inner.shape[0]),
        "lemma1_fraction_nonnegative_shared": float(np.mean(np.all(shared_inner >= 0, axis=1))),
        "lemma1_min_normalized_projection_over_eps_shared": float(
            np.min(both("normalized_projection_E", ls, ts, small) / eps[small])),
        "first_order_error_slope": slope_stats(eps[small], rel_err, roundoff),
        "first_order_error_slope_smooth": slope_stats(eps[small], rel_err[~relu], roundoff),
        "first_order_error_slope_relu": slope_stats(eps[small], rel_err[relu], roundoff),
        "theorem1_cases_first_order_positive": int(fo_pos.sum()),
        "theorem1_teacher_loss_falls_where_positive": float(np.mean(falls[fo_pos])) if fo_pos.any() else float("nan"),
        "other_init_fraction_negative": float(np.mean(other_inner < 0)),
        "other_init_fraction_teacher_loss_rises": float(np.mean(to["teacher_loss_change_E"][:, small] > 0)),
        "large_eps_fraction_negative_shared": (
            float(np.mean(both("inner_E", ls, ts, large) < 0)) if large.any() else None),
        "cosine_eps": float(eps[i_ref]),
        "cosine_shared_median": float(np.median(both("cosine_E", ls, ts)[:, i_ref])),
        "cosine_other_median": float(np.median(both("cosine_E", lo, to)[:, i_ref])),
    }


def run(config: TheoryConfig, *, mnist: MnistArrays | Callable[[], MnistArrays] | None = None,
        progress: bool = True, store: GridStore | None = None) -> dict:
    """Run the grid; returns a JSON-ready dict with per-case curves and the summary numbers.

    ``mnist``: real training digits (images_NxD in [-1, 1], labels_N), or a callable that loads them, for the
    ``"mnist"`` input distribution; the caller owns the files (theory reads none). Required when ``config.inputs``
    names "mnist": drop it from the inputs to run without real digits. ``store``: where each architecture's finished
    part is kept and, on a rerun, taken from (``GridStore``); the result is the same either way."""
    if "mnist" in config.inputs and mnist is None:
        raise ValueError('config.inputs names "mnist" but no MNIST images were passed: pass mnist=(images, labels) '
                         '(or a loader), or leave "mnist" out of the inputs')
    dtype = jnp.dtype(config.dtype)
    with jax.enable_x64(dtype == jnp.float64):  # float64 only inside this run, not for the caller's session
        return _run(config, dtype, mnist, progress, store)


def _run(config: TheoryConfig, dtype, mnist, progress: bool, store: GridStore | None = None) -> dict:
    root = jax.random.key(config.seed)
    k_inputs, k_cases, k_mnist = jax.random.split(root, 3)  # one seed -> keys split by role
    n_per = config.seeds_per_combo
    inputs_used = list(config.inputs)
    if "mnist" in config.inputs:
        mnist = mnist_subset(*(mnist() if callable(mnist) else mnist), config.mnist_images_needed, key=k_mnist)
    # Inputs are shared by all (arch, loss) combos: each combo sees the same data, only networks differ.
    parts = [_make_inputs(kind, n_per, config.batch, dtype, key=jax.random.fold_in(k_inputs, i), mnist=mnist)
             for i, kind in enumerate(inputs_used)]
    xs, xt, yt = (jnp.concatenate(p) for p in zip(*parts))
    n_combo_cases = xs.shape[0]

    cases, curves = [], {}
    t0 = time.perf_counter()
    n_loss, compiles = len(config.losses), 0
    # one program per architecture: its cases for every loss, each (arch, loss) with the keys it always had
    for ai, arch_name in enumerate(tqdm(config.archs, desc="theory grid", disable=not progress)):
        keys = jnp.concatenate([jax.random.split(jax.random.fold_in(k_cases, ai * n_loss + li), n_combo_cases)
                                for li in range(n_loss)])
        tiled = [jnp.concatenate([a] * n_loss) for a in (xs, xt, yt)]
        loss_index = jnp.repeat(jnp.arange(n_loss, dtype=jnp.int32), n_combo_cases)
        case_fn = compiled_case(arch_name, tuple(config.losses), config)

        def compute(case_fn=case_fn, keys=keys, tiled=tiled, loss_index=loss_index):
            _COMPILES.update(active=True, n=0)
            try:  # only the case program compiles in this call: its inputs are ready
                return case_fn(keys, *tiled, loss_index)
            finally:
                _COMPILES["active"] = False

        out, stored = stored_part(store, arch_name, compute,
                                  lambda case_fn=case_fn, keys=keys, tiled=tiled, loss_index=loss_index:
                                  jax.eval_shape(case_fn, keys, *tiled, loss_index))
        compiles += 0 if stored else _COMPILES["n"]
        for loss_name in config.losses:
            for j in range(n_combo_cases):
                cases.append({"arch": arch_name, "loss": loss_name, "input": inputs_used[j // n_per],
                              "seed": j % n_per})
        for group, rep in out.items():
            for name, arr in rep.items():
                curves.setdefault(group, {}).setdefault(name, []).append(arr)
    wall = time.perf_counter() - t0
    curves = {g: {n: np.concatenate(v) for n, v in d.items()} for g, d in curves.items()}
    summary = summarize(config, cases, curves)
    summary["wall_seconds"] = wall
    summary["compiles"] = compiles  # case programs compiled by this run: one per architecture (0 if cached or stored)
    summary["inputs_used"] = inputs_used
    return {
        "config": dataclasses.asdict(config),
        "summary": summary,
        "cases": cases,
        "curves": {g: {n: np.asarray(a).tolist() for n, a in d.items() if n != "eps_E"} for g, d in curves.items()},
        "eps": list(config.eps),
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
    }


def fmt(x, spec: str) -> str:
    """Format a summary number; None (NaN in JSON: nothing to measure, e.g. no ReLU cases) prints as n/a."""
    return "n/a" if x is None else format(x, spec)


def table_rows(data: dict) -> list[str]:
    """The printed report: one row per architecture, then the three acceptance numbers."""
    eps = np.asarray(data["eps"])
    small = eps <= data["config"]["small_eps_max"]
    cur = {g: {k: np.array([[np.nan if v is None else v for v in row] for row in a]) for k, a in d.items()
               if k.endswith("_E")} for g, d in data["curves"].items()}
    archs = np.array([c["arch"] for c in data["cases"]])
    s = data["summary"]
    slopes = np.array([np.nan if v is None else v for v in s["first_order_error_slope"]["per_case"]])
    n = len(archs)
    rows = [f"{'architecture':<14}{'cases':>6}{'dS.dT>=0':>10}{'slope med':>11}{'L_T falls':>11}"
            f"{'other<0':>9}{'cos shared':>12}{'cos other':>11}"]
    i_ref = int(np.argmin(np.abs(eps - s["cosine_eps"])))
    for arch in dict.fromkeys(archs):
        m = archs == arch

        def both(init, key, sel, m=m):  # Lemma 1 and Theorem 1 checks of this architecture's cases
            return np.concatenate([cur[f"lemma_{init}"][key][m][:, sel], cur[f"theorem_{init}"][key][m][:, sel]])

        ip, io = both("shared", "inner_E", small), both("other", "inner_E", small)
        falls = np.all(cur["theorem_shared"]["teacher_loss_change_E"][m][:, small] < 0, axis=1)
        sl = np.concatenate([slopes[:n][m], slopes[n:][m]])
        cs, co = both("shared", "cosine_E", i_ref), both("other", "cosine_E", i_ref)
        rows.append(f"{arch:<14}{int(m.sum()):>6}{np.mean(np.all(ip >= 0, axis=1)):>10.1%}{np.nanmedian(sl):>11.3f}"
                    f"{np.mean(falls):>11.1%}{np.mean(io < 0):>9.1%}{np.median(cs):>12.3f}{np.median(co):>11.3f}")
    st = s["first_order_error_slope"]
    rows += [
        "",
        f"{s['n_cases']} cases x 2 checks ({data['config']['dtype']}, eps <= {data['config']['small_eps_max']:g}, "
        f"inputs: {', '.join(s['inputs_used'])}):",
        f"  Lemma 1   projection dS.dT >= 0 (shared init):      "
        f"{fmt(s['lemma1_fraction_nonnegative_shared'], '.1%')} of checks",
        f"  expansion relative first-order error, log-log slope: pooled {fmt(st['pooled'], '.3f')}, "
        f"median {fmt(st['median'], '.3f')} "
        f"({fmt(st['fraction_within_0.1'], '.1%')} of {st['n_fitted']} fits within 1 +- 0.1; "
        f"{st['n_exact_to_roundoff']} exact to roundoff)",
        f"            smooth nets: pooled {fmt(s['first_order_error_slope_smooth']['pooled'], '.3f')}, "
        f"{fmt(s['first_order_error_slope_smooth']['fraction_within_0.1'], '.1%')} within 0.1; ReLU nets: pooled "
        f"{fmt(s['first_order_error_slope_relu']['pooled'], '.3f')}, "
        f"{fmt(s['first_order_error_slope_relu']['fraction_within_0.1'], '.1%')} within 0.1 (activation kinks)",
        f"  Theorem 1 teacher loss falls where first-order projection > 0: "
        f"{fmt(s['theorem1_teacher_loss_falls_where_positive'], '.1%')} of "
        f"{s['theorem1_cases_first_order_positive']} cases",
        f"  counter-examples: different init -> {fmt(s['other_init_fraction_negative'], '.1%')} negative projections; "
        f"shared init at eps >= {data['config']['large_eps_min']:g} -> "
        f"{fmt(s['large_eps_fraction_negative_shared'], '.1%')} negative",
        f"  wall time {fmt(s['wall_seconds'], '.0f')} s",
    ]
    return rows
