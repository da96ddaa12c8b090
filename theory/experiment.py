"""The numerical check of Lemma 1 and Theorem 1 over a grid of random networks, losses and input distributions.

For every case (architecture x imitation loss x input distribution x seed) and every eps of a sweep it measures:
- Lemma 1 with a random teacher update dT: dS . dT (shared init), and the same for a student that starts from a
  different init (the paper's negative control, Section 6);
- Theorem 1 with dT = -grad L_T(theta_0), L_T = class cross-entropy of a teacher batch (real MNIST labels when the
  inputs are MNIST, random labels otherwise): does L_T fall after the student's imitation step?
- the relative first-order error |dS/eps - first_order_update| / |first_order_update|, whose log-log slope in eps
  should be 1 (the O(eps^2) remainder of the Lemma's expansion).

Cases sharing an (architecture, loss) are vmapped over seeds and inputs under one ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from theory.lemma import _lemma1_sweep, teacher_loss_change
from theory.losses import get_loss
from theory.pytree import tree_scale
from theory.tolerances import tolerances
from theory import zoo

N_CLASSES, N_AUX = 10, 3
AUX = tuple(range(N_CLASSES, N_CLASSES + N_AUX))
LOSSES = {
    "ce": lambda: get_loss("ce"),
    "se": lambda: get_loss("se"),
    "aux-ce": lambda: get_loss("ce", subset=AUX),
    "aux-se": lambda: get_loss("se", subset=AUX),
}
INPUTS = ("gaussian", "uniform", "mnist")
# (dT kind, student start) -> result group: Lemma 1 uses a random dT, Theorem 1 dT = -grad L_T.
GROUPS = {"lemma_shared": (0, 0), "lemma_other": (0, 1), "theorem_shared": (1, 0), "theorem_other": (1, 1)}
ALL_ARCHS = tuple(f"mlp{d}-{a}" for d in (1, 2, 3, 4) for a in ("relu", "tanh", "gelu")) + ("cnn", "transformer")


def arch_from_name(name: str) -> zoo.Arch:
    if name in ("cnn", "transformer"):
        return zoo.Arch(name)
    if name.startswith("mlp") and "-" in name:
        depth, act = name[3:].split("-", 1)
        if depth.isdigit() and act in zoo.ACTIVATIONS:
            return zoo.Arch("mlp", int(depth), act)
    raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ALL_ARCHS)}")


@dataclass(frozen=True)
class TheoryConfig:
    seed: int = 0
    dtype: str = "float64"
    archs: tuple[str, ...] = ALL_ARCHS
    losses: tuple[str, ...] = tuple(LOSSES)
    inputs: tuple[str, ...] = INPUTS
    seeds_per_combo: int = 2
    batch: int = 32  # student's imitation inputs (and teacher batch for L_T)
    lr: float = 0.1
    eps: tuple[float, ...] = tuple(float(e) for e in np.logspace(-6, 1, 15))
    small_eps_max: float = 1e-4  # acceptance region of the Lemma (eps <= this)
    large_eps_min: float = 1.0  # counter-example region
    data_dir: str | None = None  # MNIST root (torchvision layout); None = mnist_mlp.data.default_data_dir()

    @classmethod
    def paper(cls, **kw) -> "TheoryConfig":
        """The full grid: 14 architectures x 4 losses x 3 inputs x 2 seeds = 336 cases."""
        return cls(**kw)

    @classmethod
    def quick(cls, **kw) -> "TheoryConfig":
        """A small grid (about a minute on 2 CPU cores) that still covers every family and loss."""
        kw.setdefault("archs", ("mlp1-relu", "mlp2-tanh", "mlp3-gelu", "cnn", "transformer"))
        kw.setdefault("seeds_per_combo", 2)
        return cls(**kw)

    @property
    def n_cases(self) -> int:
        return len(self.archs) * len(self.losses) * len(self.inputs) * self.seeds_per_combo

    def validate(self) -> None:
        for a in self.archs:
            arch_from_name(a)
        for name in self.losses:
            if name not in LOSSES:
                raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
        for name in self.inputs:
            if name not in INPUTS:
                raise ValueError(f"unknown input distribution {name!r}; choose from {', '.join(INPUTS)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not any(e <= self.small_eps_max for e in self.eps):
            raise ValueError(f"no eps <= small_eps_max={self.small_eps_max} in the sweep {self.eps}")


def _mnist_subset(config: TheoryConfig, n: int, *, key):
    """n real MNIST training images scaled to [-1, 1] with labels, or None when the files are not available."""
    from mnist_mlp import data

    root = config.data_dir or data.default_data_dir()
    try:
        images_NxD, labels_N = data.load_mnist(root, split="train")
    except data.DataError as e:
        print(f"note: real-MNIST inputs skipped: {e}", file=sys.stderr)
        return None
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


def _case_fn(arch_name: str, loss_name: str, config: TheoryConfig):
    """One case of the grid for a fixed (architecture, loss): vmappable over (key, xs, xt, yt)."""
    module = arch_from_name(arch_name).module(N_CLASSES + N_AUX)
    apply_fn = zoo.apply_fn_of(module)
    loss = LOSSES[loss_name]()
    dtype = jnp.dtype(config.dtype)
    eps_E = jnp.asarray(config.eps, dtype)

    def case(key, xs, xt, yt):
        k_init, k_other, k_dT = jax.random.split(key, 3)
        p0 = zoo.init_params(module, key=k_init, dtype=dtype)
        p_other = zoo.init_params(module, key=k_other, dtype=dtype)

        def teacher_loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xt)[:, :N_CLASSES], yt).mean()

        # Lemma 1 takes any dT (a random one); Theorem 1 takes dT = -grad L_T. Each from both starts.
        dT_random = zoo.random_update(p0, key=k_dT)
        dT_grad = tree_scale(jax.grad(teacher_loss)(p0), -1.0)
        stack = lambda *trees: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)

        def sweep(dT, start):
            dS_E, rep = _lemma1_sweep(apply_fn, p0, dT, xs, loss, config.lr, eps_E, start)
            return {**dataclasses.asdict(rep), **teacher_loss_change(teacher_loss, start, dS_E)}

        # One flat vmap over the four (dT, start) pairs: nesting vmaps here pushes attention tensors past the
        # rank XLA:CPU's fused kernels accept.
        pairs = [GROUPS[name] for name in GROUPS]
        dTs = stack(*[(dT_random, dT_grad)[i] for i, _ in pairs])
        starts = stack(*[(p0, p_other)[j] for _, j in pairs])
        out = jax.vmap(sweep)(dTs, starts)
        return {name: jax.tree_util.tree_map(lambda a, k=k: a[k], out) for k, name in enumerate(GROUPS)}

    return case


@functools.lru_cache(maxsize=256)
def _compiled_case(arch_name: str, loss_name: str, config: TheoryConfig):
    """The jitted, seed-vmapped case function; cached so a second run of the same config does not recompile."""
    return jax.jit(jax.vmap(_case_fn(arch_name, loss_name, config)))


def fit_loglog_slope(x, y) -> float:
    """Least-squares slope of log|y| against log x (nan if fewer than two finite positive points)."""
    x, y = np.asarray(x, float), np.abs(np.asarray(y, float))
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def above_roundoff(eps_E, relative_error_CxE, roundoff: float):
    """Mask of points whose first-order error exceeds rounding noise (~roundoff / eps relative to dS / eps).

    Where the network's output is exactly linear along dT (e.g. an aux-only loss whose dT leaves the aux head alone)
    the O(eps^2) remainder vanishes and only rounding noise is left: no slope can be fitted there.
    """
    return np.isfinite(relative_error_CxE) & (relative_error_CxE > roundoff / np.asarray(eps_E))


def pooled_slope(eps_E, relative_error_CxE, mask_CxE) -> float:
    """One log-log slope for all cases, each case with its own intercept (within-case centring)."""
    lx, ly = [], []
    for err_E, m_E in zip(relative_error_CxE, mask_CxE):
        if m_E.sum() >= 2:
            x, y = np.log(np.asarray(eps_E)[m_E]), np.log(err_E[m_E])
            lx.append(x - x.mean()), ly.append(y - y.mean())
    if not lx:
        return float("nan")
    lx, ly = np.concatenate(lx), np.concatenate(ly)
    return float(lx @ ly / (lx @ lx))


def slope_stats(eps_E, relative_error_CxE, roundoff: float) -> dict:
    mask = above_roundoff(eps_E, relative_error_CxE, roundoff)
    fittable = mask.sum(axis=1) >= 2
    slopes = np.array([fit_loglog_slope(np.asarray(eps_E)[m], e[m]) for e, m in zip(relative_error_CxE, mask)])
    s = slopes[fittable]
    return {
        "n_fitted": int(fittable.sum()),
        "n_exact_to_roundoff": int((~fittable).sum()),
        "pooled": pooled_slope(eps_E, relative_error_CxE, mask),
        "median": float(np.median(s)) if s.size else float("nan"),
        "min": float(np.min(s)) if s.size else float("nan"),
        "max": float(np.max(s)) if s.size else float("nan"),
        "fraction_within_0.1": float(np.mean(np.abs(s - 1) <= 0.1)) if s.size else float("nan"),
        "per_case": slopes.tolist(),
    }


def summarize(config: TheoryConfig, cases: list[dict], curves: dict) -> dict:
    eps = np.asarray(config.eps)
    small, large = eps <= config.small_eps_max, eps >= config.large_eps_min
    ls, lo, ts, to = (curves[k] for k in GROUPS)
    both = lambda name, a, b, sel=slice(None): np.concatenate([a[name][:, sel], b[name][:, sel]])
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


def run(config: TheoryConfig, *, progress: bool = True) -> dict:
    """Run the grid; returns a JSON-ready dict with per-case curves and the summary numbers."""
    config.validate()
    dtype = jnp.dtype(config.dtype)
    with jax.enable_x64(dtype == jnp.float64):  # float64 only inside this run, not for the caller's session
        return _run(config, dtype, progress)


def _run(config: TheoryConfig, dtype, progress: bool) -> dict:
    root = jax.random.key(config.seed)
    k_inputs, k_cases, k_mnist = jax.random.split(root, 3)  # one seed -> keys split by role
    n_per = config.seeds_per_combo
    inputs_used = list(config.inputs)
    mnist = None
    if "mnist" in config.inputs:
        total = 2 * n_per * config.batch
        mnist = _mnist_subset(config, total, key=k_mnist)
        if mnist is None:
            inputs_used.remove("mnist")
    # Inputs are shared by all (arch, loss) combos: each combo sees the same data, only networks differ.
    parts = [_make_inputs(kind, n_per, config.batch, dtype, key=jax.random.fold_in(k_inputs, i), mnist=mnist)
             for i, kind in enumerate(inputs_used)]
    xs, xt, yt = (jnp.concatenate(p) for p in zip(*parts))
    n_combo_cases = xs.shape[0]

    cases, curves = [], {}
    t0 = time.perf_counter()
    combos = [(a, l) for a in config.archs for l in config.losses]
    for ci, (arch_name, loss_name) in enumerate(tqdm(combos, desc="theory grid", disable=not progress)):
        keys = jax.random.split(jax.random.fold_in(k_cases, ci), n_combo_cases)
        out = _compiled_case(arch_name, loss_name, config)(keys, xs, xt, yt)
        out = jax.tree_util.tree_map(np.asarray, out)
        for j in range(n_combo_cases):
            cases.append({"arch": arch_name, "loss": loss_name, "input": inputs_used[j // n_per], "seed": j % n_per})
        for group, rep in out.items():
            for name, arr in rep.items():
                curves.setdefault(group, {}).setdefault(name, []).append(arr)
    wall = time.perf_counter() - t0
    curves = {g: {n: np.concatenate(v) for n, v in d.items()} for g, d in curves.items()}
    summary = summarize(config, cases, curves)
    summary["wall_seconds"] = wall
    summary["inputs_used"] = inputs_used
    return {
        "config": dataclasses.asdict(config),
        "summary": summary,
        "cases": cases,
        "curves": {g: {n: np.asarray(a).tolist() for n, a in d.items() if n != "eps_E"} for g, d in curves.items()},
        "eps": list(config.eps),
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
    }


def _fmt(x, spec: str) -> str:
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
        ip = np.concatenate([cur["lemma_shared"]["inner_E"][m][:, small], cur["theorem_shared"]["inner_E"][m][:, small]])
        io = np.concatenate([cur["lemma_other"]["inner_E"][m][:, small], cur["theorem_other"]["inner_E"][m][:, small]])
        falls = np.all(cur["theorem_shared"]["teacher_loss_change_E"][m][:, small] < 0, axis=1)
        sl = np.concatenate([slopes[:n][m], slopes[n:][m]])
        cs = np.concatenate([cur["lemma_shared"]["cosine_E"][m][:, i_ref], cur["theorem_shared"]["cosine_E"][m][:, i_ref]])
        co = np.concatenate([cur["lemma_other"]["cosine_E"][m][:, i_ref], cur["theorem_other"]["cosine_E"][m][:, i_ref]])
        rows.append(f"{arch:<14}{int(m.sum()):>6}{np.mean(np.all(ip >= 0, axis=1)):>10.1%}{np.nanmedian(sl):>11.3f}"
                    f"{np.mean(falls):>11.1%}{np.mean(io < 0):>9.1%}{np.median(cs):>12.3f}{np.median(co):>11.3f}")
    st = s["first_order_error_slope"]
    rows += [
        "",
        f"{s['n_cases']} cases x 2 checks ({data['config']['dtype']}, eps <= {data['config']['small_eps_max']:g}, "
        f"inputs: {', '.join(s['inputs_used'])}):",
        f"  Lemma 1   projection dS.dT >= 0 (shared init):      {_fmt(s['lemma1_fraction_nonnegative_shared'], '.1%')} of checks",
        f"  expansion relative first-order error, log-log slope: pooled {_fmt(st['pooled'], '.3f')}, median {_fmt(st['median'], '.3f')} "
        f"({_fmt(st['fraction_within_0.1'], '.1%')} of {st['n_fitted']} fits within 1 +- 0.1; "
        f"{st['n_exact_to_roundoff']} exact to roundoff)",
        f"            smooth nets: pooled {_fmt(s['first_order_error_slope_smooth']['pooled'], '.3f')}, "
        f"{_fmt(s['first_order_error_slope_smooth']['fraction_within_0.1'], '.1%')} within 0.1; ReLU nets: pooled "
        f"{_fmt(s['first_order_error_slope_relu']['pooled'], '.3f')}, "
        f"{_fmt(s['first_order_error_slope_relu']['fraction_within_0.1'], '.1%')} within 0.1 (activation kinks)",
        f"  Theorem 1 teacher loss falls where first-order projection > 0: "
        f"{_fmt(s['theorem1_teacher_loss_falls_where_positive'], '.1%')} of {s['theorem1_cases_first_order_positive']} cases",
        f"  counter-examples: different init -> {_fmt(s['other_init_fraction_negative'], '.1%')} negative projections; "
        f"shared init at eps >= {data['config']['large_eps_min']:g} -> "
        f"{_fmt(s['large_eps_fraction_negative_shared'], '.1%')} negative",
        f"  wall time {_fmt(s['wall_seconds'], '.0f')} s",
    ]
    return rows
