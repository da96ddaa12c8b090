"""theory.stats.spearman_ci: the rank correlation every scatter reports (the MNIST transfer map, the LLM ladder)."""

from __future__ import annotations

import numpy as np
import pytest

from theory.stats import spearman_ci
from theory.tolerances import tolerances

TOL = tolerances("float64")


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + rng.normal(scale=0.8, size=n)


def test_r_is_the_pearson_correlation_of_the_ranks():
    x, y = _data()  # continuous draws: no ties, so ranks are a plain argsort
    rx, ry = (np.argsort(np.argsort(v)).astype(float) for v in (x, y))
    direct = np.corrcoef(rx, ry)[0, 1]
    out = spearman_ci(x, y)
    np.testing.assert_allclose(out["spearman_r"], direct, rtol=TOL.rtol)
    assert out["n"] == len(x)
    lo, hi = out["ci95"]
    assert lo < out["spearman_r"] < hi
    assert out == spearman_ci(x, y)  # fixed seed: the same interval


def test_r_and_its_bootstrap_are_scipys_bit_for_bit():
    """The rank correlation (``_spearman_r``, thousands of times per CI) equals scipy's ``spearmanr`` exactly, ties
    included (average ranks), and so does a CI recomputed with scipy's function in its place."""
    from scipy.stats import rankdata, spearmanr

    from theory import stats

    rng = np.random.default_rng(7)
    for n in (3, 4, 7, 24, 101):
        for ties in (None, 3, n // 2 + 1):
            x = rng.normal(size=n) if ties is None else rng.integers(0, ties, n).astype(float)
            y = rng.integers(0, 4, n).astype(float) if ties else x + rng.normal(size=n)
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            assert stats._average_ranks(x).tobytes() == rankdata(x).tobytes()
            assert stats._spearman_r(x, y) == float(spearmanr(x, y).statistic), (n, ties)
    x, y = np.repeat(_data(12)[0], 2), rng.integers(0, 5, 24).astype(float)  # ties in both
    fast = spearman_ci(x, y, groups=list(np.repeat(np.arange(12), 2)), n_boot=300)
    scipys = pytest.MonkeyPatch.context()
    with scipys as m:
        m.setattr(stats, "_spearman_r", lambda a, b: float(spearmanr(a, b).statistic))
        assert spearman_ci(x, y, groups=list(np.repeat(np.arange(12), 2)), n_boot=300) == fast


def test_grouped_bootstrap_moves_a_group_as_one_point():
    """Each point copied 5 times, grouped by its original: the group bootstrap draws the same resamples as the
    point bootstrap of the originals (same seed), and ties of copies keep Spearman's r, so both CIs agree. The point
    bootstrap of the copies treats them as independent and is narrower."""
    x, y = _data()
    xs, ys, g = np.repeat(x, 5), np.repeat(y, 5), np.repeat(np.arange(len(x)), 5)
    single, grouped, naive = spearman_ci(x, y), spearman_ci(xs, ys, groups=list(g)), spearman_ci(xs, ys)
    np.testing.assert_allclose(grouped["spearman_r"], single["spearman_r"], rtol=TOL.rtol)
    np.testing.assert_allclose(grouped["ci95"], single["ci95"], rtol=TOL.rtol)
    assert naive["ci95"][1] - naive["ci95"][0] < 0.7 * (grouped["ci95"][1] - grouped["ci95"][0])


def test_too_few_points_or_a_constant_give_no_correlation_and_bad_input_an_error():
    assert spearman_ci([1.0, 2.0], [2.0, 1.0]) == {}
    assert spearman_ci([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]) == {}
    with pytest.raises(ValueError, match="one length"):
        spearman_ci([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        spearman_ci([1.0, 2.0, np.nan], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="group labels"):
        spearman_ci([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], groups=[0, 1])


def test_hierarchical_ci_carries_the_spread_between_teachers():
    """Planted nested data: 6 teachers whose means differ a lot, 4 tight students each. The teacher-level CI must be
    the t-interval on the teacher means (a bootstrap over single students would pretend to 24 independent values
    and come out far narrower), the two-stage bootstrap about as wide, both bracket the mean of the teacher means,
    and one teacher gives no CI."""
    from scipy.stats import t as student_t

    from theory.stats import bootstrap_ci, hierarchical_ci

    rng = np.random.default_rng(0)
    teacher_means = rng.normal(0.0, 1.0, 6)
    groups = [m + rng.normal(0.0, 0.01, 4) for m in teacher_means]
    out = hierarchical_ci(groups, n_boot=4000)
    means = np.array([g.mean() for g in groups])
    np.testing.assert_allclose(out["mean"], means.mean(), rtol=TOL.rtol)
    half = student_t.ppf(0.975, 5) * means.std(ddof=1) / np.sqrt(6)
    np.testing.assert_allclose(out["ci95"], [means.mean() - half, means.mean() + half], rtol=TOL.rtol)
    assert out["n_groups"] == 6 and out["n"] == 24
    flat_lo, flat_hi = bootstrap_ci(np.concatenate(groups))
    for lo, hi in (out["ci95"], out["ci95_bootstrap"]):
        assert lo < out["mean"] < hi
        assert (hi - lo) > 1.5 * (flat_hi - flat_lo)  # the teacher level widens it
    # the bootstrap's width matches the teacher-level standard error, 2 x 1.96 x sd / sqrt(6), within 40%
    lo, hi = out["ci95_bootstrap"]
    expected = 2 * 1.96 * np.std(teacher_means, ddof=1) / np.sqrt(6)
    assert 0.6 * expected < hi - lo < 1.4 * expected
    assert out == hierarchical_ci(groups, n_boot=4000)  # fixed seed: the same interval
    one = hierarchical_ci(groups[:1])
    assert np.isnan(one["ci95"][0]) and np.isnan(one["ci95_bootstrap"][0])
    assert one["mean"] == pytest.approx(groups[0].mean())


def test_hierarchical_ci_coverage_with_three_teachers():
    """The replication's design, 3 teachers x 2 students whose spread is mostly between teachers, drawn 400 times
    around a known mean: the t-interval covers it about 95% of the time; the two-stage percentile bootstrap, which 3
    resampled teachers make too narrow, clearly less (why ``ci95`` is the t-interval)."""
    from theory.stats import hierarchical_ci

    rng = np.random.default_rng(1)
    hit_t = hit_boot = 0
    sims = 400
    for _ in range(sims):
        groups = [m + rng.normal(0.0, 0.2, 2) for m in rng.normal(0.0, 1.0, 3)]
        out = hierarchical_ci(groups, n_boot=500, seed=int(rng.integers(1 << 30)))
        hit_t += out["ci95"][0] <= 0.0 <= out["ci95"][1]
        hit_boot += out["ci95_bootstrap"][0] <= 0.0 <= out["ci95_bootstrap"][1]
    assert 0.91 <= hit_t / sims <= 0.99
    assert hit_boot / sims < 0.88


def test_stratified_spearman_is_the_within_group_rank_correlation():
    """Planted: three teachers whose levels differ by far more than their slopes. Within each, y falls with x, so
    the within-group r is -1 and the permutation test finds it one-sided only in that direction, although the
    pooled r (the offsets) is positive; per-group r matches scipy; shuffled data give a p-value far from 0."""
    from scipy.stats import spearmanr

    from theory.stats import spearman_ci, stratified_spearman

    x = np.tile([0.25, 0.5, 0.75, 1.0], 3) + np.repeat([0.0, 10.0, 20.0], 4)
    y = -np.tile([0.25, 0.5, 0.75, 1.0], 3) + np.repeat([0.0, 10.0, 20.0], 4)
    g = np.repeat([0, 1, 2], 4).tolist()
    assert spearman_ci(x, y)["spearman_r"] > 0.5
    out = stratified_spearman(x, y, g, n_perm=5000)
    assert out["within_r"] == pytest.approx(-1.0) and out["n_groups"] == 3 and out["n"] == 12
    assert out["p_one_sided"] > 0.99  # the one-sided test asks for a positive r
    up = stratified_spearman(x, -y + 2 * np.repeat([0.0, 10.0, 20.0], 4), g, n_perm=5000)
    assert up["within_r"] == pytest.approx(1.0) and up["p_one_sided"] < 0.01
    rng = np.random.default_rng(0)
    noisy = y + rng.normal(0, 1.0, 12)
    out = stratified_spearman(x, noisy, g)
    for k, i in enumerate(np.split(np.arange(12), 3)):
        assert out["per_group"][str(k)] == pytest.approx(spearmanr(x[i], noisy[i]).statistic)
    assert out == stratified_spearman(x, noisy, g)  # fixed seed
    null = stratified_spearman(x, rng.normal(size=12), g)
    assert 0.05 < null["p_one_sided"] < 0.95
    assert stratified_spearman([1.0, 2.0], [1.0, 2.0], [0, 0]) == {}
    with pytest.raises(ValueError, match="one length"):
        stratified_spearman([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0, 0])


def test_hierarchical_ci_rejects_empty_groups_and_nan():
    from theory.stats import hierarchical_ci

    with pytest.raises(ValueError, match="non-empty"):
        hierarchical_ci([[1.0, 2.0], []])
    with pytest.raises(ValueError, match="NaN"):
        hierarchical_ci([[1.0, float("nan")]])
