"""The packages' one-way layers (README "What is here"): theory (math + stats) and results (I/O) at the bottom, the
experiments above them, never importing each other or figures; figures and benchmarks above those; the CLIs
(every package's ``__main__``) outermost. Imports inside functions count too. No ``_private`` name crosses packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages of ours it may import (its own always). A package's __main__ is the CLI layer: anything.
ALLOWED = {
    "theory": set(),
    "results": set(),
    "mnist_mlp": {"theory", "results"},
    "llm_bridge": {"theory", "results"},
    "figures": {"theory", "results", "mnist_mlp", "llm_bridge"},
    "benchmarks": {"theory", "results", "mnist_mlp", "llm_bridge"},
}
OURS = set(ALLOWED) | {"tests", "demos"}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module imported, names taken from it) of every import statement in the file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def upward_imports(package: str) -> list[str]:
    bad = []
    for path in modules(package):
        if path.name == "__main__.py":
            continue
        for line, module, _ in imports(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def private_crossings(package: str) -> list[str]:
    bad = []
    for path in modules(package):
        for line, module, names in imports(path):
            top = module.split(".")[0]
            if top not in OURS or top == package:
                continue
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".") if p.startswith("_") and p not in ("__main__", "__init__")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line} takes {private} from {module}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_higher_layer(package):
    assert modules(package), f"package {package} has no modules: is the table out of date?"
    assert upward_imports(package) == []


@pytest.mark.parametrize("package", sorted(OURS))
def test_no_private_name_crosses_a_package_border(package):
    assert private_crossings(package) == []


def test_every_package_is_in_the_table():
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found <= OURS, f"packages missing from the layer table: {sorted(found - OURS)}"


def test_the_check_catches_upward_and_private_imports(tmp_path, monkeypatch):
    """The walker sees imports inside functions and tells the allowed (numpy) from the upward and the private."""
    pkg = tmp_path / "theory"
    pkg.mkdir()
    (pkg / "grid.py").write_text("import numpy\nfrom results import save_json\n\ndef f():\n    from mnist_mlp "
                                 "import data\n    from figures.common import _secret\n")
    (pkg / "__main__.py").write_text("from figures import theory_projection\n")  # the CLI layer may
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert upward_imports("theory") == ["theory/grid.py:2 imports results", "theory/grid.py:5 imports mnist_mlp",
                                        "theory/grid.py:6 imports figures.common"]
    assert private_crossings("theory") == ["theory/grid.py:6 takes ['_secret'] from figures.common"]
