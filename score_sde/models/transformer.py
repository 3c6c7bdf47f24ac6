"""Pieces the vision-transformer score networks share (U-ViT, DiT): patches in and out, the
frequency embedding of the noise level, multi-head self-attention and the token MLP.

Tokens are [B, T, D]; a patch of an image [B, H, W, C] is its p x p x C block, tokens in
row-major order of the (H / p) x (W / p) grid, features flattened as (p_row, p_col, C) — the
order of both originals' `unpatchify`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from score_sde.models.layers import KeyGen
from score_sde.models.spec import DataSpec


def check_image(name: str, data: DataSpec, patch_size: int, num_heads: int, width: int) -> None:
    """ValueError unless `data` are images whose side `patch_size` divides, and `num_heads`
    divides the token width."""
    if data.image_size is None or data.num_channels is None:
        raise ValueError(
            f"config.model.name={name!r} needs images; config.data has none "
            f"(image_size={data.image_size}, num_channels={data.num_channels}): use 'mlp' for "
            "vector data"
        )
    if patch_size < 1 or data.image_size % patch_size:
        raise ValueError(
            f"config.model.patch_size ({patch_size}) must divide config.data.image_size "
            f"({data.image_size})"
        )
    if num_heads < 1 or width % num_heads:
        raise ValueError(
            f"config.model.num_heads ({num_heads}) must divide the token width ({width})"
        )


def frequency_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """[cos(t f_k), sin(t f_k)], f_k = max_period^(-k / (dim // 2)), k < dim // 2 (the ADM /
    U-ViT / DiT embedding): t [B] -> [B, dim] float32 (zero-padded when dim is odd)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos positional embedding of a grid x grid token grid: [grid^2, dim];
    half the features encode the column (w), half the row (h), each as [sin, cos] of
    pos * 10000^(-k / (dim / 4)), k < dim / 4 (DiT's `get_2d_sincos_pos_embed`)."""
    if dim % 4:
        raise ValueError(
            f"the sin-cos positional embedding needs a width divisible by 4, got {dim}"
        )

    def one_axis(pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return np.concatenate([one_axis(w), one_axis(h)], axis=1).astype(np.float32)


def unpatchify(x: jax.Array, patch_size: int, channels: int) -> jax.Array:
    """Tokens [B, h w, p p C] -> image [B, h p, w p, C] (square grid)."""
    B, T, _ = x.shape
    g, p = math.isqrt(T), patch_size
    x = x.reshape(B, g, g, p, p, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(B, g * p, g * p, channels)


class PatchEmbed(nnx.Module):
    """Conv with kernel = stride = p: image [B, H, W, C] -> tokens [B, (H/p)(W/p), D]."""

    def __init__(self, patch_size, in_ch, dim, *, kernel_init, dtype, rngs: KeyGen):
        self.proj = nnx.Conv(
            in_ch,
            dim,
            (patch_size, patch_size),
            strides=patch_size,
            padding="VALID",
            kernel_init=kernel_init,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.proj(x)
        return h.reshape(h.shape[0], -1, h.shape[-1])


class Attention(nnx.Module):
    """Multi-head self-attention: proj(softmax(q k^T / sqrt(d)) v), q, k, v = qkv(x) split into
    heads of d = D / num_heads; x [B, T, D] -> [B, T, D] (jax.nn.dot_product_attention)."""

    def __init__(self, dim, num_heads, *, qkv_bias, kernel_init, dtype, rngs: KeyGen):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(
            dim, 3 * dim, use_bias=qkv_bias, kernel_init=kernel_init, dtype=dtype, rngs=rngs
        )
        self.proj = nnx.Linear(dim, dim, kernel_init=kernel_init, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        B, T, D = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(B, T, 3 * self.num_heads, -1), 3, axis=2)
        h = jax.nn.dot_product_attention(q, k, v)
        return self.proj(h.reshape(B, T, D))


class Mlp(nnx.Module):
    """fc2(GELU(fc1(x))): [B, T, D] -> [B, T, D], hidden width `hidden`."""

    def __init__(self, dim, hidden, *, approximate, kernel_init, dtype, rngs: KeyGen):
        self.approximate = approximate
        self.fc1 = nnx.Linear(dim, hidden, kernel_init=kernel_init, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, kernel_init=kernel_init, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=self.approximate))
