"""``python -m theory``: check Lemma 1 and Theorem 1 over a grid of random networks; print, save JSON and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from theory.experiment import ALL_ARCHS, TheoryConfig, table_rows

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    quick: bool = typer.Option(False, "--quick", help="small grid (about 2 min on 2 CPU cores) instead of the full one"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="where to write the results JSON "
                                             "(default: OUT/theory_projection_<settings>.json)"),
    out: Path = typer.Option(Path("figures"), "--out", help="folder for the JSON and PNG"),
    seed: int = typer.Option(0, help="root seed (keys are split from it by role)"),
    dtype: str = typer.Option("float64", help="float64 (the acceptance run) or float32"),
    seeds_per_combo: Optional[int] = typer.Option(None, help="random cases per (architecture, loss, input)"),
    archs: Optional[str] = typer.Option(None, help=f"comma-separated subset of {','.join(ALL_ARCHS)}"),
    data_dir: Optional[Path] = typer.Option(None, help="MNIST root (torchvision layout); real-digit inputs are "
                                            "skipped when absent"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    from figures import theory_projection

    kw = {"seed": seed, "dtype": dtype, "data_dir": str(data_dir) if data_dir else None}
    if seeds_per_combo is not None:
        kw["seeds_per_combo"] = seeds_per_combo
    if archs:
        kw["archs"] = tuple(a.strip() for a in archs.split(","))
    config = TheoryConfig.quick(**kw) if quick else TheoryConfig.paper(**kw)
    try:
        config.validate()
    except ValueError as e:
        raise typer.BadParameter(str(e))
    jp, png, data = theory_projection.main(config, out, json_path=json_path, progress=progress)
    for line in table_rows(data):
        print(line)
    print(f"\nwrote {jp}\nwrote {png}")


if __name__ == "__main__":
    app()
