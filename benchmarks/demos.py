"""Wall time of each teaching notebook in demos/, executed top to bottom on a fresh kernel (what CI does; the README
gallery quotes these). Target: under 60 s each on 2 CPU cores. Run: ``python -m benchmarks.demos [--inplace]``;
``--inplace`` also writes the executed notebooks back, refreshing their committed outputs from the timed run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from benchmarks.common import save_results

DEMOS_DIR = Path(__file__).resolve().parents[1] / "demos"


def main(inplace: bool = False) -> None:
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
    save_results("demos", out)


if __name__ == "__main__":
    main(inplace="--inplace" in sys.argv[1:])
