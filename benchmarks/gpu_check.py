"""Ours against the authors' approach on one accelerator: the Fig. 10 protocol (paper Section 6.2), end to end.

Each measurement runs in a fresh process, one after the other, and pays its own start-up, data loading and
compilation, as a user's run does:

- ``ours``: ``mnist_mlp.experiment.run`` (JAX, the runs vmapped in one chunk, device-resident epochs, the
  diagnostics on) at each ``--precisions`` setting, and once at 1 epoch (how the time splits between fixed costs and
  epochs);
- ``torch``: ``benchmarks/torch_mnist.py`` (the authors' approach: N models stacked in batched einsums, the teacher's
  logits at every distillation step, each cross-model student on its own inputs);
- ``peak``: the matmul peak of JAX (per precision) and of torch on the device, for achieved/peak.

While each runs, ``nvidia-smi`` (when present) samples the GPU's utilisation; the JSON keeps the samples' mean over
the measured process. Writes ``gpu_check.json`` under ``--out`` (default ``$OUT``, else ``benchmarks/results``) and
prints a summary. ``benchmarks/gpu_check.sh`` is the entry point; ``--device cpu`` runs the same script on the CPU
(tiny sizes in the tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---- child processes: one measurement each, one JSON line on stdout ----------------------------------------------
def child_ours(a) -> dict:
    import jax

    from benchmarks.mnist_train import protocol_flops
    from mnist_mlp import MnistConfig, run

    cfg = MnistConfig(runs=a.runs, epochs=a.epochs, n_noise=a.n_noise, matmul_precision=a.precision,
                      data_dir=a.data_dir)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(cfg, tmp, progress=False)
    s, t = res["summary"], res["timings"]
    return {"start_unix": start, "run_s": time.time() - start, "teachers_s": t["teachers_s"],
            "students_s": t["students_s"], "chunk_size": t["chunk_size"], "peak_rss_mb": t["peak_rss_mb"],
            "flops": protocol_flops(cfg), "device": str(jax.devices()[0]), "backend": jax.default_backend(),
            "accuracy": {m: {"mean": d["accuracy"]["mean"], "ci95": d["accuracy"]["ci95"]} for m, d in s.items()}}


def child_peak(a) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    from benchmarks.common import matmul_peak_gflops
    from mnist_mlp import MATMUL_PRECISIONS

    n = 8192 if jax.default_backend() == "gpu" else 1024
    out = {"n": n, "jax": {}}
    for p in a.precisions.split(","):
        with jax.default_matmul_precision(MATMUL_PRECISIONS[p]):
            out["jax"][p] = matmul_peak_gflops(n, jnp.float32)
    dev = torch.device("cuda" if a.device == "gpu" else "cpu")
    x = torch.randn(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for tf32 in (False, True) if dev.type == "cuda" else (False,):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x @ x
        sync()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            x @ x
            sync()
            times.append(time.perf_counter() - t0)
        out["torch_tf32" if tf32 else "torch"] = 2 * n**3 / statistics.median(times) / 1e9
    return out


# ---- the parent: runs the children, samples the GPU, writes the JSON ---------------------------------------------
class GpuSampler:
    """``nvidia-smi`` sampling the first GPU's utilisation (%) and memory (MiB) every ``ms`` in the background, each
    sample stamped with this process's clock when it arrives. No-op without nvidia-smi."""

    def __init__(self, ms: int = 200):
        self.samples: list[tuple[float, float, float]] = []
        self.cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                    "-i", "0", f"--loop-ms={ms}"]
        self.proc = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), util, mem))

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def window(self, t0: float, t1: float) -> dict | None:
        got = [(u, m) for t, u, m in self.samples if t0 <= t <= t1]
        if not got:
            return None
        util = [u for u, _ in got]
        return {"samples": len(got), "mean_util_pct": statistics.mean(util),
                "fraction_above_10pct": sum(u > 10 for u in util) / len(util), "max_memory_mib": max(m for _, m in got)}


def measure(name: str, cmd: list[str], env: dict, timeout: int) -> dict:
    """Run one child; its JSON plus the wall time of the whole process and the GPU's utilisation meanwhile."""
    print(f"[gpu_check] {name}: {' '.join(cmd[2:])}", flush=True)
    with GpuSampler() as gpu:
        t0 = time.time()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"name": name, "error": f"timed out after {timeout} s"}
        t1 = time.time()
    if p.returncode:
        return {"name": name, "error": f"exit {p.returncode}", "stderr_tail": p.stderr[-3000:]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(name=name, wall_s=t1 - t0, gpu=gpu.window(t0, t1))
    if "start_unix" in res:  # the training itself (ours: run(); torch: teachers + students), after start-up
        res["gpu_training"] = gpu.window(res["start_unix"], res["start_unix"] + res.get("run_s", res.get("total_s")))
    print(f"[gpu_check] {name}: {res['wall_s']:.1f} s", flush=True)
    return res


def parent(a) -> dict:
    out_dir = Path(a.out or os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    from mnist_mlp import DataError, prepare_from_gz

    data_dir = Path(a.data_dir or tempfile.mkdtemp(prefix="gpu_check_data_"))
    if a.mnist_gz:
        try:
            prepare_from_gz(a.mnist_gz, data_dir)
        except DataError as e:
            raise SystemExit(f"error: {e}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "SUBLIMINAL_DATA_DIR": str(data_dir)}
    if a.device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    me = [sys.executable, "-m", "benchmarks.gpu_check"]
    common = ["--device", a.device, "--data-dir", str(data_dir), "--runs", str(a.runs), "--n-noise", str(a.n_noise)]
    precisions = a.precisions.split(",")
    plan = [("peak", [*me, "--child", "peak", *common, "--precisions", a.precisions], "peak")]

    def ours(name, precision, epochs):
        return (name, [*me, "--child", "ours", *common, "--epochs", str(epochs), "--precision", precision], "ours")

    def baseline(t):
        return (f"torch_{t}", [sys.executable, "-m", "benchmarks.torch_mnist", str(a.runs), "--epochs", str(a.epochs),
                               "--n-noise", str(a.n_noise), "--targets", t, "--data-dir", str(data_dir), "--device",
                               "cuda" if a.device == "gpu" else "cpu"], "torch")

    # the pair the ratio comes from first, so that a cut-short run still has it
    plan.append(ours(f"ours_{precisions[0]}", precisions[0], a.epochs))
    plan += [baseline(t) for t in a.torch_targets.split(",") if t]
    plan += [ours(f"ours_{p}", p, a.epochs) for p in precisions[1:]]
    if a.epochs > 1:  # what the fixed costs (start-up, data, compilation) are against the epochs
        plan.append(ours(f"ours_{precisions[0]}_1epoch", precisions[0], 1))
    results = {"peak": {}, "ours": [], "torch": []}
    record = {"benchmark": "gpu_check", "command": " ".join(["benchmarks/gpu_check.sh", *sys.argv[1:]]),
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "settings": {"device": a.device, "runs": a.runs, "epochs": a.epochs, "n_noise": a.n_noise},
              "machine": {"python": platform.python_version(), "host_cpus": os.cpu_count(), "gpu": gpu_name()},
              "results": results}
    path = out_dir / "gpu_check.json"
    for name, cmd, kind in plan:
        r = measure(name, cmd, env, a.timeout)
        if kind == "peak":
            results["peak"] = r
        else:
            results[kind].append(r)
        record["summary"] = summarize(results)
        path.write_text(json.dumps(record, indent=1))  # after every measurement: a cut-short run keeps what it has
    if not a.data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)
    for line in record["summary"]["lines"]:
        print(line)
    print(f"wrote {path}")
    return record


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    p = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True)
    return p.stdout.strip() or None


def summarize(results: dict) -> dict:
    """The ratios docs/mnist.md quotes once a GPU run is committed: the authors' approach's wall time over ours
    (> 1: we are faster), achieved GFLOP/s of our training against the measured matmul peak, and the utilisation
    during training."""
    peak = results["peak"] if "error" not in results["peak"] else {}
    lines, out = [], {}
    ours = {r["name"]: r for r in results["ours"] if "error" not in r}
    torch_ = {r["name"]: r for r in results["torch"] if "error" not in r}
    for r in [results["peak"], *results["ours"], *results["torch"]]:
        if "error" in r:
            lines.append(f"{r['name']}: FAILED ({r['error']})")
    for name, r in ours.items():
        prec = name.split("_")[1]  # ours_<precision>[_1epoch]
        gflops = r["flops"] / (r["teachers_s"] + r["students_s"]) / 1e9
        p = peak.get("jax", {}).get(prec)
        util = (r.get("gpu_training") or {}).get("mean_util_pct")
        out[name] = {"wall_s": r["wall_s"], "training_s": r["teachers_s"] + r["students_s"], "gflops": gflops,
                     "fraction_of_peak": gflops / p if p else None, "gpu_util_pct": util,
                     "aux_same": r["accuracy"]["aux_same"], "aux_other": r["accuracy"]["aux_other"]}
        lines.append(f"{name}: {r['wall_s']:.1f} s wall ({out[name]['training_s']:.1f} s training, {gflops:.0f} GFLOP/s"
                     + (f" = {gflops / p:.0%} of the {p:.0f} GFLOP/s matmul peak" if p else "")
                     + (f", GPU {util:.0f}% busy" if util is not None else "")
                     + f"); aux-only same init {r['accuracy']['aux_same']['mean']:.1%}, different init "
                     f"{r['accuracy']['aux_other']['mean']:.1%}")
    for name, r in torch_.items():
        util = (r.get("gpu_training") or {}).get("mean_util_pct")
        out[name] = {"wall_s": r["wall_s"], "gpu_util_pct": util, "mean_accuracy": r["mean_accuracy"]}
        lines.append(f"{name}: {r['wall_s']:.1f} s wall" + (f" (GPU {util:.0f}% busy)" if util is not None else "")
                     + f"; aux-only same init {r['mean_accuracy']['aux_same']:.1%}, all logits different init "
                     f"{r['mean_accuracy']['all_other']:.1%}")
        for o in ours:
            if not o.endswith("_1epoch"):
                ratio = r["wall_s"] / ours[o]["wall_s"]
                out[f"{name}_over_{o}"] = ratio
                lines.append(f"  {name} / {o}: {ratio:.2f}x")
    return {**out, "lines": lines}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                 formatter_class=lambda prog: argparse.HelpFormatter(prog, width=120))
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="run JAX and torch on the GPU or the CPU")
    ap.add_argument("--runs", type=int, default=100, help="runs of the protocol (default 100, the paper's)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-noise", type=int, default=60_000)
    ap.add_argument("--precisions", default="highest,tf32,bf16", help="ours at these --matmul-precision settings")
    ap.add_argument("--torch-targets", default="online", help="the torch baseline's --targets: online (the "
                    "authors'), cached, or both (online,cached); empty: no torch run")
    ap.add_argument("--mnist-gz", default=os.environ.get("SUBLIMINAL_MNIST_GZ"),
                    help="folder with the four MNIST .gz files (default $SUBLIMINAL_MNIST_GZ)")
    ap.add_argument("--data-dir", default=None, help="where MNIST is unpacked (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="folder for gpu_check.json (default $OUT, else benchmarks/results)")
    ap.add_argument("--timeout", type=int, default=150, help="seconds allowed to each measurement")
    ap.add_argument("--child", choices=("ours", "peak"), help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="highest", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.runs < 2 or a.epochs < 1 or a.n_noise < 1:
        ap.error("need --runs >= 2 (a cross-model student needs another run's teacher), --epochs >= 1, --n-noise >= 1")
    bad = [p for p in a.precisions.split(",") if p not in ("highest", "tf32", "bf16")]
    if bad:
        ap.error(f"--precisions: {', '.join(bad)} unknown; choose from highest, tf32, bf16 (comma-separated)")
    if any(t not in ("online", "cached") for t in a.torch_targets.split(",") if t):
        ap.error("--torch-targets: online, cached, both (online,cached), or empty")
    if a.child:
        print(json.dumps({"ours": child_ours, "peak": child_peak}[a.child](a)))
        return
    if not a.mnist_gz and not a.data_dir:
        ap.error("say where MNIST is: --mnist-gz DIR (the four .gz files) or SUBLIMINAL_MNIST_GZ=DIR, or --data-dir")
    parent(a)


if __name__ == "__main__":
    main()
