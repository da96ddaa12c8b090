"""Statistics the experiments report, one implementation each: bootstrap CIs of means and of rank correlations, CIs
of nested (teacher, student) replicates, a within-group rank correlation with its permutation test, and
the log-log slope fits of the first-order error (Lemma 1's O(eps) remainder)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (fixed seed: same data, same interval); NaN for fewer than 2 values."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(v, (n_boot, v.size)).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_ci(values) -> dict:
    """Mean, percentile-bootstrap 95% CI, count and the values themselves (what every LLM summary reports)."""
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "ci95": bootstrap_ci(v), "n": int(v.size), "values": v.tolist()}


def hierarchical_ci(values_by_group, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Mean and CI for nested replicates (the LLM replication study: students within teachers); the statistic is
    the mean of the group means, so every teacher weighs the same and the CI carries the spread between teachers,
    not only within them. ``values_by_group``: one sequence per group.

    ``ci95`` (the one to report) is Student's t-interval on the group means, mean +- t_{G-1} sd / sqrt(G): each
    group mean already holds its students' noise, and with few groups (3 teachers) it keeps its nominal coverage
    where the bootstrap cannot. ``ci95_bootstrap`` is the two-stage percentile bootstrap (draw groups with
    replacement, then each drawn group's values): with 3 groups it covers only about three times in four, because
    3 resampled groups underestimate the spread (``tests/theory/test_stats.py`` measures both). Both are NaN with
    fewer than 2 groups (one teacher gives no between-teacher spread)."""
    from scipy.stats import t as student_t

    groups = [np.asarray(g, float) for g in values_by_group]
    if not groups or any(g.ndim != 1 or g.size == 0 for g in groups):
        raise ValueError("hierarchical_ci needs at least one group, each a non-empty 1-D sequence of values")
    if not all(np.isfinite(g).all() for g in groups):
        raise ValueError("hierarchical_ci got NaN or inf: a student's measurement is undefined; leave it out")
    means_G = np.array([g.mean() for g in groups])
    mean = float(means_G.mean())
    nan2 = [float("nan"), float("nan")]
    out = {"mean": mean, "ci95": nan2, "ci95_bootstrap": nan2, "n_groups": len(groups),
           "n": int(sum(g.size for g in groups)), "group_means": means_G.tolist()}
    if len(groups) < 2:
        return out
    G = len(groups)
    half = float(student_t.ppf((1 + level) / 2, G - 1) * means_G.std(ddof=1) / np.sqrt(G))
    out["ci95"] = [mean - half, mean + half]
    rng = np.random.default_rng(seed)
    pick_BxS = rng.integers(0, G, (n_boot, G))  # S = G slots per resample, each filled by a drawn group
    # every group's own resampled mean for every (resample, slot): a group drawn twice is resampled twice
    means_GxBxS = np.stack([g[rng.integers(0, g.size, (n_boot, G, g.size))].mean(axis=-1) for g in groups])
    boot_B = np.take_along_axis(means_GxBxS, pick_BxS[None], axis=0)[0].mean(axis=1)
    out["ci95_bootstrap"] = [float(v) for v in np.quantile(boot_B, [(1 - level) / 2, (1 + level) / 2])]
    return out


def stratified_spearman(x, y, groups, *, n_perm: int = 10_000, seed: int = 0) -> dict:
    """Spearman's r of (x, y) *within* each group, their mean, and a one-sided permutation p-value that shuffles y
    within every group (fixed seed). This is the test of "the diagnostic ranks transfer" when the groups (teachers)
    differ in level: a pooled r can come from the groups' offsets alone, a within-group r cannot. Groups of fewer
    than 3 points, or constant x or y, have no r and are left out; empty if none is left."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or len(groups) != x.size:
        raise ValueError(f"stratified_spearman needs x, y and groups of one length, got {x.shape}, {y.shape} and "
                         f"{len(groups)} labels")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("stratified_spearman got NaN or inf: leave undefined points out before ranking")
    labels = sorted(set(groups))
    rows = [np.array([i for i, g in enumerate(groups) if g == k]) for k in labels]
    keep = [(k, i) for k, i in zip(labels, rows) if i.size >= 3 and np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    if not keep:
        return {}
    rng = np.random.default_rng(seed)

    def r_rows(rx, ry_P):  # Pearson r of ranks = Spearman r, for P permutations of one group's y ranks at once
        a = rx - rx.mean()
        b = ry_P - ry_P.mean(axis=-1, keepdims=True)
        return (b @ a) / np.sqrt((a @ a) * (b * b).sum(axis=-1))

    per, null_P = {}, np.zeros(n_perm)
    for k, i in keep:
        rx, ry = rankdata(x[i]), rankdata(y[i])
        per[str(k)] = float(r_rows(rx, ry[None])[0])
        null_P += r_rows(rx, rng.permuted(np.broadcast_to(ry, (n_perm, ry.size)), axis=1))
    r = float(np.mean(list(per.values())))
    null_P /= len(keep)
    return {"within_r": r, "per_group": per, "n_groups": len(keep), "n": int(sum(i.size for _, i in keep)),
            "p_one_sided": float((1 + np.sum(null_P >= r - 1e-12)) / (1 + n_perm))}


def spearman_ci(x, y, *, groups=None, n_boot: int = 2000, seed: int = 0) -> dict:
    """Spearman's r of (x, y) with a 95% percentile-bootstrap CI (fixed seed: same data, same interval).

    ``groups`` (one label per point) makes the bootstrap resample whole groups, so points that share something (the
    students of one MNIST cell share its teachers) move together; ``None`` resamples single points. Empty under 3
    points or when x or y is constant (no rank correlation); the CI is ``[None, None]`` if no resample varies.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman_ci needs two 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("spearman_ci got NaN or inf: leave undefined points out before ranking (a NaN has no rank)")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {}
    if groups is None:
        rows = [[i] for i in range(x.size)]
    else:
        if len(groups) != x.size:
            raise ValueError(f"spearman_ci: {len(groups)} group labels for {x.size} points")
        rows = [[i for i, g in enumerate(groups) if g == k] for k in sorted(set(groups))]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = np.concatenate([rows[j] for j in rng.integers(0, len(rows), len(rows))])
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(_spearman_r(x[i], y[i]))
    ci = [float(v) for v in np.quantile(boots, [0.025, 0.975])] if boots else [None, None]
    return {"spearman_r": _spearman_r(x, y), "ci95": ci, "n": int(x.size)}


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """The ranks of 1-D ``v`` from 1, ties given their average rank: ``scipy.stats.rankdata(v)``, value for value
    (whole and half numbers, exact in float64), without its per-call overhead (a bootstrap ranks thousands of
    resamples)."""
    order = np.argsort(v, kind="mergesort")
    s = v[order]
    new = np.r_[True, s[1:] != s[:-1]]
    dense = np.empty(v.size, np.intp)
    dense[order] = np.cumsum(new)  # each value's group of ties, from 1, in sorted order
    count = np.r_[np.flatnonzero(new), v.size]  # where each group starts, then the end
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def _spearman_r(x, y) -> float:
    """Spearman's rank correlation of finite, non-constant x and y: scipy's ``spearmanr(x, y).statistic`` bit for
    bit (the same ranks, laid out and correlated by the same numpy calls; ``tests/theory/test_stats.py`` checks it),
    at a fraction of its cost."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ranked = np.vstack((_average_ranks(x), _average_ranks(y))).T  # scipy's layout (its apply_along_axis's)
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


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
            lx.append(x - x.mean())
            ly.append(y - y.mean())
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
