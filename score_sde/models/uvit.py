"""U-ViT (Bao et al. 2023, "All are Worth Words"): a ViT whose tokens are the image's patches, the
noise level and the class, with long skip connections between shallow and deep blocks.

    tokens = [label?, time, patch_embed(x)] + pos_embed            [B, extras + h w, D]
    in_blocks (depth // 2) -> mid_block -> out_blocks (depth // 2), each out block first
    joins the matching in block's output: x = skip_linear(concat(x, skip)) (2D -> D)
    out = final_layer(unpatchify(decoder_pred(norm(tokens))[:, extras:]))  [B, H, W, C]

time = time_embed(frequency_embedding(labels, D)) (an MLP D -> 4D -> D with mlp_time_embed,
else the embedding itself); label = label_emb(class_labels) with num_classes + 1 rows (the last
is the null label, used when class_labels is None). Blocks are pre-norm: x + attn(LN(x)), then
x + mlp(LN(x)) (GELU, hidden mlp_ratio D). Module names follow baofff/U-ViT `libs/uvit.py`;
initialization as there: truncated normal(0.02) kernels and position embedding, zero biases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from score_sde.models import layers
from score_sde.models.spec import DataSpec, ModelSpec
from score_sde.models.transformer import (
    Attention,
    Mlp,
    PatchEmbed,
    check_image,
    frequency_embedding,
    unpatchify,
)

_TRUNC = nnx.initializers.truncated_normal(0.02)


class Block(nnx.Module):
    """Pre-norm transformer block, with skip_linear (2D -> D) when it ends a long skip."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, *, skip, dtype, rngs):
        kw = dict(kernel_init=_TRUNC, dtype=dtype, rngs=rngs)
        self.skip_linear = nnx.Linear(2 * dim, dim, **kw) if skip else None
        self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, **kw)
        self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate=False, **kw)

    def __call__(self, x, skip=None):
        """x, skip: [B, T, D] -> [B, T, D]."""
        if self.skip_linear is not None:
            x = self.skip_linear(jnp.concatenate([x, skip], axis=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nnx.Module):
    """U-ViT: x [B, H, W, C], labels [B] -> [B, H, W, C]."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        check_image("uvit", data, cfg.patch_size, cfg.num_heads, cfg.embed_dim)
        self.cfg, self.centered, self.channels = cfg, data.centered, data.num_channels
        dt = layers.get_dtype(cfg.dtype)
        D, p, C = cfg.embed_dim, cfg.patch_size, data.num_channels
        kw = dict(kernel_init=_TRUNC, dtype=dt, rngs=rngs)
        self.patch_embed = PatchEmbed(p, C, D, **kw)
        self.time_embed = (
            nnx.List([nnx.Linear(D, 4 * D, **kw), nnx.Linear(4 * D, D, **kw)])
            if cfg.mlp_time_embed
            else None
        )
        self.label_emb = (
            layers.embed(cfg.num_classes + 1, D, rngs=rngs) if cfg.num_classes > 0 else None
        )
        self.extras = 2 if cfg.num_classes > 0 else 1
        num_patches = (data.image_size // p) ** 2
        self.pos_embed = nnx.Param(_TRUNC(rngs.params(), (1, self.extras + num_patches, D)))
        block = dict(dtype=dt, rngs=rngs)
        args = (D, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias)
        self.in_blocks = nnx.List(
            [Block(*args, skip=False, **block) for _ in range(cfg.depth // 2)]
        )
        self.mid_block = Block(*args, skip=False, **block)
        self.out_blocks = nnx.List(
            [Block(*args, skip=True, **block) for _ in range(cfg.depth // 2)]
        )
        self.norm = nnx.LayerNorm(D, epsilon=1e-5, dtype=dt, rngs=rngs)
        self.decoder_pred = nnx.Linear(D, p * p * C, **kw)
        self.final_layer = layers.conv(C, C, 3, dtype=dt, rngs=rngs) if cfg.conv else None

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        """x [B, H, W, C], labels [B] float, class_labels [B] int (None: the null label)."""
        del train, rng  # no dropout
        cfg = self.cfg
        dt = layers.get_dtype(cfg.dtype)
        h = (x if self.centered else 2 * x - 1.0).astype(dt)
        tokens = self.patch_embed(h)
        time = frequency_embedding(labels, cfg.embed_dim).astype(dt)
        if self.time_embed is not None:
            time = self.time_embed[1](jax.nn.silu(self.time_embed[0](time)))
        extra = [time[:, None]]
        if self.label_emb is not None:
            if class_labels is None:
                class_labels = jnp.full(x.shape[:1], cfg.num_classes, jnp.int32)
            extra.insert(0, self.label_emb(class_labels).astype(dt)[:, None])
        tokens = jnp.concatenate([*extra, tokens], axis=1) + self.pos_embed[...].astype(dt)
        skips = []
        for blk in self.in_blocks:
            tokens = blk(tokens)
            skips.append(tokens)
        tokens = self.mid_block(tokens)
        for blk in self.out_blocks:
            tokens = blk(tokens, skips.pop())
        tokens = self.decoder_pred(self.norm(tokens))[:, self.extras :]
        out = unpatchify(tokens, cfg.patch_size, self.channels)
        if self.final_layer is not None:
            out = self.final_layer(out)
        out = out.astype(x.dtype)
        if cfg.scale_by_sigma:  # VE, continuous: labels = sigma
            out = out / labels.reshape((-1, 1, 1, 1)).astype(out.dtype)
        return out
