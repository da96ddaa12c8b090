"""The documentation speaks to an outside reader about the project alone: no word of the circumstances it was made in
("this session's machine", "No GPU was lent to this task", "resumed across sessions") and no path that exists only
where CI runs (``../shared``, which belongs in ``.ci/run``). Checked in every Markdown document of the repository
(README.md, paper_notes.md, docs/, demos/, ...), in every ``--help`` a CLI prints (the CLIs of
``tests/test_cli_help.py``, every subcommand of theirs, every benchmark, every re-plot CLI, ``python -m
mnist_mlp.data``), and in every docstring of the packages (the API reference is rendered from them)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.test_cli_help import ARGPARSE_BENCHMARKS, BENCHMARKS, CLIS, REPLOT, app_of, help_of

ROOT = Path(__file__).resolve().parents[1]

# what an outside reader cannot parse: the making of the project, and CI's own data path
BANNED = {
    "session": re.compile(r"\bsessions?\b", re.IGNORECASE),
    "lent": re.compile(r"\blent\b", re.IGNORECASE),
    "this task": re.compile(r"\bthis task\b", re.IGNORECASE),
    "../shared": re.compile(r"\.\./shared\b"),
}
PACKAGES = ("theory", "results", "mnist_mlp", "llm_bridge", "figures", "benchmarks")
SKIP_DIRS = {".git", ".venv", "runs", "site", "data", "node_modules", "__pycache__"}


def violations(text: str) -> list[str]:
    """Each banned word found, with its context. Whitespace (and the frame of rich's help boxes) is collapsed first,
    so a phrase that a line break splits is still found."""
    flat = " ".join(text.replace("│", " ").split())
    return [f"{name!r} in: ...{flat[max(0, m.start() - 80):m.end() + 80]}..."
            for name, rx in BANNED.items() for m in rx.finditer(flat)]


def markdown_files() -> list[Path]:
    out = []
    for p in sorted(ROOT.rglob("*.md")):
        rel = p.relative_to(ROOT)
        if not SKIP_DIRS.intersection(rel.parts[:-1]) and not any(part.startswith(".") for part in rel.parts):
            out.append(rel)
    return out


def test_the_documents_are_found():
    docs = {str(p) for p in markdown_files()}
    assert {"README.md", "paper_notes.md", "docs/index.md", "docs/llm.md", "demos/README.md"} <= docs, docs


@pytest.mark.parametrize("path", markdown_files(), ids=str)
def test_documents_speak_of_the_project_alone(path):
    assert not (bad := violations((ROOT / path).read_text())), f"{path}:\n" + "\n".join(bad)


def command_paths(cmd, args=()):
    """``args`` of every command under ``cmd``: itself and each subcommand, recursively (typer's groups have
    ``commands``; typer may bring its own click, so no isinstance)."""
    yield tuple(args)
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            if not getattr(sub, "hidden", False):
                yield from command_paths(sub, (*args, name))


def typer_helps():
    """(label, module, args) for every command and subcommand of the typer CLIs test_cli_help renders."""
    import typer

    modules = dict.fromkeys(m for m, _ in CLIS)
    modules.update(dict.fromkeys(f"benchmarks.{b}" for b in BENCHMARKS if b not in ARGPARSE_BENCHMARKS))
    for module in modules:
        for args in command_paths(typer.main.get_command(app_of(module))):
            yield " ".join((module, *args)), module, args


def test_every_cli_of_test_cli_help_is_walked():
    walked = {(m, a) for _, m, a in typer_helps()}
    assert set(CLIS) <= walked, set(CLIS) - walked


@pytest.mark.parametrize("module,args", [(m, a) for _, m, a in typer_helps()], ids=[x for x, _, _ in typer_helps()])
def test_help_texts_speak_of_the_project_alone(module, args):
    out = help_of(app_of(module), args)
    assert not (bad := violations(out)), "\n".join(bad)


@pytest.mark.parametrize("name", REPLOT)
def test_replot_help_speaks_of_the_project_alone(name):
    from figures.common import replot_app

    out = help_of(replot_app(importlib.import_module(f"figures.{name}").plot, f"figures.{name}"))
    assert not (bad := violations(out)), "\n".join(bad)


@pytest.mark.parametrize("module", [f"benchmarks.{b}" for b in sorted(ARGPARSE_BENCHMARKS)] + ["mnist_mlp.data"])
def test_argparse_help_speaks_of_the_project_alone(module, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and not (bad := violations(out)), "\n".join(bad)


def docstrings(path: Path):
    """(where, text) of the module's docstring and of each class's and function's."""
    tree = ast.parse(path.read_text())
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}", doc


def test_docstrings_speak_of_the_project_alone():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50
    bad = [f"{where}: {v}" for f in files for where, doc in docstrings(f) for v in violations(doc)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("text", ["On this session's AVX2 machine it took 39 min.", "No GPU was lent to this task.",
                                  "23731 s, resumed across sessions", "default `../shared/data/mnist`",
                                  "none was lent to this\n  task", "│ in $SUBLIMINAL_MNIST_GZ / ../shared │"])
def test_each_quoted_phrase_is_caught(text):
    assert violations(text)


@pytest.mark.parametrize("text", ["relentless, excellent, silent, equivalent", "shared init",
                                  "a 2-core AVX2-only EPYC"])
def test_ordinary_words_pass(text):
    assert not violations(text)
