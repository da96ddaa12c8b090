"""The trait scan's quick evaluation (``ScanEvalConfig.quick``, as ``python -m figures.llm_scan_fig --preset quick``
runs it) timed end to end on SmolLM2-135M: generation of its datasets, the shared trait directions and calibration,
and every scan. Reports the process's CPU seconds (``time.process_time``, all threads; on a machine shared with other
jobs the wall time is inflated, the CPU time much less) and wall seconds, with the evaluation's own phase timings.
Writes ``results/scan_quick.json``.

Run: ``python -m benchmarks.scan_quick [--threads 1] [--out DIR]``."""

from __future__ import annotations

import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import typer

from results.cli import make_app

app = make_app(__doc__)


def cpu_model() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


@app.command()
def main(threads: int = typer.Option(1, help="torch threads (0: torch's default)"),
         out: Path = typer.Option(None, help="the evaluation's run folder (a fresh temporary folder by default)")):
    """Run the whole quick scan evaluation once and write its CPU and wall seconds."""
    warnings.filterwarnings("ignore")
    import torch

    from benchmarks.common import save_results
    from llm_bridge import ScanEvalConfig, evaluate_scan

    if threads:
        torch.set_num_threads(threads)
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="scan_quick_"))
    load_at_start = os.getloadavg()
    c0, w0 = time.process_time(), time.perf_counter()
    res = evaluate_scan(ScanEvalConfig.quick(), folder, progress=False)
    cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
    t = res["timings"]
    numbers = {"preset": "quick", "cpu_s": cpu_s, "wall_s": wall_s, "threads": torch.get_num_threads(),
               "generation_s": t["generation_s"], "scan_s": t["scan_s"], "load_average_at_start": load_at_start,
               "load_average_at_end": os.getloadavg(), "cpu": cpu_model(), "cores": os.cpu_count(),
               "note": "cpu_s counts every thread of this process; wall_s is inflated when other jobs share the cores"}
    save_results("scan_quick", numbers, torch=torch.__version__)
    print(f"quick scan evaluation: {cpu_s:.0f} CPU s at {numbers['threads']} thread(s), {wall_s:.0f} s wall")


if __name__ == "__main__":
    app()
