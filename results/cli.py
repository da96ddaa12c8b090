"""The one command-line grammar of the project's CLIs (``python -m theory | mnist_mlp | llm_bridge | figures``, the
re-plot CLIs of ``figures.*`` and ``python -m benchmarks.*``), built on typer:

- ``--preset tiny|quick|paper``: a CLI lists the presets it has, and its ``--help`` shows them. ``full``, the old name
  of ``paper`` in the MNIST sweeps and the LLM ladder, is still accepted, with a one-line note.
- ``--out DIR``: the run folder (checkpoints, each stage's artifacts, the run's own JSON).
- ``--figures-dir DIR``: the figure folder (each figure's JSON and PNG).
- ``--resume/--no-resume``, on by default: an artifact is reused only when the fingerprint of the settings that made
  it matches, so a rerun continues an interrupted run and recomputes whatever its settings changed; ``--no-resume``
  recomputes everything.
- ``--seed N``: the root seed (every key is split from it by role); ``--seeds 0,1,2`` where a command runs several.
- Every ``--help`` opens with its command's description, laid out 120 columns wide where it is not written to a
  terminal (a terminal's own width otherwise).
- Arguments are checked before any work starts; an old option name still works, with a one-line note.

Imports nothing of ours."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

__all__ = ["HELP_WIDTH", "OLD_PRESET_NAMES", "PRESETS", "figures_dir_option", "make_app", "note", "note_old",
           "old_option", "out_option", "preset_option", "resume_option", "seed_option", "seeds_option"]

PRESETS = ("tiny", "quick", "paper")
OLD_PRESET_NAMES = {"full": "paper"}
HELP_WIDTH = 120
RESUME_HELP = ("on by default: an artifact is reused only when its settings' fingerprint matches; --no-resume "
               "recomputes everything")


def _wide_help() -> None:
    """Lay out rich help HELP_WIDTH columns wide (at least) where it is not written to a terminal: typer's console
    otherwise falls back to 80 columns there. TERMINAL_WIDTH (typer's own setting) still wins."""
    from typer import rich_utils

    if rich_utils.MAX_WIDTH is None and not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        rich_utils.MAX_WIDTH = max(HELP_WIDTH, int(columns) if columns.isdigit() else 0)


def make_app(doc: str | None, **kw) -> typer.Typer:
    """The typer app of one CLI: its description ``doc`` (the module's ``__doc__``, None under ``python -OO``) opens
    every ``--help``; markdown help; no completion."""
    _wide_help()
    kw.setdefault("rich_markup_mode", "markdown")
    return typer.Typer(add_completion=False, help=doc, **kw)


def note(message: str) -> None:
    """One line on stderr, e.g. that an old option name was used."""
    typer.echo(f"note: {message}", err=True)


def preset_option(default: str = "quick", *, choices: tuple[str, ...] = PRESETS, old_names: dict | None = None,
                  help: str = ""):
    """``--preset``, one of ``choices`` (shown in --help as ``[tiny|quick|paper]``). ``old_names`` (e.g.
    ``OLD_PRESET_NAMES`` where ``full`` was a preset's name) are accepted for their new ones, with a note. The value
    is the preset's name as a string."""
    old_names = old_names or {}
    unknown = set(choices) - set(PRESETS)
    if unknown or default not in choices:
        raise ValueError(f"presets are among {', '.join(PRESETS)}; {default!r} must be one of {choices}")

    def parse(value: str) -> str:
        value = str(value)
        if value not in choices and old_names.get(value) in choices:
            note(f"--preset {value} is now called --preset {old_names[value]}")
            return old_names[value]
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not a preset; choose one of {', '.join(choices)}",
                                     param_hint="'--preset'")
        return value

    return typer.Option(default, "--preset", parser=parse, metavar="[" + "|".join(choices) + "]", help=help)


def out_option(default: Path | None = None, help: str = "the run folder"):
    """``--out``: the run folder."""
    return typer.Option(default, "--out", help=help)


def figures_dir_option(default: Path | None = Path("figures"), help: str = "the figure folder (each figure's JSON "
                       "and PNG)"):
    """``--figures-dir``: the figure folder."""
    return typer.Option(default, "--figures-dir", help=help)


def resume_option(help: str = "reuse the finished parts of an interrupted run"):
    """``--resume/--no-resume``, on by default (the same everywhere)."""
    return typer.Option(True, "--resume/--no-resume", help=f"{help} ({RESUME_HELP})")


def seed_option(default: int = 0, help: str = "root seed; every key is split from it by role"):
    """``--seed N``: one root seed."""
    return typer.Option(default, "--seed", help=help)


def seeds_option(help: str = "comma-separated seeds, e.g. 0,1,2 (default: the preset's)"):
    """``--seeds 0,1,2``: several seeds, as one comma-separated string (parse it where it is used)."""
    return typer.Option(None, "--seeds", help=help)


def old_option(old: str, new: str, default=None, **kw):
    """A hidden option under an old name, kept working for scripts; pair it with ``note_old(old, new)`` where used."""
    return typer.Option(default, old, hidden=True, help=f"old name of {new}", **kw)


def note_old(old: str, new: str) -> None:
    """The note printed where an old option name was used."""
    note(f"{old} is now called {new}")
