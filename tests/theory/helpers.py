"""Tiny networks for the dense (explicit-Jacobian) references: a few hundred parameters at most."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from theory import zoo


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
