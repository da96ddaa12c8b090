"""`python -m mnist_mlp sweep heads --preset tiny` (3 cells, two of them trained as one stacked batch; real MNIST)
killed at three seeded points (during training; while a cell's chunk or results are written; while a figure is
written) and resumed: the sweep's JSON, the transfer map's and every cell's results.json equal an uninterrupted
run's byte for byte after removing timings."""

from __future__ import annotations

import pytest

from tests.faults.helpers import assert_clean, canonical, kill_chain, run_cli


def command(d, data) -> list[str]:
    return ["mnist_mlp", "sweep", "heads", "--preset", "tiny", "--out", f"{d}/runs", "--figures-dir", f"{d}/fig",
            "--resume", "--no-progress", "--data-dir", str(data), "--no-download"]


def outputs(d) -> list:
    return sorted((d / "runs" / "sweeps").glob("*/results.json")) + sorted((d / "fig").glob("*.json"))


@pytest.fixture(scope="module")
def ref(tmp_path_factory, mnist_root):
    d = tmp_path_factory.mktemp("sweep_ref")
    r = run_cli(command(d, mnist_root), d)
    assert r.rc == 0, r.stderr[-3000:]
    return d, r


def test_kills_at_seeded_points_then_resume_give_the_same_json(ref, tmp_path, mnist_root):
    ref_dir, ref_run = ref
    middle = [w for w in ref_run.writes if w.startswith("runs/sweeps/")]
    last = [w for w in ref_run.writes if w.startswith("fig/")]
    chain = kill_chain(command(tmp_path, mnist_root), tmp_path, ref_run, middle=middle, last=last)
    print(f"mnist_mlp sweep: {chain}")
    assert chain.kills == 3, str(chain)
    got, want = outputs(tmp_path), outputs(ref_dir)
    assert [p.relative_to(tmp_path) for p in got] == [p.relative_to(ref_dir) for p in want] and len(want) == 5
    for a, b in zip(got, want, strict=True):
        assert canonical(a) == canonical(b), f"{a} differs from the uninterrupted run's"
    assert_clean(tmp_path)
