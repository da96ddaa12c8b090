"""Us against the authors' approach on the Fig. 10 protocol (paper Section 6.2): wall time of the same runs, paired.

Each round runs, in fresh processes one after the other, ``python -m mnist_mlp --preset quick --runs N --chunk-size N``
(ours: JAX, the runs vmapped, device-resident epochs, the diagnostics on) and ``python -m benchmarks.torch_mnist N``
(the baseline: torch, N models stacked in batched einsums, one Adam, the teacher's logits at every distillation step
as in the authors' script; ``benchmarks/torch_mnist.py``, whose steps and pairing tests check). The order alternates
from round to round, so that a drift of the machine's speed favours neither. Prints each pair, the median ratio
(baseline wall / our wall; > 1: we are faster), and our achieved GFLOP/s against this machine's matmul peak; writes
``benchmarks/results/mnist_vs_torch_n<N>.json``, with the load average around each measurement (another job on the
machine slows both sides).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Literal

import typer

from results.cli import make_app

app = make_app(__doc__)


def timed(cmd: list[str]) -> tuple[float, str, tuple[float, float]]:
    """(wall seconds, stdout, (1-minute load average before, after))."""
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out, (before, os.getloadavg()[0])


@app.command(help=__doc__)
def main(runs: int = typer.Argument(10, min=2, help="runs of the protocol (a cross-model student needs another "
                                    "run's teacher: at least 2)"),
         rounds: int = typer.Argument(2, min=1, help="pairs measured"),
         baseline_targets: Literal["online", "cached"] = typer.Option("online", help="the baseline's teacher logits: "
                                                                      "at every step (the authors') or once per "
                                                                      "noise set")) -> None:
    from benchmarks.common import matmul_peak_gflops, save_results
    from benchmarks.mnist_train import protocol_flops
    from mnist_mlp import MnistConfig

    n = runs
    peak = matmul_peak_gflops()
    flops = protocol_flops(MnistConfig(runs=n))
    pairs = []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ours_cmd = [sys.executable, "-m", "mnist_mlp", "--preset", "quick", "--runs", str(n), "--chunk-size",
                        str(n), "--out", tmp, "--figures-dir", tmp, "--no-progress"]
            base_cmd = [sys.executable, "-m", "benchmarks.torch_mnist", str(n), "--targets", baseline_targets]
            first, second = (ours_cmd, base_cmd) if i % 2 == 0 else (base_cmd, ours_cmd)
            got = {id(first): timed(first), id(second): timed(second)}
        (ours, _, ours_load), (theirs, out, base_load) = got[id(ours_cmd)], got[id(base_cmd)]
        base = json.loads(out.strip().splitlines()[-1])
        pairs.append({"ours_s": ours, "baseline_s": theirs, "ratio": theirs / ours, "ours_first": i % 2 == 0,
                      "load_avg_ours": ours_load, "load_avg_baseline": base_load,
                      "baseline_accuracy": base["mean_accuracy"],
                      "baseline_phases_s": {k: base[k] for k in ("teachers_s", "students_s")}})
        print(f"round {i} ({'ours' if i % 2 == 0 else 'baseline'} first): ours {ours:6.1f} s, baseline {theirs:6.1f} s:"
              f" {theirs / ours:.2f}x (baseline teacher {base['mean_accuracy']['teacher']:.1%}, aux student "
              f"{base['mean_accuracy']['aux_same']:.1%}, all-logit cross-model student "
              f"{base['mean_accuracy']['all_other']:.1%}; load {ours_load[0]:.1f}-{base_load[1]:.1f})", flush=True)
    ratio = statistics.median(p["ratio"] for p in pairs)
    ours = statistics.median(p["ours_s"] for p in pairs)
    print(f"\nN = {n}: median ratio baseline/ours {ratio:.2f}x over {len(pairs)} pairs; ours {flops / ours / 1e9:.0f} "
          f"GFLOP/s of the {peak:.0f} GFLOP/s matmul peak ({flops / ours / 1e9 / peak:.0%}; wall time, start-up and "
          "compilation included)")
    save_results("mnist_vs_torch", {"runs": n, "baseline_targets": baseline_targets, "pairs": pairs,
                                    "median_ratio": ratio, "matmul_peak_gflops": peak, "our_gflops": flops / ours / 1e9,
                                    "fraction_of_peak": flops / ours / 1e9 / peak},
                 variant=f"n{n}" + ("" if baseline_targets == "online" else "_cached"))


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.mnist_vs_torch")
