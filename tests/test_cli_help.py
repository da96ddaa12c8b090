"""Every CLI's --help renders as text: no raw markup (backticks) and no text swallowed as a tag."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

CLIS = {"theory": [], "mnist_mlp": [[], ["sweep"]], "figures": [],
        "llm_bridge": [[], ["run"], ["study"], ["diagnose"], ["teacher"], ["first-step"]]}


@pytest.mark.parametrize("module,args", [(m, a) for m, cmds in CLIS.items() for a in (cmds or [[]])])
def test_help_renders_without_raw_markup(module, args):
    app = importlib.import_module(f"{module}.__main__").app
    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and "--help" in r.output
    assert "`" not in r.output, r.output
    if module == "theory":
        assert "theory_projection_SETTINGS.json" in r.output  # markdown mode drops <tags>: none is left
    if module == "llm_bridge" and not args:
        assert "python -m llm_bridge: the LoRA teacher" in r.output and "diagnose" in r.output
