"""NCSN++ / DDPM++ (Song et al. 2021, Sec. 4 and App. H): one configurable U-Net.

DDPM++ = resblock_type 'ddpm', no FIR, no progressive paths, positional embedding (VP).
NCSN++ = resblock_type 'biggan', FIR [1, 3, 3, 1], progressive 'output_skip',
progressive_input 'input_skip' or 'residual', Fourier embedding of log sigma (VE).

Input x [B, H, W, C], labels [B] (sigma for 'fourier', timestep for 'positional') -> [B, H, W, C].
The modules live in one list, `all_modules`, in the order of the original implementation, so that a
published checkpoint maps onto it entry by entry (see score_sde/convert/layout.py).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from score_sde.models import layers
from score_sde.models import up_or_down_sampling as uds
from score_sde.models.spec import DataSpec, ModelSpec


def get_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> np.ndarray:
    """Geometric noise levels sigma_max -> sigma_min [num_scales] (SMLD / VE discrete)."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales)).astype(np.float32)


class NCSNpp(nnx.Module):
    """NCSN++ / DDPM++ U-Net."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        layers.check_resolution(data.image_size, cfg.ch_mult)
        self.cfg, self.centered = cfg, data.centered
        dt = layers.get_dtype(cfg.dtype)
        act = layers.get_act(cfg.nonlinearity)
        nf, ch_mult = cfg.nf, cfg.ch_mult
        n_res = len(ch_mult)
        resolutions = [data.image_size // 2**i for i in range(n_res)]
        rb_type = cfg.resblock_type.lower()
        progressive = cfg.progressive.lower()
        progressive_input = cfg.progressive_input.lower()
        combine = cfg.progressive_combine.lower()
        channels = data.num_channels
        kw = dict(dtype=dt, rngs=rngs)

        mods = []
        if cfg.embedding_type == "fourier":
            mods.append(layers.GaussianFourierProjection(nf, cfg.fourier_scale, rngs=rngs))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        temb_dim = None
        if cfg.conditional:
            mods.append(layers.dense(embed_dim, nf * 4, **kw))
            mods.append(layers.dense(nf * 4, nf * 4, **kw))
            temb_dim = nf * 4
        if cfg.num_classes > 0:
            # classes 0..num_classes-1 and the null label num_classes (classifier-free guidance)
            self.class_embed = layers.embed(cfg.num_classes + 1, nf * 4, rngs=rngs)
            temb_dim = nf * 4
        else:
            self.class_embed = None

        def resblock(in_ch, out_ch=None, up=False, down=False):
            if rb_type == "ddpm":
                return layers.ResnetBlockDDPM(
                    in_ch,
                    out_ch,
                    act=act,
                    temb_dim=temb_dim,
                    dropout=cfg.dropout,
                    init_scale=cfg.init_scale,
                    skip_rescale=cfg.skip_rescale,
                    num_groups=None,
                    conv_size=cfg.conv_size,
                    **kw,
                )
            return layers.ResnetBlockBigGAN(
                in_ch,
                out_ch,
                act=act,
                temb_dim=temb_dim,
                dropout=cfg.dropout,
                up=up,
                down=down,
                fir=cfg.fir,
                fir_kernel=cfg.fir_kernel,
                init_scale=cfg.init_scale,
                skip_rescale=cfg.skip_rescale,
                conv_size=cfg.conv_size,
                **kw,
            )

        def attn(ch):
            return layers.AttnBlockpp(
                ch, skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale, **kw
            )

        def norm(ch):
            return layers.group_norm(ch, layers.ncsnpp_groups(ch), **kw)

        fir = dict(fir=cfg.fir, fir_kernel=cfg.fir_kernel)
        mods.append(layers.conv(channels, nf, cfg.conv_size, **kw))
        hs_c = [nf]
        in_ch = nf
        pyr_ch = channels
        for i_level in range(n_res):
            for _ in range(cfg.num_res_blocks):
                out_ch = nf * ch_mult[i_level]
                mods.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if resolutions[i_level] in cfg.attn_resolutions:
                    mods.append(attn(in_ch))
                hs_c.append(in_ch)
            if i_level != n_res - 1:
                if rb_type == "ddpm":
                    mods.append(
                        layers.Downsample(in_ch, with_conv=cfg.resamp_with_conv, **fir, **kw)
                    )
                else:
                    mods.append(resblock(in_ch, down=True))
                if progressive_input == "input_skip":
                    mods.append(layers.Combine(pyr_ch, in_ch, combine, **kw))
                    if combine == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    mods.append(layers.Downsample(pyr_ch, in_ch, with_conv=True, **fir, **kw))
                    pyr_ch = in_ch
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        mods += [resblock(in_ch), attn(in_ch), resblock(in_ch)]

        pyr_ch = 0
        for i_level in reversed(range(n_res)):
            for _ in range(cfg.num_res_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                mods.append(resblock(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            if resolutions[i_level] in cfg.attn_resolutions:
                mods.append(attn(in_ch))
            if progressive != "none":
                if i_level == n_res - 1:
                    mods.append(norm(in_ch))
                    if progressive == "output_skip":
                        mods.append(
                            layers.conv(
                                in_ch, channels, cfg.conv_size, init_scale=cfg.init_scale, **kw
                            )
                        )
                        pyr_ch = channels
                    else:
                        mods.append(layers.conv(in_ch, in_ch, cfg.conv_size, **kw))
                        pyr_ch = in_ch
                elif progressive == "output_skip":
                    mods.append(norm(in_ch))
                    mods.append(
                        layers.conv(in_ch, channels, cfg.conv_size, init_scale=cfg.init_scale, **kw)
                    )
                    pyr_ch = channels
                else:
                    mods.append(layers.Upsample(pyr_ch, in_ch, with_conv=True, **fir, **kw))
                    pyr_ch = in_ch
            if i_level != 0:
                if rb_type == "ddpm":
                    mods.append(
                        layers.Upsample(
                            in_ch,
                            with_conv=cfg.resamp_with_conv,
                            conv_size=cfg.conv_size,
                            **fir,
                            **kw,
                        )
                    )
                else:
                    mods.append(resblock(in_ch, up=True))
        if progressive != "output_skip":
            mods.append(norm(in_ch))
            mods.append(
                layers.conv(in_ch, channels, cfg.conv_size, init_scale=cfg.init_scale, **kw)
            )
        self.all_modules = nnx.List(mods)
        self.act = act

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        """x [B, H, W, C], labels [B] -> [B, H, W, C]."""
        cfg = self.cfg
        dt = layers.get_dtype(cfg.dtype)
        act = self.act
        n_res = len(cfg.ch_mult)
        rb_ddpm = cfg.resblock_type.lower() == "ddpm"
        progressive = cfg.progressive.lower()
        progressive_input = cfg.progressive_input.lower()
        mods = iter(self.all_modules)
        block = 0

        def res(h, temb):  # a residual block with its own dropout key
            nonlocal block
            block += 1
            return next(mods)(h, temb, train=train, rng=layers.fold(rng, block))

        def norm_act_conv(h):  # GroupNorm -> act -> conv, two consecutive modules
            h = act(next(mods)(h))
            return next(mods)(h)

        # noise-level embedding
        if cfg.embedding_type == "fourier":
            used_sigmas = labels
            temb = next(mods)(jnp.log(labels))
        else:
            used_sigmas = jnp.asarray(get_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.num_scales))[
                labels.astype(jnp.int32)
            ]
            temb = layers.get_timestep_embedding(labels, cfg.nf)
        if cfg.conditional:
            temb = next(mods)(temb.astype(dt))
            temb = next(mods)(act(temb))
        else:
            temb = None
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = jnp.full(x.shape[:1], cfg.num_classes, jnp.int32)
            c = self.class_embed(class_labels).astype(dt)
            temb = c if temb is None else temb + c

        h0 = x if self.centered else 2 * x - 1.0
        h0 = h0.astype(dt)
        input_pyramid = h0 if progressive_input != "none" else None

        # downsampling path
        hs = [next(mods)(h0)]
        for i_level in range(n_res):
            for _ in range(cfg.num_res_blocks):
                h = res(hs[-1], temb)
                if h.shape[1] in cfg.attn_resolutions:
                    h = next(mods)(h)
                hs.append(h)
            if i_level != n_res - 1:
                h = next(mods)(hs[-1]) if rb_ddpm else res(hs[-1], temb)
                if progressive_input == "input_skip":
                    input_pyramid = (
                        uds.downsample_2d(input_pyramid, cfg.fir_kernel)
                        if cfg.fir
                        else uds.naive_downsample_2d(input_pyramid)
                    )
                    h = next(mods)(input_pyramid, h)
                elif progressive_input == "residual":
                    input_pyramid = next(mods)(input_pyramid)
                    input_pyramid = input_pyramid + h
                    if cfg.skip_rescale:
                        input_pyramid = input_pyramid / np.sqrt(2.0)
                    h = input_pyramid
                hs.append(h)

        h = hs[-1]
        h = res(h, temb)
        h = next(mods)(h)
        h = res(h, temb)

        # upsampling path
        pyramid = None
        for i_level in reversed(range(n_res)):
            for _ in range(cfg.num_res_blocks + 1):
                h = res(jnp.concatenate([h, hs.pop()], axis=-1), temb)
            if h.shape[1] in cfg.attn_resolutions:
                h = next(mods)(h)
            if progressive != "none":
                if i_level == n_res - 1:
                    pyramid = norm_act_conv(h)
                elif progressive == "output_skip":
                    pyramid = (
                        uds.upsample_2d(pyramid, cfg.fir_kernel)
                        if cfg.fir
                        else uds.naive_upsample_2d(pyramid)
                    )
                    pyramid = pyramid + norm_act_conv(h)
                else:
                    pyramid = next(mods)(pyramid) + h
                    if cfg.skip_rescale:
                        pyramid = pyramid / np.sqrt(2.0)
                    h = pyramid
            if i_level != 0:
                h = next(mods)(h) if rb_ddpm else res(h, temb)

        if progressive == "output_skip":
            h = pyramid
        else:
            h = norm_act_conv(h)
        if next(mods, None) is not None:
            raise RuntimeError("NCSNpp: not every module was used; construction and call disagree")
        h = h.astype(x.dtype)
        if cfg.scale_by_sigma:
            h = h / used_sigmas.reshape((-1, 1, 1, 1)).astype(h.dtype)
        return h
