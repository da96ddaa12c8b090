"""The optimizer axis of the theory grid: does Theorem 1's sign survive the optimizers people train students with?

Same cases as ``theory.experiment`` (architecture x imitation loss x input distribution x seed; the same keys give the
same theta_0, other init, random dT and teacher batch), and for each optimizer of ``config.optimizers``:
- the first step's projection dS . dT and cosine, at each teacher distance eps of ``config.optimizer_eps``, for the
  four groups (random dT or dT = -grad L_T) x (shared or other init);
- the eps -> 0 limit of the sign step, lr sign(J^T M J dT), from the shared init (``sign_first_order_update``);
- K steps (``config.k_steps``) against the Theorem-1 teacher at eps = ``config.k_step_eps``: projection and cosine of
  the cumulative update, and the change of the teacher's loss L_T, shared vs other init.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import binomtest
from tqdm.auto import tqdm

from theory.config import TheoryConfig
from theory.experiment import (
    GROUPS,
    GridStore,
    MnistArrays,
    _make_inputs,
    case_model,
    case_networks,
    mnist_subset,
    stack_trees,
    stored_part,
)
from theory.lemma import teacher_params
from theory.optimizers import k_step_projection, make_optimizer, optimizer_first_step, sign_first_order_update
from theory.pytree import cosine, flatten, inner

__all__ = ["K_GROUPS", "run", "summarize", "fraction_ci", "table_rows"]

K_GROUPS = ("theorem_shared", "theorem_other")  # K-step curves: dT = -grad L_T, so the L_T change is meaningful
NEGATIVE, POSITIVE = (lambda v: v < 0), (lambda v: v > 0)


def _share(values, predicate) -> dict:
    """fraction_ci of ``predicate`` over the finite values; non-finite ones (a diverged run) are counted apart, never
    silently taken as "not negative"."""
    v = np.asarray(values, float).ravel()
    ok = np.isfinite(v)
    return {**fraction_ci(predicate(v[ok])), "n_nonfinite": int((~ok).sum())}


def fraction_ci(flags) -> dict:
    """Share of True in ``flags`` with its 95% Wilson interval (exact for 0 or n successes too)."""
    f = np.asarray(flags, bool).ravel()
    if f.size == 0:
        return {"fraction": None, "ci95": [None, None], "n": 0}
    ci = binomtest(int(f.sum()), f.size).proportion_ci(method="wilson")
    return {"fraction": float(f.mean()), "ci95": [float(ci.low), float(ci.high)], "n": int(f.size)}


def _case_fn(arch_name: str, loss_name: str, config: TheoryConfig):
    module, apply_fn, loss, dtype = case_model(arch_name, loss_name, config)
    eps_E = jnp.asarray(config.optimizer_eps, dtype)

    def case(key, xs, xt, yt):
        # the projection grid's own networks for this key
        p0, p_other, dT_random, dT_grad, teacher_loss = case_networks(module, apply_fn, key, xt, yt, dtype)
        dT_kinds = (dT_random, dT_grad)
        starts = (p0, p_other)

        out = {"first": {}, "kstep": {}}
        # Sign limit from the shared init, for both kinds of dT (independent of eps and of the optimizer).
        def limit(dT):
            u = sign_first_order_update(apply_fn, p0, dT, xs, loss, 1.0)
            return {"inner": inner(u, dT), "cosine": cosine(flatten(u), flatten(dT))}

        out["sign_limit"] = jax.vmap(limit)(stack_trees(dT_kinds))  # [2]: lemma (random dT), theorem (dT = -grad L_T)
        pair_dTs = stack_trees([dT_kinds[i] for i, _ in GROUPS.values()])
        pair_starts = stack_trees([starts[j] for _, j in GROUPS.values()])
        k_dTs = stack_trees([dT_kinds[GROUPS[g][0]] for g in K_GROUPS])
        k_starts = stack_trees([starts[GROUPS[g][1]] for g in K_GROUPS])
        for name in config.optimizers:
            opt = make_optimizer(name)  # at DEFAULT_LR[name]

            def first(dT, start, opt=opt):
                def one(eps):
                    u = optimizer_first_step(apply_fn, p0, teacher_params(p0, dT, eps), xs, loss, opt,
                                             student_params0=start)
                    return {"inner": inner(u, dT), "cosine": cosine(flatten(u), flatten(dT))}
                return jax.vmap(one)(eps_E)

            def ksteps(dT, start, opt=opt):
                rep = k_step_projection(apply_fn, p0, teacher_params(p0, dT, config.k_step_eps), xs, loss, opt,
                                        config.k_steps, student_params0=start, teacher_loss=teacher_loss)
                return {f.name: getattr(rep, f.name) for f in dataclasses.fields(rep) if f.name != "k_K"}

            out["first"][name] = jax.vmap(first)(pair_dTs, pair_starts)  # leaves [4 groups, E]
            out["kstep"][name] = jax.vmap(ksteps)(k_dTs, k_starts)  # leaves [2 groups, K]
        return out

    return case


def run(config: TheoryConfig, *, mnist: MnistArrays | Callable[[], MnistArrays] | None = None,
        progress: bool = True, store: GridStore | None = None) -> dict:
    """Run the optimizer axis of the grid; a JSON-ready dict of per-case arrays and the summary.

    ``mnist`` as in ``theory.experiment.run`` (required when ``config.inputs`` names "mnist"); ``store`` too, its
    parts one per (architecture, loss), keyed ``ARCH_LOSS``."""
    if "mnist" in config.inputs and mnist is None:
        raise ValueError('config.inputs names "mnist" but no MNIST images were passed: pass mnist=(images, labels) '
                         '(or a loader), or leave "mnist" out of the inputs')
    dtype = jnp.dtype(config.dtype)
    with jax.enable_x64(dtype == jnp.float64):
        return _run(config, dtype, mnist, progress, store)


def _run(config: TheoryConfig, dtype, mnist, progress: bool, store: GridStore | None = None) -> dict:
    # The projection grid's key schedule, step for step, so case i here is case i there.
    k_inputs, k_cases, k_mnist = jax.random.split(jax.random.key(config.seed), 3)
    n_per = config.seeds_per_combo
    if "mnist" in config.inputs:
        mnist = mnist_subset(*(mnist() if callable(mnist) else mnist), config.mnist_images_needed, key=k_mnist)
    parts = [_make_inputs(kind, n_per, config.batch, dtype, key=jax.random.fold_in(k_inputs, i), mnist=mnist)
             for i, kind in enumerate(config.inputs)]
    xs, xt, yt = (jnp.concatenate(p) for p in zip(*parts))
    n_combo = xs.shape[0]
    cases, chunks = [], []
    t0 = time.perf_counter()
    combos = [(a, loss) for a in config.archs for loss in config.losses]
    for ci, (arch_name, loss_name) in enumerate(tqdm(combos, desc="optimizer grid", disable=not progress)):
        keys = jax.random.split(jax.random.fold_in(k_cases, ci), n_combo)
        # a fresh jitted, seed-vmapped case function each time, not cached: each is used once per run, and keeping
        # every compiled executable of the paper grid alive exhausted LLVM's code memory
        case = _case_fn(arch_name, loss_name, config)
        out, _ = stored_part(store, f"{arch_name}_{loss_name}",
                             lambda keys=keys, case=case: jax.jit(jax.vmap(case))(keys, xs, xt, yt),
                             lambda keys=keys, case=case: jax.eval_shape(jax.vmap(case), keys, xs, xt, yt))
        chunks.append(out)
        cases += [{"arch": arch_name, "loss": loss_name, "input": config.inputs[j // n_per], "seed": j % n_per}
                  for j in range(n_combo)]
    arrays = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *chunks)
    summary = summarize(config, cases, arrays)
    summary["wall_seconds"] = time.perf_counter() - t0
    return {
        "config": dataclasses.asdict(config),
        "summary": summary,
        "cases": cases,
        "arrays": jax.tree_util.tree_map(lambda a: a.tolist(), arrays),
        "groups": list(GROUPS),
        "k_groups": list(K_GROUPS),
        "versions": {"jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__},
    }


def summarize(config: TheoryConfig, cases: list[dict], arrays: dict) -> dict:
    """Fractions of negative projections (Wilson 95% CIs) per optimizer, group and eps, overall and per
    architecture; the K-step curves' fractions and medians per optimizer and group."""
    archs = np.array([c["arch"] for c in cases])
    first, kstep = {}, {}
    for name in config.optimizers:
        inner_CxGxE = np.asarray(arrays["first"][name]["inner"])
        cos_CxGxE = np.asarray(arrays["first"][name]["cosine"])
        first[name] = {}
        for g, group in enumerate(GROUPS):
            first[name][group] = {
                "fraction_negative": [_share(inner_CxGxE[:, g, e], NEGATIVE) for e in range(inner_CxGxE.shape[2])],
                "median_cosine": [float(np.nanmedian(cos_CxGxE[:, g, e])) for e in range(cos_CxGxE.shape[2])],
                "fraction_negative_by_arch": {
                    a: [_share(inner_CxGxE[archs == a, g, e], NEGATIVE) for e in range(inner_CxGxE.shape[2])]
                    for a in dict.fromkeys(archs)},
            }
        kstep[name] = {}
        for g, group in enumerate(K_GROUPS):
            ip, cs, dlt = (np.asarray(arrays["kstep"][name][k])[:, g] for k in
                           ("inner_K", "cosine_K", "teacher_loss_change_K"))
            kstep[name][group] = {
                "fraction_negative": [_share(ip[:, k], NEGATIVE) for k in range(ip.shape[1])],
                "fraction_teacher_loss_rises": [_share(dlt[:, k], POSITIVE) for k in range(ip.shape[1])],
                "median_cosine": np.nanmedian(cs, axis=0).tolist(),
                "cosine_quartiles": np.nanquantile(cs, [0.25, 0.75], axis=0).tolist(),
            }
    lim = np.asarray(arrays["sign_limit"]["inner"])  # [C, 2]
    out = {
        "n_cases": len(cases),
        "optimizer_eps": list(config.optimizer_eps),
        "k_steps": list(config.k_steps),
        "k_step_eps": config.k_step_eps,
        "first_step": first,
        "kstep": kstep,
        "sign_limit_fraction_negative": {"lemma": _share(lim[:, 0], NEGATIVE), "theorem": _share(lim[:, 1], NEGATIVE)},
        "sign_limit_fraction_negative_by_arch": {a: _share(lim[archs == a], NEGATIVE) for a in dict.fromkeys(archs)},
    }
    out["kstep_cases_nonfinite"] = {  # runs that diverged somewhere along K (left out of the fractions above)
        name: int(np.sum(~np.isfinite(np.asarray(arrays["kstep"][name]["inner_K"])).all(axis=(1, 2))))
        for name in config.optimizers}
    if "signsgd" in config.optimizers:
        # The sign step at the smallest eps should already sit at its limit: the share of cases whose sign matches.
        s = np.asarray(arrays["first"]["signsgd"]["inner"])[:, [0, 2], 0]  # shared-init groups, smallest eps
        out["signsgd_matches_limit_at_smallest_eps"] = float(np.mean(np.sign(s) == np.sign(lim)))
    return out


def table_rows(data: dict) -> list[str]:
    """The printed report: the share of negative first-step and K-step projections per optimizer."""
    s = data["summary"]
    eps = s["optimizer_eps"]
    rows = [f"{s['n_cases']} cases; first-step projection dS.dT < 0 (shared init; random dT | dT = -grad L_T), "
            f"by teacher distance eps:"]
    rows.append(f"{'optimizer':<11}" + "".join(f"{'eps=' + format(e, 'g'):>22}" for e in eps))
    for name, groups in s["first_step"].items():
        cells = [f"{groups['lemma_shared']['fraction_negative'][e]['fraction']:>10.1%} | "
                 f"{groups['theorem_shared']['fraction_negative'][e]['fraction']:<8.1%}" for e in range(len(eps))]
        rows.append(f"{name:<11}" + "".join(f"{c:>22}" for c in cells))
    lim = s["sign_limit_fraction_negative"]
    rows.append(f"sign step's eps->0 limit lr*sign(J^T M J dT): {lim['lemma']['fraction']:.1%} | "
                f"{lim['theorem']['fraction']:.1%} negative")
    ks = s["k_steps"]
    rows += ["", f"K steps against the Theorem-1 teacher at eps={s['k_step_eps']:g}: share with "
             f"(theta_K - start).dT < 0 | share whose L_T rose, shared init (other init), at K = {ks[0]}, {ks[-1]}:"]
    for name, groups in s["kstep"].items():
        sh, ot = groups["theorem_shared"], groups["theorem_other"]
        rows.append(
            f"{name:<11}" + "".join(
                f"  K={ks[k]:<4}{sh['fraction_negative'][k]['fraction']:>6.1%} | "
                f"{sh['fraction_teacher_loss_rises'][k]['fraction']:<6.1%}"
                f"({ot['fraction_negative'][k]['fraction']:.0%} | "
                f"{ot['fraction_teacher_loss_rises'][k]['fraction']:.0%})"
                for k in (0, len(ks) - 1)))
    diverged = {k: v for k, v in s["kstep_cases_nonfinite"].items() if v}
    if diverged:
        rows.append("diverged along K (left out of the shares): "
                    + ", ".join(f"{k} {v} cases" for k, v in diverged.items()))
    rows.append(f"wall time {s['wall_seconds']:.0f} s")
    return rows
