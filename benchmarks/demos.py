"""Wall time of each teaching notebook in demos/, executed top to bottom on a fresh kernel (what CI does; the README
gallery quotes these). Target: under 60 s each on 2 CPU cores. Run: ``python -m benchmarks.demos [--inplace]``;
``--inplace`` also writes the executed notebooks back, refreshing their committed outputs from the timed run, and
redraws the README gallery's thumbnails (``demos/thumbs/NN.png``: each notebook's first figure, 440 px wide)."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import typer

from results.cli import make_app

app = make_app(__doc__)
DEMOS_DIR = Path(__file__).resolve().parents[1] / "demos"
THUMB_WIDTH = 440


def write_thumbnail(nb, path: Path) -> Path | None:
    """The notebook's first PNG output, scaled to THUMB_WIDTH pixels wide, saved at ``path`` (None: no figure)."""
    from PIL import Image

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                im = Image.open(io.BytesIO(base64.b64decode(png)))
                im = im.resize((THUMB_WIDTH, round(im.height * THUMB_WIDTH / im.width)), Image.LANCZOS)
                path.parent.mkdir(parents=True, exist_ok=True)
                im.save(path)
                return path
    return None


@app.command(help=__doc__)
def main(inplace: bool = typer.Option(False, "--inplace", help="also write the executed notebooks back and redraw "
                                      "the gallery's thumbnails")) -> None:
    import nbformat
    from nbclient import NotebookClient

    from benchmarks.common import save_results

    out = {}
    for path in sorted(DEMOS_DIR.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(DEMOS_DIR)}})
        client.execute()
        wall = time.perf_counter() - t0
        out[path.stem] = {"seconds": wall, "target_seconds": 60.0}
        print(f"{path.name:<36} {wall:6.1f} s ({'met' if wall < 60 else 'MISSED'}: < 60 s)")
        if inplace:
            nbformat.write(nb, path)
            write_thumbnail(nb, DEMOS_DIR / "thumbs" / f"{path.stem[:2]}.png")
    save_results("demos", out)


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.demos")
