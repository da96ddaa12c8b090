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
    """Planted nested data: 6 teachers whose means differ a lot, 4 tight students each. The two-stage bootstrap's
    CI must be about as wide as the teachers' spread says (a bootstrap over single students would pretend to 24
    independent values and come out far narrower), it must bracket the mean of the teacher means, and one teacher
    gives no CI."""
    from theory.stats import bootstrap_ci, hierarchical_ci

    rng = np.random.default_rng(0)
    teacher_means = rng.normal(0.0, 1.0, 6)
    groups = [m + rng.normal(0.0, 0.01, 4) for m in teacher_means]
    out = hierarchical_ci(groups, n_boot=4000)
    np.testing.assert_allclose(out["mean"], np.mean([g.mean() for g in groups]), rtol=TOL.rtol)
    lo, hi = out["ci95"]
    assert lo < out["mean"] < hi and out["n_groups"] == 6 and out["n"] == 24
    flat_lo, flat_hi = bootstrap_ci(np.concatenate(groups))
    assert (hi - lo) > 1.5 * (flat_hi - flat_lo)  # the teacher level widens it
    # the width matches the teacher-level standard error: 2 x 1.96 x sd(teacher means) / sqrt(6), within 40%
    expected = 2 * 1.96 * np.std(teacher_means, ddof=1) / np.sqrt(6)
    assert 0.6 * expected < hi - lo < 1.4 * expected
    assert out == hierarchical_ci(groups, n_boot=4000)  # fixed seed: the same interval
    one = hierarchical_ci(groups[:1])
    assert np.isnan(one["ci95"][0]) and one["mean"] == pytest.approx(groups[0].mean())


def test_hierarchical_ci_rejects_empty_groups_and_nan():
    from theory.stats import hierarchical_ci

    with pytest.raises(ValueError, match="non-empty"):
        hierarchical_ci([[1.0, 2.0], []])
    with pytest.raises(ValueError, match="NaN"):
        hierarchical_ci([[1.0, float("nan")]])
