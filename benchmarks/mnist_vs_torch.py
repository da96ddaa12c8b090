"""Us against the authors' approach on the Fig. 10 protocol (issue 16): wall time of the same runs, measured paired.

Each round runs, in fresh processes one after the other, ``python -m mnist_mlp --preset quick --runs N --chunk-size N``
(ours: JAX, the runs vmapped, the diagnostics on) and ``python -m benchmarks.torch_mnist N`` (the baseline: torch, N
models stacked in batched einsums, one Adam; ``benchmarks/torch_mnist.py``, whose steps a test checks against ours).
Prints each pair, the median ratio (baseline wall / our wall; > 1: we are faster), and our achieved GFLOP/s against
this machine's matmul peak. Run: ``python -m benchmarks.mnist_vs_torch [N] [ROUNDS]`` (needs MNIST, see README).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import matmul_peak_gflops, save_results
from benchmarks.mnist_train import flops_per_example


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out


def main(n: int = 10, rounds: int = 2) -> None:
    peak = matmul_peak_gflops()
    train, fwd = flops_per_example()
    # per run: teacher + 4 students, 5 epochs of 59 padded batches of 1024, plus the teachers' logits on the noise
    flops = n * 5 * 59 * 1024 * (5 * train + 2 * fwd / 5)
    pairs = []
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ours, _ = timed([sys.executable, "-m", "mnist_mlp", "--preset", "quick", "--runs", str(n), "--chunk-size",
                             str(n), "--out", tmp, "--figures-dir", tmp, "--no-progress"])
        theirs, out = timed([sys.executable, "-m", "benchmarks.torch_mnist", str(n)])
        base = json.loads(out.strip().splitlines()[-1])
        pairs.append({"ours_s": ours, "baseline_s": theirs, "ratio": theirs / ours,
                      "baseline_accuracy": base["mean_accuracy"],
                      "baseline_phases_s": {k: base[k] for k in ("teachers_s", "students_s")}})
        print(f"round {i}: ours {ours:6.1f} s, baseline {theirs:6.1f} s: {theirs / ours:.2f}x "
              f"(baseline teacher {base['mean_accuracy']['teacher']:.1%}, aux student "
              f"{base['mean_accuracy']['aux_same']:.1%})", flush=True)
    ratio = statistics.median(p["ratio"] for p in pairs)
    ours = statistics.median(p["ours_s"] for p in pairs)
    print(f"\nN = {n}: median ratio baseline/ours {ratio:.2f}x; ours {flops / ours / 1e9:.0f} GFLOP/s of the "
          f"{peak:.0f} GFLOP/s matmul peak ({flops / ours / 1e9 / peak:.0%}; wall time, startup and compile "
          "included)")
    save_results("mnist_vs_torch", {"runs": n, "pairs": pairs, "median_ratio": ratio, "matmul_peak_gflops": peak,
                                    "our_gflops": flops / ours / 1e9, "fraction_of_peak": flops / ours / 1e9 / peak})


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
