"""Every CLI speaks the one grammar of ``results.cli``: each ``--help`` renders (no raw markup, nothing swallowed as a
tag) and opens with its description; the shared options are spelled and behave the same everywhere (``--preset``
with its choices listed, ``--out`` the run folder, ``--figures-dir`` the figure folder, ``--resume/--no-resume`` on by
default, ``--seed`` / ``--seeds``); bad input is refused in one line before any work. In-process (typer's CliRunner)
where possible; a subprocess only for what only a real process shows (help width, ``python -m`` dispatch, argparse)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from results.cli import HELP_WIDTH, PRESETS

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"

# (module, subcommand) -> the shared options that command must have; for --preset, the presets it lists
P2, P3 = ("quick", "paper"), PRESETS
STAGE = {"preset": P3, "out": 1, "resume": 1, "seeds": 1}
CLIS = {
    ("theory", ()): {"preset": P2, "out": 1, "figures_dir": 1, "resume": 1, "seed": 1},
    ("figures", ()): {"preset": P2, "out": 1, "figures_dir": 1, "resume": 1},
    ("mnist_mlp", ()): {"preset": P3, "out": 1, "figures_dir": 1, "resume": 1, "seed": 1},
    ("mnist_mlp", ("sweep",)): {"preset": P3, "out": 1, "figures_dir": 1, "resume": 1, "seed": 1},
    ("llm_bridge", ()): {},
    **{("llm_bridge", (s,)): STAGE for s in ("teacher", "numbers", "students", "first-step", "trait")},
    ("llm_bridge", ("run",)): {**STAGE, "figures_dir": 1},
    ("llm_bridge", ("study",)): {**STAGE, "figures_dir": 1},
    ("llm_bridge", ("ladder",)): {"preset": P3, "out": 1, "figures_dir": 1, "resume": 1},
    ("llm_bridge", ("replicate",)): {"preset": P3, "out": 1, "figures_dir": 1, "resume": 1},
    ("llm_bridge", ("scan",)): {"preset": P3, "out": 1, "resume": 1},
    ("llm_bridge", ("show-config",)): {"preset": P3},
    ("llm_bridge", ("diagnose",)): {},
    ("figures.llm_scan_fig", ()): {"preset": P3, "out": 1, "figures_dir": 1, "resume": 1},
}
SPELLING = {"preset": "--preset", "out": "--out", "figures_dir": "--figures-dir", "resume": "--resume",
            "seed": "--seed", "seeds": "--seeds"}
# benchmarks that run on a bare accelerator Python (benchmarks/gpu_check.sh: no typer there) keep argparse
ARGPARSE_BENCHMARKS = {"gpu_check", "torch_mnist"}
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "common"))
REPLOT = sorted(p.stem for p in FIGURES.glob("*.py") if "replot_cli(plot, \"figures." in p.read_text())


def app_of(module: str) -> typer.Typer:
    m = importlib.import_module(module if module.startswith(("figures.", "benchmarks.")) else f"{module}.__main__")
    return m.run_app() if hasattr(m, "run_app") else m.app


def command_of(app: typer.Typer, args) -> click.Command:
    cmd = typer.main.get_command(app)
    for name in args:
        cmd = cmd.commands[name]
    return cmd


def help_of(app: typer.Typer, args=()) -> str:
    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and "--help" in r.output
    return r.output


def check_description_first(output: str, help_text: str | None) -> None:
    """The first text after the Usage line is the command's own description (rendered: no backticks)."""
    assert help_text and help_text.strip(), "the command has no description"
    after = output.split("Usage:", 1)[1].split("\n", 1)[1]
    first = next(line.strip() for line in after.splitlines() if line.strip())
    want = " ".join(help_text.replace("`", "").split())
    assert not first.startswith(("╭", "Options", "Arguments")), f"no description before the options:\n{output}"
    assert want.startswith(" ".join(first.split())[:40]), (first, want[:80])


def shared_options(cmd: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in cmd.params if not getattr(p, "hidden", False)}


@pytest.mark.parametrize("module,args", list(CLIS), ids=[" ".join((m, *a)) for m, a in CLIS])
def test_help_speaks_the_shared_grammar(module, args):
    app = app_of(module)
    out = help_of(app, args)
    cmd = command_of(app, args)
    assert "`" not in out, out
    check_description_first(out, cmd.help)
    if module == "theory":
        assert "theory_projection_SETTINGS.json" in out  # markdown mode drops <tags>: none is left
    if module == "llm_bridge" and not args:
        assert "python -m llm_bridge: the LoRA teacher" in out and "diagnose" in out
    opts = shared_options(cmd)
    want = CLIS[module, args]
    for name, spelled in SPELLING.items():
        if name not in want:
            assert name not in opts, f"{spelled} where the table says this command has none: update CLIS"
            continue
        assert name in opts, f"missing {spelled}"
        p = opts[name]
        assert p.opts == [spelled], f"{name} is spelled {p.opts}, not {spelled}"
        if name == "preset":
            listed = "[" + "|".join(want["preset"]) + "]"
            assert p.metavar == listed and listed in out, f"--preset does not list {listed}"
        if name == "resume":
            assert p.secondary_opts == ["--no-resume"] and p.default is True, "--resume/--no-resume, on by default"
        if name in ("out", "figures_dir"):
            assert ("run folder" if name == "out" else "figure folder") in " ".join(p.help.split())
    # an option that means a folder of runs or of figures under another name
    strays = {o for p in opts.values() for o in p.opts} & {"--runs-dir", "--figures", "--quick", "--full"}
    assert not strays, strays


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_prints_its_help_and_starts_nothing(name):
    if name in ARGPARSE_BENCHMARKS:  # argparse: in a process of its own (it exits)
        r = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr
        doc = importlib.import_module(f"benchmarks.{name}").__doc__
        assert " ".join(doc.split("\n\n")[0].split())[:40] in " ".join(r.stdout.split())
        assert max(map(len, r.stdout.splitlines())) > 80  # not wrapped at 80 columns
        return
    app = app_of(f"benchmarks.{name}")
    out = help_of(app)
    check_description_first(out, command_of(app, ()).help)


@pytest.mark.parametrize("name", REPLOT)
def test_every_figure_replots_from_the_command_line(name):
    from figures.common import REGENERATE, replot_app

    assert f"figures.{name}" in REGENERATE, "say in figures.common.REGENERATE which command writes its JSON"
    mod = importlib.import_module(f"figures.{name}")
    out = help_of(replot_app(mod.plot, f"figures.{name}"))
    assert "Redraw this figure from its saved JSON" in out and "FIGURE.json" in out


def test_help_is_wider_than_80_columns_where_it_is_not_a_terminal():
    r = subprocess.run([sys.executable, "-m", "theory", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")})
    assert r.returncode == 0, r.stderr
    assert max(map(len, r.stdout.splitlines())) == HELP_WIDTH


def one_line_error(r) -> str:
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output, r.output
    return r.output


def test_arguments_are_checked_before_any_work(tmp_path):
    from mnist_mlp.__main__ import app

    # were MNIST looked for first, this would be a data error: the run count is refused before
    r = CliRunner().invoke(app, ["--runs", "-1", "--data-dir", str(tmp_path / "none"), "--no-download"])
    out = one_line_error(r)
    assert r.exit_code == 2 and "--runs" in out and "MNIST" not in out and not (tmp_path / "none").exists()
    r = CliRunner().invoke(app, ["--preset", "huge", "--data-dir", str(tmp_path / "none"), "--no-download"])
    assert r.exit_code == 2 and "choose one of tiny, quick, paper" in one_line_error(r)


def test_the_old_preset_name_full_is_paper_with_a_note(tmp_path):
    from llm_bridge.__main__ import app

    r = CliRunner().invoke(app, ["ladder", "--preset", "full", "--report", "--record", str(tmp_path / "none")])
    out = one_line_error(r)
    assert "note: --preset full is now called --preset paper" in out and "no record" in out
    r = CliRunner().invoke(app, ["run", "--preset", "full"])  # full was never a name of run's presets
    assert r.exit_code == 2 and "choose one of tiny, quick, paper" in one_line_error(r)


def test_old_option_names_still_work_with_a_note():
    from figures.__main__ import app as figures_app
    from theory.__main__ import app as theory_app

    r = CliRunner().invoke(theory_app, ["--quick", "--dtype", "float16"])  # the dtype stops it before any work
    assert "note: --quick is now called --preset quick" in r.output and r.exit_code == 2
    r = CliRunner().invoke(figures_app, ["--runs-dir", "x", "--only", "nothing"])
    assert "note: --runs-dir is now called --out" in r.output and r.exit_code == 2


@pytest.fixture
def bad_json(tmp_path) -> Path:
    p = tmp_path / "bad.json"
    p.write_text('{"summary": ')
    return p


@pytest.mark.parametrize("case", ["not json", "missing", "another figure's"])
def test_replotting_a_wrong_json_names_the_figure_in_one_line(case, bad_json, tmp_path):
    from figures import mnist_fig10
    from figures.common import replot_app

    src = {"not json": bad_json, "missing": tmp_path / "none.json",
           "another figure's": FIGURES / "theory_projection_paper_float64_seed0.json"}[case]
    r = CliRunner().invoke(replot_app(mnist_fig10.plot, "figures.mnist_fig10"), [str(src), str(tmp_path / "o.png")])
    out = one_line_error(r)
    assert r.exit_code == 1 and len(out.strip().splitlines()) == 1, out
    assert out.startswith(f"error: {src}") and "figures.mnist_fig10" in out and "python -m mnist_mlp" in out
    assert not (tmp_path / "o.png").exists()


def test_python_m_figure_replots_and_fails_in_one_line(bad_json, tmp_path):
    r = subprocess.run([sys.executable, "-m", "figures.mnist_fig10", str(bad_json), str(tmp_path / "o.png")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.match(rf"error: {re.escape(str(bad_json))} is not a JSON file .*figures\.mnist_fig10", r.stderr)
    good = FIGURES / "mnist_fig10_paper_runs100_seed0.json"
    r = subprocess.run([sys.executable, "-m", "figures.mnist_fig10", str(good), str(tmp_path / "o.png")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and (tmp_path / "o.png").stat().st_size > 10_000, r.stderr
