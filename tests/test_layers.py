"""The packages' one-way layers (docs/reproducibility.md, "What is here"): theory (math + stats) and results (I/O)
at the bottom, the experiments above them, never importing each other or figures; figures and benchmarks above
those; the CLIs (every package's ``__main__``) outermost. Imports inside functions count too. No ``_private`` name
crosses packages."""

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


# --- the public faces: figures, benchmarks and the demos import our libraries only through them -------------------

# The libraries' faces (``__all__`` in each); results.cli, the CLIs' shared grammar, is a face of its own.
FACES = {"theory": "theory/__init__.py", "results": "results/__init__.py", "results.cli": "results/cli.py",
         "mnist_mlp": "mnist_mlp/__init__.py", "llm_bridge": "llm_bridge/__init__.py"}
LIBRARIES = {"theory", "results", "mnist_mlp", "llm_bridge"}
CLIENTS = ("figures", "benchmarks")  # and demos/*.ipynb


def face_all(face: str, root: Path | None = None) -> list[str]:
    """The face's ``__all__``, read from its source (a literal list) without importing it."""
    tree = ast.parse(((root or ROOT) / FACES[face]).read_text())
    [value] = [n.value for n in tree.body if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    return ast.literal_eval(value)


def sources(path: Path, root: Path) -> list[tuple[str, str]]:
    """(label, Python source) of a .py file, or of each code cell of a notebook (IPython's magics and shell lines
    turned into calls)."""
    import json

    from IPython.core.inputtransformer2 import TransformerManager

    where = path.relative_to(root).as_posix()
    if path.suffix != ".ipynb":
        return [(where, path.read_text())]
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return [(f"{where} code cell {i + 1}", TransformerManager().transform_cell("".join(c["source"])))
            for i, c in enumerate(cells)]


def client_files(root: Path) -> list[Path]:
    return sorted(p for d in CLIENTS for p in (root / d).rglob("*.py")) + sorted((root / "demos").glob("*.ipynb"))


def off_face_imports(path: Path, root: Path | None = None) -> list[str]:
    """Every import of a library in ``path`` (a .py file or a notebook) that is not a name of a face's ``__all__``:
    ``from theory.grid import x``, ``import theory.grid``, ``from theory import not_public``, and ``theory.x`` after
    ``import theory`` where x is not in ``theory.__all__``."""
    root = root or ROOT
    bad = []
    bound = {}  # local name -> the face it names (after `import theory` or `import theory as t`); a notebook's
    # cells share one namespace
    for where, src in sources(path, root):
        tree = ast.parse(src, where)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] not in LIBRARIES:
                        continue
                    if a.name in FACES and "." not in a.name:
                        bound[a.asname or a.name] = a.name
                    else:
                        bad.append(f"{where}:{node.lineno} imports {a.name}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] not in LIBRARIES:
                    continue
                if node.module not in FACES:
                    bad.append(f"{where}:{node.lineno} imports from {node.module}")
                    continue
                public = face_all(node.module, root)
                bad += [f"{where}:{node.lineno} takes {a.name} from {node.module} (not in its __all__)"
                        for a in node.names if a.name not in public]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                face = bound[node.value.id]
                if node.attr not in face_all(face, root):
                    bad.append(f"{where}:{node.lineno} uses {face}.{node.attr} (not in its __all__)")
    return sorted(bad, key=lambda b: (b.split(":")[0], int(b.split(":")[1].split()[0])))


def test_figures_benchmarks_and_demos_import_only_from_the_faces():
    files = client_files(ROOT)
    assert any(p.suffix == ".ipynb" for p in files) and any(p.parts[-2] == "benchmarks" for p in files)
    assert [b for p in files for b in off_face_imports(p)] == []


def lazy_table(face: str) -> dict[str, str] | None:
    """The face's ``_LAZY`` (name -> "module" or "module:attribute"), None where it has none."""
    tree = ast.parse((ROOT / FACES[face]).read_text())
    values = [n.value for n in tree.body if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in n.targets)]
    return ast.literal_eval(values[0]) if values else None


def type_checking_imports(face: str) -> dict[str, str]:
    """name -> "module:attribute" of the imports under the face's ``if TYPE_CHECKING:``."""
    tree = ast.parse((ROOT / FACES[face]).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, f"{face}: only imports under TYPE_CHECKING"
                out |= {a.asname or a.name: f"{imp.module}:{a.name}" for a in imp.names}
    return out


def own_public_names(face: str) -> set[str]:
    """The public names the face module binds itself: its functions and classes, and what it imports from its own
    package (the names it presents)."""
    tree = ast.parse((ROOT / FACES[face]).read_text())
    package = face.split(".")[0]
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            names |= {a.asname or a.name for a in node.names}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("face", sorted(FACES))
def test_every_public_name_exists_and_is_what_the_face_says(face):
    """``__all__`` is honest: no duplicates; each name resolves (after every submodule is imported, so that no
    submodule of the same name shadows it) to an object, not a module; the face's own public names are all in it;
    a lazy face's ``_LAZY`` covers exactly the names imported under ``TYPE_CHECKING`` (what type checkers and the
    API reference see) and gives the same objects."""
    import importlib
    import pkgutil

    public = face_all(face)
    assert len(public) == len(set(public)), f"{face}: duplicates in __all__"
    package = importlib.import_module(face.split(".")[0])
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    module = importlib.import_module(face)
    for name in public:
        value = getattr(module, name)  # AttributeError: a name of __all__ the face does not have
        assert not isinstance(value, type(module)), f"{face}.{name} is a module (a submodule shadows the name?)"
    assert own_public_names(face) - set(public) == set(), f"{face}: public names missing from __all__"
    lazy = lazy_table(face)
    if lazy is None:
        return
    full = {name: target if ":" in target else f"{target}:{name}" for name, target in lazy.items()}
    assert full == type_checking_imports(face), f"{face}: _LAZY and the TYPE_CHECKING imports differ"
    assert set(lazy) <= set(public), f"{face}: lazy names missing from __all__"
    for name, target in full.items():
        mod, attr = target.split(":")
        assert getattr(module, name) is getattr(importlib.import_module(mod), attr), f"{face}.{name} is not {target}"


def test_the_face_check_catches_submodule_imports_and_names_outside_all(tmp_path):
    """The face walker reports a submodule import, a name outside __all__, ``import pkg.sub``, an attribute outside
    __all__ after ``import pkg``, in a .py file and in a notebook's code cell (magics included); allowed forms pass."""
    import json

    for face, rel in FACES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"__all__ = ['ok_{face.replace('.', '_')}']\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f.py").write_text(
        "import numpy\nimport theory\nfrom theory import ok_theory\nfrom results.cli import ok_results_cli\n"
        "from theory.grid import run\n\ndef g():\n    from mnist_mlp import sweeps\n    import llm_bridge.lora\n"
        "    return theory.ok_theory, theory.hidden\n")
    (tmp_path / "demos").mkdir()
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["from theory.grid import run"]}]
    cells += [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}
              for src in (["%pip install x\n", "import theory\n"],
                          ["%matplotlib inline\n", "from llm_bridge import ok_llm_bridge\n", "from llm_bridge.scan "
                           "import scan\n", "theory.hidden\n"])]
    (tmp_path / "demos" / "n.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                                            "nbformat_minor": 5}))
    got = [b for p in client_files(tmp_path) for b in off_face_imports(p, tmp_path)]
    assert got == ["figures/f.py:5 imports from theory.grid",
                   "figures/f.py:8 takes sweeps from mnist_mlp (not in its __all__)",
                   "figures/f.py:9 imports llm_bridge.lora",
                   "figures/f.py:10 uses theory.hidden (not in its __all__)",
                   "demos/n.ipynb code cell 2:3 imports from llm_bridge.scan",
                   "demos/n.ipynb code cell 2:4 uses theory.hidden (not in its __all__)"]
