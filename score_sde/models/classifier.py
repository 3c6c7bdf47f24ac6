"""A noise-conditional classifier p_t(y | x_t) for classifier guidance: a Wide-ResNet taking t.

    logits = Dense(act(GN(h))) pooled over H, W;  h = blocks(conv3x3(x), temb),
    temb = MLP(sinusoidal(999 t)),  t in [0, T] the diffusion time (any SDE).

Each block is a pre-activation WRN block (Zagoruyko & Komodakis 2016) with the time embedding added
after its first convolution, as in the noise-conditional classifier of Song et al. (2021, app. I):
    h' = conv(dropout(act(GN(conv_s(act(GN(h))) + Dense(temb))))) + shortcut(h).
Groups of `num_res_blocks` blocks run at widths nf * ch_mult[i]; every group after the first
starts with stride 2. Run functionally like the score networks:
    classifier_apply(params, x [B, H, W, C], t [B], *, train=False, rng=None) -> logits [B, K].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from score_sde.models import layers


def _groups(ch: int) -> int:
    return min(ch // 4, 32) if ch % min(ch // 4, 32) == 0 else 1


class WideBlock(nnx.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, temb_dim: int, *, rngs):
        self.norm0 = layers.group_norm(in_ch, _groups(in_ch), rngs=rngs)
        self.conv0 = layers.conv(in_ch, out_ch, 3, stride=stride, rngs=rngs)
        self.temb = layers.dense(temb_dim, out_ch, rngs=rngs)
        self.norm1 = layers.group_norm(out_ch, _groups(out_ch), rngs=rngs)
        self.conv1 = layers.conv(out_ch, out_ch, 3, init_scale=0.0, rngs=rngs)
        self.skip = (
            layers.conv(in_ch, out_ch, 1, stride=stride, padding=((0, 0), (0, 0)), rngs=rngs)
            if (in_ch != out_ch or stride != 1)
            else None
        )

    def __call__(self, x, temb, act, rate, rng, train):
        h = self.conv0(act(self.norm0(x))) + self.temb(act(temb))[:, None, None, :]
        h = self.conv1(layers.dropout(act(self.norm1(h)), rate, rng, train))
        return h + (x if self.skip is None else self.skip(x))


class Classifier(nnx.Module):
    """x [B, H, W, C], t [B] -> logits [B, num_classes]."""

    def __init__(self, cfg, in_channels: int, *, rngs: layers.KeyGen):
        self.cfg = cfg
        nf = cfg.nf
        self.temb0 = layers.dense(nf, 4 * nf, rngs=rngs)
        self.temb1 = layers.dense(4 * nf, 4 * nf, rngs=rngs)
        self.stem = layers.conv(in_channels, nf, 3, rngs=rngs)
        blocks, ch = [], nf
        for i, mult in enumerate(cfg.ch_mult):
            for j in range(cfg.num_res_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(WideBlock(ch, nf * mult, stride, 4 * nf, rngs=rngs))
                ch = nf * mult
        self.blocks = nnx.List(blocks)
        self.norm = layers.group_norm(ch, _groups(ch), rngs=rngs)
        self.head = layers.dense(ch, cfg.num_classes, rngs=rngs)

    def __call__(self, x, t, *, train=False, rng=None):
        if x.ndim != 4:
            raise ValueError(f"the classifier takes images [B, H, W, C], got shape {x.shape}")
        act = layers.get_act(self.cfg.nonlinearity)
        temb = layers.get_timestep_embedding(999.0 * t, self.cfg.nf)
        temb = self.temb1(act(self.temb0(temb)))
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h, temb, act, self.cfg.dropout, layers.fold(rng, i), train)
        h = jnp.mean(act(self.norm(h)), axis=(1, 2))
        return self.head(h).astype(jnp.float32)


def make_classifier_apply(graphdef):
    """The pure function classifier_apply(params, x, t, *, train, rng) -> logits for a graphdef."""

    def classifier_apply(params, x, t, *, train=False, rng=None):
        return nnx.merge(graphdef, params)(x, t, train=train, rng=rng)

    return classifier_apply


def init_classifier(cfg, in_channels: int, key: jax.Array):
    """(classifier_apply, params) of config.classifier for images with `in_channels` channels."""
    graphdef, params = nnx.split(Classifier(cfg, in_channels, rngs=layers.KeyGen(key)))
    return make_classifier_apply(graphdef), params
