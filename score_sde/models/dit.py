"""DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"): a ViT over patches,
conditioned on c = t_embedder(labels) + y_embedder(class) through adaLN-Zero.

    tokens = x_embedder(x) + pos (fixed 2-D sin-cos, not a parameter)       [B, h w, D]
    block:  (sa, ca, ga, sm, cm, gm) = Linear(SiLU(c)) (D -> 6D, zero-initialized)
            x = x + ga * attn(LN(x) (1 + ca) + sa);  x = x + gm * mlp(LN(x) (1 + cm) + sm)
    final:  (s, c') = Linear(SiLU(c)) (D -> 2D, zero); out = Linear(LN(x) (1 + c') + s)
            (D -> p p C_out, zero), unpatchified to [B, H, W, C_out]

LN has no affine parameters (eps 1e-6). With zero modulation every block is the identity and the
final layer outputs exactly 0 at initialization. t_embedder: Linear(SiLU(Linear(256-dim
frequency embedding))) -> D; y_embedder: num_classes + 1 rows (the last is the null label, used
when class_labels is None). learn_sigma: C_out = 2C as in the original, whose second half is the
variance of its learned-variance DDPM; a score network has no use for it, so only the first C
channels are returned. The t_embedder embeds time_offset + time_scale * labels (DiT: the labels
themselves; SiT's t, from noise 0 to data 1, on a flow path: 1 - labels / 999). Module names and
initializations follow facebookresearch/DiT `models.py` (willisma/SiT: the same modules).
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
    sincos_pos_embed_2d,
    unpatchify,
)

FREQUENCY_DIM = 256  # DiT's TimestepEmbedder.frequency_embedding_size
_XAVIER = nnx.initializers.xavier_uniform()
_ZERO = nnx.initializers.zeros_init()
# xavier_uniform of the patch conv's kernel [p, p, C, D] seen as a [p p C, D] matrix (as DiT)
_XAVIER_PATCH = nnx.initializers.variance_scaling(
    1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=-1
)


def _modulate(x, shift, scale):
    """x [B, T, D] * (1 + scale[:, None]) + shift[:, None]."""
    return x * (1 + scale[:, None]) + shift[:, None]


def _norm(dim, dtype, rngs):
    return nnx.LayerNorm(dim, epsilon=1e-6, use_bias=False, use_scale=False, dtype=dtype, rngs=rngs)


class DiTBlock(nnx.Module):
    """adaLN-Zero transformer block: x [B, T, D], c [B, D] -> [B, T, D]."""

    def __init__(self, dim, num_heads, mlp_ratio, *, dtype, rngs):
        kw = dict(kernel_init=_XAVIER, dtype=dtype, rngs=rngs)
        self.norm1 = _norm(dim, dtype, rngs)
        self.attn = Attention(dim, num_heads, qkv_bias=True, **kw)
        self.norm2 = _norm(dim, dtype, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate=True, **kw)
        self.adaLN_modulation = nnx.Linear(dim, 6 * dim, kernel_init=_ZERO, dtype=dtype, rngs=rngs)

    def __call__(self, x, c):
        sa, ca, ga, sm, cm, gm = jnp.split(self.adaLN_modulation(jax.nn.silu(c)), 6, axis=-1)
        x = x + ga[:, None] * self.attn(_modulate(self.norm1(x), sa, ca))
        return x + gm[:, None] * self.mlp(_modulate(self.norm2(x), sm, cm))


class FinalLayer(nnx.Module):
    """adaLN then Linear D -> p p C_out, both zero-initialized: [B, T, D] -> [B, T, p p C_out]."""

    def __init__(self, dim, out_features, *, dtype, rngs):
        self.norm_final = _norm(dim, dtype, rngs)
        self.linear = nnx.Linear(dim, out_features, kernel_init=_ZERO, dtype=dtype, rngs=rngs)
        self.adaLN_modulation = nnx.Linear(dim, 2 * dim, kernel_init=_ZERO, dtype=dtype, rngs=rngs)

    def __call__(self, x, c):
        shift, scale = jnp.split(self.adaLN_modulation(jax.nn.silu(c)), 2, axis=-1)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class TimestepEmbedder(nnx.Module):
    """labels [B] -> Linear(SiLU(Linear(frequency_embedding(labels, 256)))) [B, D]."""

    def __init__(self, dim, *, dtype, rngs):
        init = nnx.initializers.normal(0.02)
        self.mlp_0 = nnx.Linear(FREQUENCY_DIM, dim, kernel_init=init, dtype=dtype, rngs=rngs)
        self.mlp_2 = nnx.Linear(dim, dim, kernel_init=init, dtype=dtype, rngs=rngs)

    def __call__(self, t):
        emb = frequency_embedding(t, FREQUENCY_DIM).astype(self.mlp_0.dtype)
        return self.mlp_2(jax.nn.silu(self.mlp_0(emb)))


class DiT(nnx.Module):
    """DiT: x [B, H, W, C], labels [B] -> [B, H, W, C]."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        check_image("dit", data, cfg.patch_size, cfg.num_heads, cfg.hidden_size)
        self.cfg, self.centered, self.channels = cfg, data.centered, data.num_channels
        dt = layers.get_dtype(cfg.dtype)
        D, p, C = cfg.hidden_size, cfg.patch_size, data.num_channels
        self.out_channels = 2 * C if cfg.learn_sigma else C
        self.grid = data.image_size // p
        self.x_embedder = PatchEmbed(p, C, D, kernel_init=_XAVIER_PATCH, dtype=dt, rngs=rngs)
        self.t_embedder = TimestepEmbedder(D, dtype=dt, rngs=rngs)
        self.y_embedder = (
            layers.embed(cfg.num_classes + 1, D, rngs=rngs) if cfg.num_classes > 0 else None
        )
        self.blocks = nnx.List(
            [
                DiTBlock(D, cfg.num_heads, cfg.mlp_ratio, dtype=dt, rngs=rngs)
                for _ in range(cfg.depth)
            ]
        )
        self.final_layer = FinalLayer(D, p * p * self.out_channels, dtype=dt, rngs=rngs)

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        """x [B, H, W, C], labels [B] float, class_labels [B] int (None: the null label)."""
        del train, rng  # no dropout
        cfg = self.cfg
        dt = layers.get_dtype(cfg.dtype)
        h = (x if self.centered else 2 * x - 1.0).astype(dt)
        pos = sincos_pos_embed_2d(cfg.hidden_size, self.grid)
        tokens = self.x_embedder(h) + jnp.asarray(pos, dt)
        c = self.t_embedder(cfg.time_offset + cfg.time_scale * labels)
        if self.y_embedder is not None:
            if class_labels is None:
                class_labels = jnp.full(x.shape[:1], cfg.num_classes, jnp.int32)
            c = c + self.y_embedder(class_labels).astype(c.dtype)
        for block in self.blocks:
            tokens = block(tokens, c)
        tokens = self.final_layer(tokens, c)
        out = unpatchify(tokens, cfg.patch_size, self.out_channels)[..., : self.channels]
        out = out.astype(x.dtype)
        if cfg.scale_by_sigma:  # VE, continuous: labels = sigma
            out = out / labels.reshape((-1, 1, 1, 1)).astype(out.dtype)
        return out
