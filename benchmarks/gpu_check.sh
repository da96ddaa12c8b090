#!/usr/bin/env bash
# Ours against the authors' approach on one GPU: the 100-run Fig. 10 protocol end to end, GPU utilisation sampled
# with nvidia-smi, matmul peaks, and ours at float32 / TF32 / bf16 matmuls (benchmarks/gpu_check.py says what each
# measurement is). Sized to take minutes on one GPU; not yet timed on one.
#
#   benchmarks/gpu_check.sh [--mnist-gz DIR] [--out DIR] [--device cpu] [--runs N] [options of python -m benchmarks.gpu_check]
#
# Runs from a checkout without installing it (PYTHONPATH=the checkout) on a Python that has jax (with CUDA), flax,
# optax, torch and torchvision, offline. MNIST: the folder with the four original .gz files, from --mnist-gz or
# $SUBLIMINAL_MNIST_GZ. The JSON goes to --out, else $OUT, else benchmarks/results. Packages missing from that Python
# (tqdm, ...) may be put in a folder named by $GPU_CHECK_SITE, which joins PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${GPU_CHECK_SITE:+:$GPU_CHECK_SITE}${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
missing=$("$PY" - <<'PY'
import importlib.util
need = ["jax", "flax", "optax", "torch", "torchvision", "numpy", "scipy", "tqdm"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "error: $PY lacks $missing; install them, or put them in a folder and set GPU_CHECK_SITE to it" >&2
  exit 2
fi
exec "$PY" -m benchmarks.gpu_check "$@"
