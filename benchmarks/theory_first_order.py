"""Speed and memory of ``theory.first_order_update`` (matrix-free J^T M J dT) on CPU.

Target (issue: theory): a model with >= 1M parameters and 1,000 inputs in < 2 s after compile. Also prints how the
time scales with the parameter count and with the number of inputs.  Run: ``python -m benchmarks.theory_first_order``.
"""

from __future__ import annotations

from results.cli import make_app

app = make_app(__doc__)


def case(width: int, n_inputs: int, loss="ce", seed: int = 0):
    import jax
    import jax.numpy as jnp

    from benchmarks.common import time_it
    from theory import INPUT_DIM, MLP, apply_fn_of, first_order_update, init_params, random_update

    module = MLP(depth=2, width=width, activation="gelu", n_out=13)
    k = jax.random.split(jax.random.key(seed), 3)
    p0 = init_params(module, key=k[0])
    dT = random_update(p0, key=k[1])
    xs = jax.random.normal(k[2], (n_inputs, INPUT_DIM), jnp.float32)
    f = jax.jit(lambda p, d, x: first_order_update(apply_fn_of(module), p, d, x, loss, 1.0))
    n_params = sum(a.size for a in jax.tree_util.tree_leaves(p0))
    first, t = time_it(f, p0, dT, xs)
    return n_params, first, t


@app.command(help=__doc__)
def main() -> None:
    import jax

    from benchmarks.common import peak_rss_mb, save_results

    print(f"backend: {jax.default_backend()} ({jax.devices()[0]}), float32\n")
    rss0 = peak_rss_mb()
    n, first, t = case(1024, 1000)
    print(f"TARGET  {n / 1e6:.2f}M params x 1000 inputs: {t:.3f} s after compile (target < 2 s; "
          f"{'met' if t < 2 else 'MISSED'}), first call incl. compile {first:.1f} s, peak RSS {peak_rss_mb():.0f} MB "
          f"(+{peak_rss_mb() - rss0:.0f} MB)")
    out = {"target": {"params": n, "inputs": 1000, "seconds": t, "first_call_seconds": first, "target_seconds": 2.0}}
    print("\nscaling with parameters (1000 inputs):")
    out["by_params"] = []
    for w in (256, 512, 1024, 2048):
        n, _, t = case(w, 1000)
        out["by_params"].append({"width": w, "params": n, "seconds": t, "ns_per_param": t / n * 1e9})
        print(f"  {n / 1e6:6.2f}M params: {t:.3f} s   ({t / n * 1e9:.1f} ns/param)")
    print("\nscaling with inputs (1024-wide MLP):")
    out["by_inputs"] = []
    for b in (250, 500, 1000, 2000, 4000):
        n, _, t = case(1024, b)
        out["by_inputs"].append({"inputs": b, "seconds": t, "ms_per_input": t / b * 1e3})
        print(f"  {b:5d} inputs: {t:.3f} s   ({t / b * 1e3:.2f} ms/input)")
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")
    save_results("theory_first_order", out, jax=jax.__version__, backend=jax.default_backend(),
                 device=str(jax.devices()[0]))


if __name__ == "__main__":
    app(prog_name="python -m benchmarks.theory_first_order")
