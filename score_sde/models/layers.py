"""Layers shared by the score networks (NCSN++ / DDPM++, DDPM, NCSNv2, MLP).

Conventions: images are NHWC; parameters are float32; `dtype` is the compute dtype of activations
and matmuls (float32 or bfloat16). Normalization statistics and softmax are always computed in
float32 and cast back to the compute dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def default_init(scale: float = 1.0):
    """DDPM initializer: variance_scaling(scale, 'fan_avg', 'uniform'); scale 0 means 1e-10."""
    return jax.nn.initializers.variance_scaling(
        1e-10 if scale == 0 else scale, "fan_avg", "uniform"
    )


def get_act(name: str):
    """Activation by config name (config.model.nonlinearity)."""
    match name.lower():
        case "elu":
            return jax.nn.elu
        case "relu":
            return jax.nn.relu
        case "lrelu":
            return lambda x: jax.nn.leaky_relu(x, negative_slope=0.2)
        case "swish" | "silu":
            return jax.nn.silu
        case _:
            raise ValueError(
                f"config.model.nonlinearity ({name!r}) is not supported; "
                "use one of 'elu', 'relu', 'lrelu', 'swish'"
            )


def get_dtype(name: str):
    """Compute dtype by config name (config.model.dtype)."""
    match name:
        case "float32":
            return jnp.float32
        case "bfloat16":
            return jnp.bfloat16
        case _:
            raise ValueError(
                f"config.model.dtype ({name!r}) is not supported; use 'float32' or 'bfloat16'"
            )


def dropout(x: jax.Array, rate: float, rng: jax.Array | None, train: bool) -> jax.Array:
    """Inverted dropout with an explicit key; identity unless train and rate > 0."""
    if not train or rate == 0.0:
        return x
    if rng is None:
        raise ValueError(
            f"dropout rate {rate} with train=True needs an explicit key: pass rng=jax.random.key(...)"
        )
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def fold(rng: jax.Array | None, i: int) -> jax.Array | None:
    """A per-layer key derived from the call's key (None stays None)."""
    return None if rng is None else jax.random.fold_in(rng, i)


def get_timestep_embedding(timesteps: jax.Array, embedding_dim: int, max_positions: int = 10000):
    """Transformer sinusoidal embedding of float timesteps [B] -> [B, embedding_dim] (DDPM)."""
    half_dim = embedding_dim // 2
    emb = math.log(max_positions) / (half_dim - 1)
    emb = jnp.exp(jnp.arange(half_dim, dtype=jnp.float32) * -emb)
    emb = timesteps.astype(jnp.float32)[:, None] * emb[None, :]
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
    if embedding_dim % 2 == 1:
        emb = jnp.pad(emb, [[0, 0], [0, 1]])
    return emb


class GaussianFourierProjection(nnx.Module):
    """Random Fourier features [sin(2 pi W x), cos(2 pi W x)] of a scalar [B] -> [B, 2 E].

    W ~ N(0, scale^2) [E] is stored as a parameter (as in the original, which counts it) but is
    never trained: the forward pass stops its gradient.
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, *, rngs: nnx.Rngs):
        self.W = nnx.Param(jax.random.normal(rngs.params(), (embedding_size,)) * scale)

    def __call__(self, x: jax.Array) -> jax.Array:
        W = jax.lax.stop_gradient(self.W[...])
        x_proj = x.astype(jnp.float32)[:, None] * W[None, :] * 2 * np.pi
        return jnp.concatenate([jnp.sin(x_proj), jnp.cos(x_proj)], axis=-1)


def dense(in_features: int, out_features: int, *, init_scale: float = 1.0, dtype=jnp.float32,
          rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
    """Linear layer with the DDPM initializer and zero bias."""
    return nnx.Linear(
        in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=default_init(init_scale), rngs=rngs,
    )
