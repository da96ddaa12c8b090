"""Units of the MNIST experiment: model, losses, batching, noise, pairing, vmapped training (no real data needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
from mnist_mlp import train
from mnist_mlp.experiment import derangement
from mnist_mlp.model import MLP, apply_fn_of, n_params
from theory.stats import bootstrap_ci


def test_parameter_count_and_init_are_the_papers():
    module = MLP()
    params = module.init_params(jax.random.key(0))
    assert n_params(params) == (784 * 256 + 256) + (256 * 256 + 256) + (256 * 13 + 13) == 270_093
    w = np.asarray(params["Dense_0"]["kernel"])
    assert abs(w.std() * np.sqrt(784) - 1.0) < 0.01  # N(0, 1/fan_in), untruncated
    assert np.abs(w).max() * np.sqrt(784) > 3.5  # a truncated normal would stop at 2 std
    assert all(np.all(np.asarray(params[k]["bias"]) == 0) for k in params)
    assert module.aux_indices() == (10, 11, 12)


def test_student_loss_is_the_theory_kl_on_the_aux_subset():
    z, y = jax.random.normal(jax.random.key(1), (2, 16, 13))
    mask = jnp.ones(16, bool)
    losses = train.student_losses((10, 11, 12))
    per_example = jax.vmap(lambda a, b: losses["aux"](a[None], b[None]))(z, y)
    np.testing.assert_allclose(train.masked_mean(per_example, mask), theory.kl_divergence((10, 11, 12))(z, y),
                               rtol=1e-6)
    p, q = jax.nn.softmax(y[:, 10:]), jax.nn.log_softmax(z[:, 10:])
    manual = jnp.mean(jnp.sum(p * (jnp.log(p) - q), axis=-1))  # KL(teacher || student) by hand
    np.testing.assert_allclose(losses["aux"](z, y), manual, rtol=1e-5)
    # the masked mean ignores padded rows
    half = mask.at[8:].set(False)
    np.testing.assert_allclose(train.masked_mean(per_example, half), per_example[:8].mean(), rtol=1e-6)


def test_epoch_batches_cover_each_example_once():
    idx, mask = train.epoch_batches(jax.random.key(2), 1000, 128)
    assert idx.shape == mask.shape == (8, 128)
    seen = np.asarray(idx)[np.asarray(mask)]
    assert sorted(seen.tolist()) == list(range(1000))
    idx2, _ = train.epoch_batches(jax.random.key(3), 1000, 128)
    assert not np.array_equal(idx, idx2)  # reshuffled each epoch


def test_noise_set_is_fixed_per_key_and_index():
    key = jax.random.key(4)
    a = train.noise_images(key, jnp.array([5, 7, 5]))
    assert a.shape == (3, 784) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a[0], a[2])
    assert not np.array_equal(a[0], a[1])
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    big = train.noise_images(key, jnp.arange(200))
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1 / np.sqrt(3)) < 0.01  # uniform[-1, 1]
    assert not np.array_equal(train.noise_images(jax.random.key(5), jnp.array([5])), a[:1])
    # every pixel is a level midpoint of the 2^16 grid, and the two 16-bit halves of a word are not correlated
    levels = (np.asarray(big, np.float64) + 1.0) * train.NOISE_LEVELS / 2 - 0.5
    np.testing.assert_array_equal(levels, np.round(levels))
    assert levels.min() >= 0 and levels.max() <= train.NOISE_LEVELS - 1
    assert abs(np.corrcoef(np.asarray(big[:, :392]).ravel(), np.asarray(big[:, 392:]).ravel())[0, 1]) < 0.01


def test_first_epoch_stores_each_teachers_logits_on_the_whole_noise_set_and_later_epochs_reuse_them():
    module = MLP(hidden=(32,))
    apply_fn, tx, aux = apply_fn_of(module), optax.adam(1e-2), module.aux_indices()
    k = jax.random.split(jax.random.key(7), 5)
    n, runs = 100, 2  # 100 images in batches of 32: the last batch is padded
    init = jax.vmap(module.init_params)(jax.random.split(k[0], runs))
    teacher = jax.vmap(module.init_params)(jax.random.split(k[1], runs))
    other = jax.vmap(module.init_params)(jax.random.split(k[2], runs))
    noise = jax.random.split(k[3], runs)
    idx, mask = train.epoch_batches_R(jax.random.split(k[4], runs), 0, n, 32)
    def fresh():
        return {name: (jax.tree_util.tree_map(jnp.copy, init), jax.vmap(tx.init)(init)) for name in train.STUDENTS}
    students, targets = fresh(), train.empty_targets(runs, n, module.n_out)
    for s in range(idx.shape[1]):
        students, targets, _ = train.student_step(apply_fn, tx, aux, students, targets, teacher, other, noise,
                                                  idx[:, s], mask[:, s], fill=True)
    tol = theory.tolerances(jnp.float32)
    for r in range(runs):
        x = train.noise_images(noise[r], jnp.arange(n))
        for whose, t in (("same", teacher), ("other", other)):
            expect = apply_fn(jax.tree_util.tree_map(lambda a: a[r], t), x)
            np.testing.assert_allclose(targets[whose][r], expect, rtol=tol.rtol, atol=tol.atol)
    # one more epoch: reading the stored logits gives the students the same step as recomputing them
    idx2, mask2 = train.epoch_batches_R(jax.random.split(k[4], runs), 1, n, 32)
    def copy(tree):
        return jax.tree_util.tree_map(jnp.copy, tree)
    reused, _, _ = train.student_step(apply_fn, tx, aux, copy(students), copy(targets), teacher, other, noise,
                                      idx2[:, 0], mask2[:, 0], fill=False)
    recomputed, _, _ = train.student_step(apply_fn, tx, aux, copy(students), train.empty_targets(runs, n, module.n_out),
                                          teacher, other, noise, idx2[:, 0], mask2[:, 0], fill=True)
    for name in train.STUDENTS:
        for a, b in zip(jax.tree_util.tree_leaves(reused[name]), jax.tree_util.tree_leaves(recomputed[name])):
            np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("n", [2, 3, 5, 17, 100])
def test_derangement_never_maps_a_run_to_itself(n):
    for s in range(30):
        perm = derangement(jax.random.key(s), n)
        assert sorted(perm.tolist()) == list(range(n))
        assert not np.any(perm == np.arange(n))
    with pytest.raises(ValueError):
        derangement(jax.random.key(0), 1)


def test_vmapped_training_equals_single_run_training():
    """Runs trained side by side (vmap) follow the same trajectory as each run alone. In float64: the two compiled
    programs round differently, and Adam's first steps, g / (|g| + eps), magnify a float32 rounding of a near-zero
    gradient into a visible step difference; float64 leaves only rounding noise, held to its dtype tolerance."""
    with jax.enable_x64(True):  # (the step's masked mean promotes int counts: standard promotion, not strict)
        _vmapped_equals_alone(theory.tolerances(np.float64))


def _vmapped_equals_alone(tol):
    module = MLP(hidden=(32,))
    apply_fn, tx = apply_fn_of(module), optax.adam(1e-2)
    k = jax.random.split(jax.random.key(6), 4)
    x = jax.random.uniform(k[0], (300, 784), jnp.float64, -1, 1)
    y = jax.random.randint(k[1], (300,), 0, 10)
    init = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                  jax.vmap(module.init_params)(jax.random.split(k[2], 3)))
    idx, mask = jax.vmap(lambda kk: train.epoch_batches(kk, 300, 64))(jax.random.split(k[3], 3))

    def fit(params):
        opt = jax.vmap(tx.init)(params)
        for s in range(idx.shape[1]):
            r = jnp.arange(params["Dense_0"]["bias"].shape[0])
            params, opt, _ = train.teacher_step(apply_fn, tx, params, opt, x, y, idx[r, s], mask[r, s])
        return params

    together = fit(jax.tree_util.tree_map(jnp.copy, init))
    assert all(a.dtype == jnp.float64 for a in jax.tree_util.tree_leaves(together))
    for r in range(3):
        alone_init = jax.tree_util.tree_map(lambda a: a[r:r + 1], init)
        # same run alone: same keys, same batches
        opt = jax.vmap(tx.init)(alone_init)
        p = alone_init
        for s in range(idx.shape[1]):
            p, opt, _ = train.teacher_step(apply_fn, tx, p, opt, x, y, idx[r:r + 1, s], mask[r:r + 1, s])
        for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(together)):
            np.testing.assert_allclose(a[0], b[r], rtol=tol.rtol, atol=tol.atol)


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    v = np.random.default_rng(0).normal(0.5, 0.1, 50)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(v)
    assert abs((hi - lo) / 2 - 1.96 * v.std(ddof=1) / np.sqrt(50)) < 0.01
