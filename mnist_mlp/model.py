"""The paper's MNIST network (Section 6.2, Fig. 10): MLP 784-256-256-(10+m), ReLU, m = 3 auxiliary logits.

Init as the authors' script: weights N(0, 1/fan_in) (untruncated), biases zero.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

N_CLASSES = 10


class MLP(nn.Module):
    hidden: tuple[int, ...] = (256, 256)
    n_aux: int = 3

    @nn.compact
    def __call__(self, x_BxD):
        init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")  # untruncated: std = 1/sqrt(fan_in)
        h = x_BxD
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, kernel_init=init)(h))
        return nn.Dense(self.n_out, kernel_init=init)(h)

    def init_params(self, key, n_in: int = 784):
        return self.init(key, jnp.zeros((1, n_in), jnp.float32))["params"]

    @property
    def n_out(self) -> int:
        return N_CLASSES + self.n_aux

    def aux_indices(self) -> tuple[int, ...]:
        return tuple(range(N_CLASSES, self.n_out))


def n_params(params) -> int:
    return sum(int(a.size) for a in jax.tree_util.tree_leaves(params))


def apply_fn_of(module: MLP):
    return lambda params, x_BxD: module.apply({"params": params}, x_BxD)
