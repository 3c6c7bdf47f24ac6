"""DDPM U-Net (Ho et al. 2020): GroupNorm(32) residual blocks, attention at chosen resolutions,
nearest/strided-conv resampling, sinusoidal timestep embedding.

x [B, H, W, C], labels [B] (timestep index, or noise index for VE discrete) -> [B, H, W, C].
Module order matches the original implementation (see ncsnpp.py for why).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from score_sde.models import layers
from score_sde.models.ncsnpp import get_sigmas
from score_sde.models.spec import DataSpec, ModelSpec


class DDPM(nnx.Module):
    """DDPM U-Net."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        layers.check_resolution(data.image_size, cfg.ch_mult)
        self.cfg, self.centered = cfg, data.centered
        dt = layers.get_dtype(cfg.dtype)
        act = layers.get_act(cfg.nonlinearity)
        nf, ch_mult = cfg.nf, cfg.ch_mult
        n_res = len(ch_mult)
        resolutions = [data.image_size // 2**i for i in range(n_res)]
        channels = data.num_channels
        kw = dict(dtype=dt, rngs=rngs)
        temb_dim = nf * 4 if (cfg.conditional or cfg.num_classes > 0) else None

        def resblock(in_ch, out_ch=None):
            return layers.ResnetBlockDDPM(
                in_ch, out_ch, act=act, temb_dim=temb_dim, dropout=cfg.dropout, init_scale=0.0, **kw
            )

        mods = []
        if cfg.conditional:
            mods += [layers.dense(nf, nf * 4, **kw), layers.dense(nf * 4, nf * 4, **kw)]
        self.class_embed = (
            layers.embed(cfg.num_classes + 1, nf * 4, rngs=rngs) if cfg.num_classes > 0 else None
        )
        mods.append(layers.conv(channels, nf, 3, **kw))
        hs_c = [nf]
        in_ch = nf
        for i_level in range(n_res):
            for _ in range(cfg.num_res_blocks):
                out_ch = nf * ch_mult[i_level]
                mods.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if resolutions[i_level] in cfg.attn_resolutions:
                    mods.append(layers.AttnBlock(in_ch, **kw))
                hs_c.append(in_ch)
            if i_level != n_res - 1:
                mods.append(layers.Downsample(in_ch, with_conv=cfg.resamp_with_conv, **kw))
                hs_c.append(in_ch)
        in_ch = hs_c[-1]
        mods += [resblock(in_ch), layers.AttnBlock(in_ch, **kw), resblock(in_ch)]
        for i_level in reversed(range(n_res)):
            for _ in range(cfg.num_res_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                mods.append(resblock(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            if resolutions[i_level] in cfg.attn_resolutions:
                mods.append(layers.AttnBlock(in_ch, **kw))
            if i_level != 0:
                mods.append(layers.Upsample(in_ch, with_conv=cfg.resamp_with_conv, **kw))
        mods.append(layers.group_norm(in_ch, 32, **kw))
        mods.append(layers.conv(in_ch, channels, 3, init_scale=0.0, **kw))
        self.all_modules = nnx.List(mods)
        self.act = act

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        """x [B, H, W, C], labels [B] -> [B, H, W, C]."""
        cfg = self.cfg
        dt = layers.get_dtype(cfg.dtype)
        act = self.act
        n_res = len(cfg.ch_mult)
        mods = iter(self.all_modules)
        block = 0

        def res(h, temb):
            nonlocal block
            block += 1
            return next(mods)(h, temb, train=train, rng=layers.fold(rng, block))

        temb = None
        if cfg.conditional:
            temb = layers.get_timestep_embedding(labels, cfg.nf).astype(dt)
            temb = next(mods)(temb)
            temb = next(mods)(act(temb))
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = jnp.full(x.shape[:1], cfg.num_classes, jnp.int32)
            c = self.class_embed(class_labels).astype(dt)
            temb = c if temb is None else temb + c

        h = (x if self.centered else 2 * x - 1.0).astype(dt)
        hs = [next(mods)(h)]
        for i_level in range(n_res):
            for _ in range(cfg.num_res_blocks):
                h = res(hs[-1], temb)
                if h.shape[1] in cfg.attn_resolutions:
                    h = next(mods)(h)
                hs.append(h)
            if i_level != n_res - 1:
                hs.append(next(mods)(hs[-1]))
        h = res(hs[-1], temb)
        h = next(mods)(h)
        h = res(h, temb)
        for i_level in reversed(range(n_res)):
            for _ in range(cfg.num_res_blocks + 1):
                h = res(jnp.concatenate([h, hs.pop()], axis=-1), temb)
            if h.shape[1] in cfg.attn_resolutions:
                h = next(mods)(h)
            if i_level != 0:
                h = next(mods)(h)
        h = act(next(mods)(h))
        h = next(mods)(h).astype(x.dtype)
        if cfg.scale_by_sigma:
            sigmas = jnp.asarray(get_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.num_scales))
            h = h / sigmas[labels.astype(jnp.int32)].reshape((-1, 1, 1, 1)).astype(h.dtype)
        return h
