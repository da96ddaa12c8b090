"""The sweep knobs of the Fig. 10 experiment and the sweeps themselves (mnist_mlp.sweeps, figures.mnist_sweeps)."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
from mnist_mlp import sweeps, train
from mnist_mlp.config import MnistConfig
from mnist_mlp.model import MLP, apply_fn_of

TOL32 = theory.tolerances(np.float32)


def _tiny_step_setup(runs=2, n=64, batch=32):
    module = MLP(hidden=(16,))
    apply_fn, tx, aux = apply_fn_of(module), optax.adam(1e-2), module.aux_indices()
    k = jax.random.split(jax.random.key(11), 5)
    init = jax.vmap(module.init_params)(jax.random.split(k[0], runs))
    teacher = jax.vmap(module.init_params)(jax.random.split(k[1], runs))
    other = jax.vmap(module.init_params)(jax.random.split(k[2], runs))
    noise = jax.random.split(k[3], runs)
    idx, mask = train.epoch_batches_R(jax.random.split(k[4], runs), 0, n, batch)

    def fresh():
        return ({name: (jax.tree_util.tree_map(jnp.copy, init), jax.vmap(tx.init)(init)) for name in train.STUDENTS},
                train.empty_targets(runs, n, module.n_out))

    return module, apply_fn, tx, aux, init, teacher, other, noise, idx, mask, fresh


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def test_ablation_along_a_zero_direction_is_a_no_op_and_along_dT_leaves_no_component():
    module, apply_fn, tx, aux, init, teacher, other, noise, idx, mask, fresh = _tiny_step_setup()
    zeros = {name: jax.tree_util.tree_map(jnp.zeros_like, init) for name in train.STUDENTS}
    plain, _, _ = train.student_step(apply_fn, tx, aux, *fresh(), teacher, other, noise, idx[:, 0], mask[:, 0],
                                     fill=True)
    ablated, _, _ = train.student_step(apply_fn, tx, aux, *fresh(), teacher, other, noise, idx[:, 0], mask[:, 0],
                                       fill=True, directions=zeros)
    assert _leaves_equal(plain, ablated)
    # along the teacher's update: the step keeps nothing along dT (and something else, so it is not the zero step)
    dT = jax.tree_util.tree_map(jnp.subtract, teacher, init)
    dirs = {name: dT for name in train.STUDENTS}
    cut, _, _ = train.student_step(apply_fn, tx, aux, *fresh(), teacher, other, noise, idx[:, 0], mask[:, 0],
                                   fill=True, directions=dirs)
    for name in train.STUDENTS:
        for r in range(2):
            step = jax.tree_util.tree_map(lambda a, b: a[r] - b[r], cut[name][0], init)
            d = jax.tree_util.tree_map(lambda a: a[r], dT)
            assert abs(float(theory.cosine(step, d))) < 10 * TOL32.atol
            assert float(theory.norm(step)) > 0


def test_ablated_first_step_has_no_component_along_the_direction():
    """The first-step diagnostic of an ablation cell measures the step the ablated student takes."""
    module, apply_fn, tx, aux, init, teacher, other, noise, idx, mask, fresh = _tiny_step_setup()
    x = jax.vmap(train.noise_images)(noise, idx[:, 0])
    loss = train.student_losses(aux)["aux"]
    cos, _ = train.first_step_diagnostic(apply_fn, loss, init, teacher, init, x)
    dT = jax.tree_util.tree_map(jnp.subtract, teacher, init)
    cut, proj = train.first_step_diagnostic(apply_fn, loss, init, teacher, init, x, dT)
    assert np.all(np.asarray(cos) > 0.01)
    np.testing.assert_allclose(cut, 0.0, atol=10 * TOL32.atol)
    np.testing.assert_allclose(proj, 0.0, atol=10 * TOL32.atol)


def test_cli_refuses_experiment_options_before_sweep():
    from typer.testing import CliRunner

    from mnist_mlp.__main__ import app

    r = CliRunner().invoke(app, ["--runs", "3", "sweep", "init"], env={"COLUMNS": "200"})
    assert r.exit_code != 0 and "--runs is an option of the Fig. 10 experiment" in r.output
    r = CliRunner().invoke(app, ["sweep", "depth"], env={"COLUMNS": "200"})
    assert r.exit_code != 0 and "unknown sweep 'depth'" in r.output


def test_alignment_is_the_cosine_of_the_two_gradients():
    module, apply_fn, tx, aux, init, teacher, other, noise, idx, mask, fresh = _tiny_step_setup()
    x_task = jax.random.uniform(jax.random.key(3), (20, 784), minval=-1, maxval=1)
    y_task = jnp.arange(20) % 10
    _, _, values = train.student_step(apply_fn, tx, aux, *fresh(), teacher, other, noise, idx[:, 0], mask[:, 0],
                                      fill=True, task_batch=(x_task, y_task))
    loss = train.student_losses(aux)["aux"]
    for r in range(2):
        p = jax.tree_util.tree_map(lambda a: a[r], init)
        t = jax.tree_util.tree_map(lambda a: a[r], teacher)
        x = train.noise_images(noise[r], idx[r, 0])
        g_s = jax.grad(lambda q: loss(apply_fn(q, x), apply_fn(t, x)))(p)
        g_t = jax.grad(lambda q: train.class_ce(apply_fn, q, x_task, y_task).mean())(p)
        np.testing.assert_allclose(values["alignment"]["aux_same"][r], theory.cosine(g_s, g_t), rtol=1e-4, atol=1e-5)


def test_student_losses_by_name():
    aux = (10, 11, 12)
    assert train.student_losses(aux)["aux"] == theory.kl_divergence(subset=aux)
    assert train.student_losses(aux, "mse")["all"] == theory.squared_error()
    assert train.student_losses(aux, "kl_t2")["aux"] == theory.kl_divergence(subset=aux, temperature=2.0)
    with pytest.raises(ValueError, match="unknown student loss"):
        train.student_losses(aux, "hinge")


def test_one_aux_logit_gives_the_kl_student_nothing_to_learn():
    """Why the aux sweep's m = 1 cell sits at its init: the softmax over one logit is 1 whatever the logit, so the KL
    and its gradient vanish for any teacher (the MSE loss still has a signal there)."""
    key_s, key_t = jax.random.split(jax.random.key(0))
    student_BxK, teacher_BxK = jax.random.normal(key_s, (4, 11)), jax.random.normal(key_t, (4, 11))
    kl = train.student_losses((10,))["aux"]
    value, grad = jax.value_and_grad(kl)(student_BxK, teacher_BxK)
    assert float(jnp.abs(value)) < 1e-7 and not jnp.any(grad)
    mse = train.student_losses((10,), "mse")["aux"]
    assert float(jnp.abs(jax.grad(mse)(student_BxK, teacher_BxK)[:, 10]).sum()) > 0.1
    value3, grad3 = jax.value_and_grad(train.student_losses((8, 9, 10))["aux"])(student_BxK, teacher_BxK)
    assert float(value3) > 1e-3 and jnp.any(grad3)  # with 3 aux logits there is one


def test_liminal_zero_is_the_plain_teacher_step_and_lambda_keeps_aux_near_the_init():
    module = MLP(hidden=(16,))
    apply_fn, tx, aux = apply_fn_of(module), optax.adam(1e-2), module.aux_indices()
    k = jax.random.split(jax.random.key(5), 4)
    x = jax.random.uniform(k[0], (256, 784), minval=-1, maxval=1)
    y = jax.random.randint(k[1], (256,), 0, 10)
    init = jax.vmap(module.init_params)(jax.random.split(k[2], 2))
    idx, mask = train.epoch_batches_R(jax.random.split(k[3], 2), 0, 256, 64)

    def fit(liminal):
        p = jax.tree_util.tree_map(jnp.copy, init)
        opt = jax.vmap(tx.init)(p)
        for _ in range(5):
            for s in range(idx.shape[1]):
                p, opt, _ = train.teacher_step(apply_fn, tx, p, opt, x, y, idx[:, s], mask[:, s], init,
                                               liminal=liminal, aux=aux)
        return p

    plain = jax.tree_util.tree_map(jnp.copy, init)
    opt = jax.vmap(tx.init)(plain)
    for _ in range(5):
        for s in range(idx.shape[1]):
            plain, opt, _ = train.teacher_step(apply_fn, tx, plain, opt, x, y, idx[:, s], mask[:, s])
    assert _leaves_equal(fit(0.0), plain)
    kl = theory.kl_divergence(subset=aux)

    def aux_drift(p):
        return np.mean([float(kl(apply_fn(jax.tree_util.tree_map(lambda a: a[r], p), x),
                                 apply_fn(jax.tree_util.tree_map(lambda a: a[r], init), x))) for r in range(2)])

    assert aux_drift(fit(10.0)) < 0.5 * aux_drift(plain)


class _Bare:
    """An Experiment's student_starts without loading data."""

    def __init__(self, config):
        from mnist_mlp.experiment import Experiment

        self.config, self.module = config, MLP(hidden=config.hidden, n_aux=config.n_aux)
        self.starts = lambda runs, ref: Experiment.student_starts(self, runs, ref)


def test_student_starts_sigma_and_reinit():
    from mnist_mlp.experiment import run_keys

    cfg = MnistConfig(runs=2, hidden=(64, 64))
    runs = range(2)
    ref = jax.vmap(MLP(hidden=(64, 64)).init_params)(run_keys(0, "init", runs))
    fresh = jax.vmap(MLP(hidden=(64, 64)).init_params)(run_keys(0, "student_init", runs))
    assert _Bare(cfg).starts(runs, ref) is ref  # sigma = 0: the shared init itself
    one = _Bare(dataclasses.replace(cfg, init_sigma=1.0)).starts(runs, ref)
    assert _leaves_equal(one, fresh)  # sigma = 1: a fresh init
    half = _Bare(dataclasses.replace(cfg, init_sigma=0.6)).starts(runs, ref)
    w, w0 = np.asarray(half["Dense_1"]["kernel"]), np.asarray(ref["Dense_1"]["kernel"])
    assert abs(w.std() / w0.std() - 1) < 0.05  # the init's scale is kept
    np.testing.assert_allclose(np.corrcoef(w.ravel(), w0.ravel())[0, 1], 0.8, atol=0.03)  # sqrt(1 - 0.36)
    hidden = _Bare(dataclasses.replace(cfg, reinit="hidden")).starts(runs, ref)
    heads = _Bare(dataclasses.replace(cfg, reinit="heads")).starts(runs, ref)
    for layer in ("Dense_0", "Dense_1"):
        assert _leaves_equal(hidden[layer], fresh[layer]) and _leaves_equal(heads[layer], ref[layer])
    assert _leaves_equal(hidden["Dense_2"], ref["Dense_2"]) and _leaves_equal(heads["Dense_2"], fresh["Dense_2"])


def test_knobs_at_their_defaults_keep_the_fingerprint_and_bad_values_fail():
    base = MnistConfig.quick()
    assert dataclasses.replace(base, init_sigma=0.0, ablate="none").fingerprint() == base.fingerprint()
    assert "init_sigma" not in base.science_dict()
    assert dataclasses.replace(base, init_sigma=0.1).fingerprint() != base.fingerprint()
    for kw, msg in ((dict(init_sigma=1.5), "init_sigma"), (dict(student_loss="l1"), "student_loss"),
                    (dict(student_inputs="cifar"), "student_inputs"), (dict(dataset="kmnist"), "dataset"),
                    (dict(reinit="all"), "reinit"), (dict(ablate="x"), "ablate"), (dict(liminal=-1.0), "liminal"),
                    (dict(teacher_epochs=0), "teacher_epochs"), (dict(student_epochs=0), "student_epochs")):
        with pytest.raises(ValueError, match=msg):
            MnistConfig(**kw)
    # the teachers' own fingerprint: the students' knobs keep it (such cells share teachers), the teachers' change it
    students_only = dict(student_inputs="mnist", student_epochs=1, student_loss="mse", student_optimizer="sgd",
                         student_lr=0.1, init_sigma=0.3, reinit="heads", ablate="teacher", log_alignment=True,
                         n_noise=1024, eval_subset=64, chunk_size=2, teacher_epochs=base.epochs)
    for k, v in students_only.items():
        assert dataclasses.replace(base, **{k: v}).teacher_fingerprint() == base.teacher_fingerprint(), k
    teachers = dict(seed=1, hidden=(8,), n_aux=1, batch_size=512, lr=1e-3, dataset="fashion", liminal=0.1,
                    teacher_epochs=1, epochs=2)
    for k, v in teachers.items():
        assert dataclasses.replace(base, **{k: v}).teacher_fingerprint() != base.teacher_fingerprint(), k
    with pytest.raises(ValueError, match="unknown sweep"):
        sweeps.cell_configs("depth", "quick")
    with pytest.raises(ValueError, match="unknown preset"):
        sweeps.cell_configs("init", "medium")


def test_every_sweep_builds_valid_distinct_cells():
    for name, sw in sweeps.SWEEPS.items():
        cells = sweeps.cell_configs(name, "full")
        assert len({c.fingerprint() for _, c in cells}) == len(cells), name
        assert all(c.runs >= 25 for _, c in cells)
    base = sweeps.base_config("full")
    assert sweeps.cell_configs("init", "full")[0][1] == base  # sigma = 0 is the Fig. 10 protocol itself
    # a cell that sets a knob to what its default stands for (5 epochs, Adam at lr) is the baseline: one fingerprint
    same = {name for name in sweeps.SWEEPS for _, c in sweeps.cell_configs(name, "full")
            if c.fingerprint() == base.fingerprint()}
    assert {"init", "student_epochs", "teacher_epochs", "optimizer", "ablation"} <= same
    assert dataclasses.replace(base, student_lr=base.lr).fingerprint() == base.fingerprint()


def test_stack_groups_join_only_cells_whose_shapes_agree():
    groups = {name: sweeps.stack_groups([c for _, c in sweeps.cell_configs(name, "full")]) for name in sweeps.SWEEPS}
    assert groups["init"] == [[0], [1, 2, 3, 4], [5]]  # the Fig. 10 cell alone; 4 cells x 25 runs per batch
    assert groups["ablation"] == [[0], [1, 2]] and groups["heads"] == [[0], [1, 2]]
    for name in set(sweeps.SWEEPS) - {"init", "ablation", "heads"}:  # widths, losses, optimizers, ...: apart
        assert groups[name] == [[i] for i in range(len(sweeps.SWEEPS[name].cells))], name
    init = [c for _, c in sweeps.cell_configs("init", "full")]
    assert sweeps.stack_groups(init, max_runs=50) == [[0], [1, 2], [3, 4], [5]]
    assert sweeps.stack_groups(init, max_runs=1) == [[i] for i in range(6)]
    # a sweep-wide override can make two cells one configuration: that one is not stacked with itself
    assert sweeps.stack_groups([c for _, c in sweeps.cell_configs("heads", "quick", reinit="hidden")]) == [[0, 2], [1]]


def test_stacked_cells_get_the_numbers_each_gets_alone(mnist_root, tmp_path):
    """Cells that differ only in the students' start and ablation direction train as one vmapped batch
    (experiment.run_stacked): one set of teachers, each cell its own run folder and its own numbers (up to float32
    rounding: the batch is 3 times larger); resumed, they load as they were."""
    from mnist_mlp import experiment
    from tests.mnist_mlp.helpers import assert_same_numbers

    kw = dict(hidden=(32,), n_noise=2048, eval_subset=256, data_dir=str(mnist_root))
    configs = [sweeps.base_config("quick", **kw, **o)
               for o in (dict(init_sigma=0.3), dict(ablate="teacher"), dict(reinit="hidden", ablate="random"))]
    stacked = experiment.run_stacked(configs, tmp_path / "stacked", progress=False)
    for c, res in zip(configs, stacked, strict=True):
        assert res["config"] == dataclasses.asdict(c) and res["timings"]["stacked_cells"] == 3
        alone = experiment.run(c, tmp_path / "alone", progress=False)
        assert_same_numbers(res["per_run"], alone["per_run"])
    dirs = [tmp_path / "stacked" / experiment.run_name(c) for c in configs]
    assert all((d / "results.json").exists() for d in dirs)
    metas = [experiment.load_meta(d / "teachers_000.npz") for d in dirs]
    assert "reused_from" not in metas[0] and metas[1]["reused_from"] == metas[2]["reused_from"] == dirs[0].name
    chunk = json.loads((dirs[1] / "students_000.json").read_text())
    assert chunk["fingerprint"] == configs[1].fingerprint() and chunk["stacked_with"] == [dirs[0].name, dirs[2].name]
    again = experiment.run_stacked(configs, tmp_path / "stacked", resume=True, progress=False)
    assert [r["per_run"] for r in again] == [r["per_run"] for r in stacked]
    # which cells trained together is read from the chunk files, so a resumed (loaded) cell still says it
    assert [r["stacked_with"] for r in again] == [r["stacked_with"] for r in stacked] == [
        sorted(d.name for d in dirs if d != own) for own in dirs]
    # a cell whose own teachers (kept from an earlier run) are not the group's trains apart, with its own teachers
    folder = tmp_path / "mixed"
    lone = experiment.run(configs[2], folder, progress=False)
    lone_dir = folder / experiment.run_name(configs[2])
    (lone_dir / "students_000.json").unlink()
    params, meta = experiment._load_params(lone_dir / "teachers_000.npz", experiment.Experiment(
        configs[2], folder, progress=False).references(range(2)))
    nudged = jax.tree_util.tree_map(lambda a: a * (1 + 1e-3), params)
    # (and not offered to its neighbours, which therefore train their own)
    experiment._save_params(lone_dir / "teachers_000.npz", nudged, {**meta, "teacher_fingerprint": None})
    mixed = experiment.run_stacked(configs, folder, resume=True, progress=False)
    chunks = [json.loads((folder / experiment.run_name(c) / "students_000.json").read_text()) for c in configs]
    assert chunks[0]["stacked_with"] == [experiment.run_name(configs[1])] and "stacked_with" not in chunks[2]
    assert mixed[2]["stacked_with"] == [] and mixed[0]["stacked_with"] == [experiment.run_name(configs[1])]
    assert mixed[2]["per_run"]["teacher"] == lone["per_run"]["teacher"]  # its file's teachers, as reported
    assert mixed[2]["per_run"]["aux_same"]["accuracy"] != lone["per_run"]["aux_same"]["accuracy"] or \
        mixed[2]["per_run"]["aux_same"]["final_imitation_loss"] != lone["per_run"]["aux_same"]["final_imitation_loss"]
    with pytest.raises(ValueError, match="differ only in"):
        experiment.run_stacked([configs[0], dataclasses.replace(configs[0], n_aux=1)], tmp_path, progress=False)
    with pytest.raises(ValueError, match="twice"):
        experiment.run_stacked([configs[0], configs[0]], tmp_path, progress=False)


def test_a_rows_stacked_with_and_compute_time_come_from_its_results(monkeypatch, tmp_path):
    """run_sweep's bookkeeping, with the training replaced: a row names the cells its chunk files say it trained
    with (by label, in the sweep's order, whatever the grouping now), and compute time unknown anywhere is unknown
    in the total (None), not zero."""
    from mnist_mlp import experiment

    configs = sweeps.cell_configs("init", "quick")
    label = {experiment.run_name(c): lab for lab, c in configs}
    told = {"0.01": ["0.3", "0.03"], "0.03": ["0.3", "0.01"], "0.3": ["0.03", "0.01"]}  # as if stacked once
    missing = set()

    def fake_run_stacked(group, out, *, resume, progress):
        byname = {lab: d for d, lab in label.items()}
        return [{"timings": {"teachers_compute_s": 1.0,
                             "students_compute_s": None if label[experiment.run_name(c)] in missing else 2.0},
                 "stacked_with": sorted(byname[lab] for lab in told.get(label[experiment.run_name(c)], []))}
                for c in group]

    monkeypatch.setattr(experiment, "run_stacked", fake_run_stacked)
    monkeypatch.setattr(sweeps, "summarize_cell", lambda res: {})
    res = sweeps.run_sweep("init", "quick", out_dir=tmp_path, progress=False)
    rows = {r["label"]: r for r in res["cells"]}
    assert rows["0.01"]["stacked_with"] == ["0.03", "0.3"] and rows["0.3"]["stacked_with"] == ["0.01", "0.03"]
    assert "stacked_with" not in rows["0.1"] and "stacked_with" not in rows["0"]  # grouped now, not trained so
    assert res["compute_s"] == 3.0 * len(configs)
    missing.add("0.1")
    res = sweeps.run_sweep("init", "quick", out_dir=tmp_path, progress=False)
    assert res["compute_s"] is None and {r["label"] for r in res["cells"] if r["compute_s"] is None} == {"0.1"}


def test_transfer_map_counts_each_configuration_once_and_ranks():
    def cell(fp, t, proj):
        st = {"transfer": {"mean": t}, **{k: {"mean": proj} for k in ("first_step_projection", "first_step_cos",
                                                                       "total_update_cos")}}
        return {"label": fp, "fingerprint": fp, "students": {"aux_same": st, "aux_other": st}}

    a = {"sweep": "a", "cells": [cell("x", 0.1, 1.0), cell("y", 0.2, 2.0), cell("z", 0.3, 3.0)]}
    b = {"sweep": "b", "cells": [cell("x", 0.1, 1.0), cell("w", 0.0, 0.5)]}
    m = sweeps.transfer_map([a, b], n_boot=100)
    assert m["n"] == 8 and m["n_same_init"] == 4  # x counted once, two students each
    assert m["correlations"]["first_step_projection"]["spearman_r"] == pytest.approx(1.0)
    # the same-init students alone: here their transfer falls as the predictor rises, while the different-init
    # points at (low predictor, zero transfer) keep the pooled r positive
    def split(fp, t_same, proj_same, proj_other):
        c = cell(fp, t_same, proj_same)
        c["students"]["aux_other"] = {"transfer": {"mean": 0.0}, **{k: {"mean": proj_other} for k in (
            "first_step_projection", "first_step_cos", "total_update_cos")}}
        return c

    c = {"sweep": "c", "cells": [split("p", 0.4, 1.0, -0.1), split("q", 0.3, 2.0, -0.2), split("r", 0.2, 3.0, 0.0),
                                 split("s", 0.1, 4.0, 0.1)]}
    m = sweeps.transfer_map([c], n_boot=100)
    assert m["correlations"]["first_step_projection"]["spearman_r"] > 0.4
    assert m["correlations_same_init"]["first_step_projection"]["spearman_r"] == pytest.approx(-1.0)
    # a student that never moved (one aux logit) has no cosine: left out of that predictor's r, kept in the others
    still = split("t", 0.0, 0.0, 0.0)
    for st in ("aux_same", "aux_other"):
        still["students"][st]["total_update_cos"]["mean"] = None
    m = sweeps.transfer_map([{"sweep": "c", "cells": [*c["cells"], still]}], n_boot=100)
    assert m["correlations"]["total_update_cos"]["n"] == 8 and m["correlations"]["first_step_projection"]["n"] == 10
    flat = sweeps.transfer_map([{"sweep": "d", "cells": [cell("u", 0.1, 1.0), cell("v", 0.1, 2.0)]}], n_boot=100)
    assert flat["n"] == 4 and flat["correlations"] == {}  # a constant transfer has no rank correlation


@pytest.mark.data
def test_a_quick_sweep_end_to_end_on_real_data(mnist_root, fashion_root, tmp_path):
    """The fashion sweep (MNIST and Fashion-MNIST teachers), shrunk, through the figure script: JSON, PNG, map; its
    MNIST cell is the plain Fig. 10 experiment bit for bit (the sigma = 0 cell of the init sweep is that config)."""
    from figures import mnist_sweeps
    from mnist_mlp import experiment

    assert mnist_root == fashion_root  # both datasets under the one torchvision root
    kw = dict(hidden=(32,), n_noise=2048, eval_subset=256, data_dir=str(fashion_root))
    jp, png, data = mnist_sweeps.main("fashion", "quick", tmp_path, runs_dir=tmp_path / "runs", progress=False, **kw)
    assert png.stat().st_size > 10_000 and json.loads(jp.read_text())["sweep"] == "fashion"
    mnist_cell, fashion_cell = data["cells"]
    assert mnist_cell["teacher_accuracy"]["mean"] > 0.85  # a trained MNIST teacher
    assert 0.6 < fashion_cell["teacher_accuracy"]["mean"] < mnist_cell["teacher_accuracy"]["mean"]  # Fashion's harder
    assert (tmp_path / "mnist_transfer_map_quick_seed0.png").exists()
    plain_config = sweeps.base_config("quick", **kw)
    plain = experiment.run(plain_config, tmp_path / "plain", progress=False)
    expect = json.loads(json.dumps(sweeps.summarize_cell(plain)))  # as the sweep's JSON holds it
    assert expect == {k: mnist_cell[k] for k in expect}
    assert sweeps.cell_configs("init", "quick", **kw)[0][1] == sweeps.base_config("quick", **kw)
    # a cell that changes only the students reuses (with resume) the teachers trained beside it, which are the same
    # numbers as the sweep's own training of them; a cell with other teacher settings does not
    exp = experiment.Experiment(sweeps.base_config("quick", init_sigma=0.3, **kw), tmp_path / "plain", resume=True,
                                progress=False)
    (runs,) = experiment._chunks(exp.config)
    shared, meta = exp._teacher_chunk(0, runs, train_it=True)
    assert meta["reused_from"] == experiment.run_name(plain_config) and (exp.dir / "teachers_000.npz").exists()
    own, _ = experiment._load_params(tmp_path / "runs" / "sweeps" / experiment.run_name(plain_config) /
                                     "teachers_000.npz", shared)
    assert _leaves_equal(shared, own)
    assert exp._teacher_chunk(0, runs, train_it=False)[1]["reused_from"] == meta["reused_from"]  # its own copy now
    for other in (dict(liminal=0.1), dict(n_aux=1), dict(teacher_epochs=1)):
        exp = experiment.Experiment(sweeps.base_config("quick", **other, **kw), tmp_path / "plain", resume=True,
                                    progress=False)
        assert exp._shared_teachers(0, runs) is None, other
    again = sweeps.run_sweep("fashion", "quick", out_dir=tmp_path / "runs", resume=True, progress=False, **kw)
    again = json.loads(json.dumps(again))
    assert [c["students"] for c in again["cells"]] == [c["students"] for c in data["cells"]]  # resumed, same numbers
    # and the same rows, timings included: a resumed sweep does not churn its committed JSON
    assert again["cells"] == json.loads(jp.read_text())["cells"] and again["compute_s"] > 0
