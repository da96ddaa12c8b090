"""Tiny networks for the dense (explicit-Jacobian) references: a few hundred parameters at most."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from theory import zoo


def trait_specific_by_hand(S, C, T, N) -> dict[str, float]:
    """theory.trait_specific's quantities from flat float64 vectors with nothing but numpy (the tests' reference)."""
    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    d, sp = S - C, T - N
    return {"cos_teacher_neutral": cos(T, N), "cos_student_teacher": cos(S, T), "cos_control_teacher": cos(C, T),
            "cos_diff_teacher": cos(d, T), "proj_diff_teacher": float(d @ T / (T @ T)),
            "cos_diff_specific": cos(d, sp), "proj_diff_specific": float(d @ sp / (sp @ sp)),
            "cos_student_specific": cos(S, sp), "cos_control_specific": cos(C, sp)}


def tiny_mlp(*, key, depth=2, width=5, activation="tanh", n_in=6, n_out=5, dtype=jnp.float64):
    module = zoo.MLP(depth=depth, width=width, activation=activation, n_out=n_out)
    params = module.init(key, jnp.zeros((1, n_in), jnp.float32))["params"]
    return zoo.apply_fn_of(module), jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


class TinyCNN(nn.Module):
    n_out: int = 5

    @nn.compact
    def __call__(self, x_BxD):
        h = nn.tanh(nn.Conv(3, (3, 3))(x_BxD.reshape(-1, 5, 5, 1)))
        return nn.Dense(self.n_out)(h.mean(axis=(1, 2)))


def tiny_cnn(*, key, n_out=5, dtype=jnp.float64):
    module = TinyCNN(n_out=n_out)
    params = module.init(key, jnp.zeros((1, 25), jnp.float32))["params"]
    return zoo.apply_fn_of(module), jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def kink_at(params, xs) -> bool:
    """Does any hidden pre-activation of a ``tiny_mlp`` sit exactly at 0 on ``xs``? Then a ReLU network is not
    differentiable at ``params`` (with zero-initialized biases, a fully dead layer leaves the next layer's
    pre-activations at exactly 0), and Lemma 1's premise fails there."""
    layers = sorted(params, key=lambda name: int(name.split("_")[1]))
    h = xs
    for name in layers[:-1]:
        z = h @ params[name]["kernel"] + params[name]["bias"]
        if bool(jnp.any(z == 0)):
            return True
        h = jax.nn.relu(z)
    return False
