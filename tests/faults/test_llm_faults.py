"""Bad numbers in the LLM training loop (``llm_bridge.train.fit``), injected through the test hook of $SUBLIMINAL_FAULTS
(``nan-loss:GLOB@STEP``, ``nan-grad:GLOB@STEP``) into real CLI runs on the tiny in-memory Llama (no download): the
run stops with one line naming the run folder, the role (teacher or student), the model, the quantity and the step,
and the model it was training is not saved."""

from __future__ import annotations

from tests.faults.helpers import run_cli


def test_a_nan_in_a_teachers_loss_stops_the_pipeline_naming_run_role_and_step(tmp_path):
    out = tmp_path / "run"
    r = run_cli(["llm_bridge", "run", "--preset", "tiny", "--seeds", "0", "--out", str(out), "--figures-dir",
                 str(tmp_path / "fig"), "--no-progress"], tmp_path, faults="nan-loss:teacher*@2")
    line = r.one_line_error()
    assert line.startswith(f"error: run {out}: teacher teacher s0: the training loss is nan at step 2 of "), line
    assert "nothing of this model was saved" in line, line
    assert not (out / "seed0" / "teacher").exists() and "run/seed0/init" in r.writes, r.writes  # it got that far
    assert not [w for w in r.writes if "teacher" in w.rsplit("/", 1)[-1] or w.endswith("results.json")], r.writes


def test_a_nan_in_a_students_gradient_stops_the_replication_naming_run_role_and_step(tmp_path):
    out = tmp_path / "out"
    r = run_cli(["llm_bridge", "replicate", "--preset", "tiny", "--out", str(out), "--teachers-dir",
                 str(tmp_path / "teachers"), "--figures-dir", str(tmp_path / "fig"), "--no-progress"], tmp_path,
                faults="nan-grad:student*@1")
    line = r.one_line_error()
    assert line.startswith(f"error: run {out}: student r0/"), line
    assert "the gradient's norm is nan at step 1 of " in line and "nothing of this model was saved" in line, line
    assert "out/teachers.json" in r.writes, r.writes  # the teachers were trained: the first student stopped it
    assert not list(out.rglob("cell.json")) and not (out / "replication.json").exists()
