"""Small random networks for checking the theorem over architectures (``python -m theory``, tests).

All take flat 28x28 inputs ``x_BxD`` (D = 784, so real MNIST digits fit) and return ``logits_BxK``. With K = 13 the
first 10 play the class logits and the last 3 the paper's auxiliary logits (Section 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu}
IMAGE_SIDE = 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE


class MLP(nn.Module):
    depth: int = 2  # hidden layers
    width: int = 32
    activation: str = "relu"
    n_out: int = 13

    @nn.compact
    def __call__(self, x_BxD):
        act = ACTIVATIONS[self.activation]
        h = x_BxD
        for _ in range(self.depth):
            h = act(nn.Dense(self.width)(h))
        return nn.Dense(self.n_out)(h)


class CNN(nn.Module):
    channels: int = 8
    n_out: int = 13

    @nn.compact
    def __call__(self, x_BxD):
        h = x_BxD.reshape(-1, IMAGE_SIDE, IMAGE_SIDE, 1)
        h = nn.relu(nn.Conv(self.channels, (3, 3), strides=2)(h))
        h = nn.relu(nn.Conv(self.channels, (3, 3), strides=2)(h))
        return nn.Dense(self.n_out)(h.mean(axis=(1, 2)))


class TransformerBlock(nn.Module):
    """One pre-LayerNorm block (attention + GELU MLP) over 16 patches of 7x7 pixels, mean-pooled."""

    d_model: int = 16
    heads: int = 2
    patch: int = 7
    n_out: int = 13

    @nn.compact
    def __call__(self, x_BxD):
        b, p = x_BxD.shape[0], self.patch
        n = IMAGE_SIDE // p
        tokens_BxTxP = x_BxD.reshape(b, n, p, n, p).transpose(0, 1, 3, 2, 4).reshape(b, n * n, p * p)
        h = nn.Dense(self.d_model)(tokens_BxTxP)
        h = h + self.param("pos", nn.initializers.normal(0.02), (n * n, self.d_model))
        h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(h))
        h = h + nn.Dense(self.d_model)(nn.gelu(nn.Dense(2 * self.d_model)(nn.LayerNorm()(h))))
        return nn.Dense(self.n_out)(nn.LayerNorm()(h.mean(axis=1)))


@dataclass(frozen=True)
class Arch:
    """A named architecture of the grid; ``module()`` builds its Flax module."""

    kind: str  # "mlp" | "cnn" | "transformer"
    depth: int = 0
    activation: str = "relu"

    @property
    def name(self) -> str:
        return f"mlp{self.depth}-{self.activation}" if self.kind == "mlp" else self.kind

    def module(self, n_out: int = 13) -> nn.Module:
        if self.kind == "mlp":
            return MLP(depth=self.depth, activation=self.activation, n_out=n_out)
        if self.kind == "cnn":
            return CNN(n_out=n_out)
        if self.kind == "transformer":
            return TransformerBlock(n_out=n_out)
        raise ValueError(f"unknown architecture kind {self.kind!r}; choose mlp, cnn or transformer")


def init_params(module: nn.Module, *, key, dtype=jnp.float32):
    """Random initial parameters, cast to ``dtype`` (float64 needs ``jax_enable_x64``)."""
    params = module.init(key, jnp.zeros((1, INPUT_DIM), jnp.float32))["params"]  # Flax inits in float32
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def random_update(params, *, key):
    """A random direction dT with each leaf's entries N(0, 1/n_leaf) scaled like the leaf (|dT_leaf| ~ 1)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef,
        [jax.random.normal(k, a.shape, a.dtype) / jnp.sqrt(jnp.asarray(a.size, a.dtype)) for k, a in zip(keys, leaves)],
    )


def apply_fn_of(module: nn.Module):
    """The ``apply_fn(params, x) -> logits`` the theory functions take, for a linen module."""
    return lambda params, x: module.apply({"params": params}, x)
