"""NCSNv2 (Song & Ermon 2020) and the small NCSN (v1, Song & Ermon 2019): RefineNet score networks.

Both are a dilated ResNet encoder followed by RefineNet blocks (residual conv units,
multi-resolution fusion, chained residual pooling) back to full resolution:

- NCSN (v1, `name='ncsn'`): every normalization is the *conditional* InstanceNorm++ whose scale,
  mean-correction and shift are looked up from the discrete noise level i (one row per sigma_i), so
  the network is conditioned on the noise only through its norms; average pooling in the CRP blocks.
- NCSNv2 (`name='ncsnv2_64' | 'ncsnv2_128' | 'ncsnv2_256'`, or `'ncsnv2'` to pick by image size as
  the original `get_network` did): unconditional InstanceNorm++, max pooling, and the noise enters
  only through the output scaling s(x, sigma_i) = f(x) / sigma_i (`scale_by_sigma`).

Input x [B, H, W, C] and labels [B] = the index i of sigma_i in the descending geometric schedule
(VE discrete, `score_fn.noise_labels`) -> [B, H, W, C]. Blocks with resample='down' and dilation > 1
keep the resolution (as in the originals); dilation 1 downsamples by conv + 2x2 mean pooling.

Deviations from the originals: conv biases start at zero (PyTorch draws them uniformly); the
InstanceNorm++ affine parameters are stored as [C] instead of [1, 1, 1, C].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from score_sde.models import layers
from score_sde.models import up_or_down_sampling as uds
from score_sde.models.ncsnpp import get_sigmas
from score_sde.models.spec import DataSpec, ModelSpec

# Residual stages of each variant: (channel multiplier of nf, first block downsamples, dilation).
# Every stage has two residual blocks; RefineNet blocks go back up through the stages in reverse.
VARIANTS = {
    "ncsnv2_64": ((1, False, 1), (2, True, 1), (2, True, 2), (2, True, 4)),
    "ncsnv2_128": ((1, False, 1), (2, True, 1), (2, True, 1), (4, True, 2), (4, True, 4)),
    "ncsnv2_256": (
        (1, False, 1),
        (2, True, 1),
        (2, True, 1),
        (2, True, 1),
        (4, True, 2),
        (4, True, 4),
    ),
}
VARIANTS["ncsn"] = VARIANTS["ncsnv2_64"]


def variant_for(name: str, image_size: int) -> str:
    """The architecture of config.model.name; 'ncsnv2' picks by image size like the original."""
    if name != "ncsnv2":
        return name
    if image_size < 96:
        return "ncsnv2_64"
    if image_size <= 128:
        return "ncsnv2_128"
    if image_size <= 256:
        return "ncsnv2_256"
    raise ValueError(
        f"config.data.image_size ({image_size}) > 256 has no NCSNv2 network; use ncsnpp"
    )


def ncsn_conv(in_ch, out_ch, kernel=3, *, dilation=1, use_bias=True, dtype, rngs):
    """NCSN convolution: PyTorch's default kernel init variance_scaling(1/3, fan_in, uniform)."""
    init = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    return layers.conv(
        in_ch,
        out_ch,
        kernel,
        dilation=dilation,
        use_bias=use_bias,
        kernel_init=init,
        dtype=dtype,
        rngs=rngs,
    )


def _plus_init(key, shape):
    """N(1, 0.02^2), the InstanceNorm++ scale initializer."""
    return 1.0 + 0.02 * jax.random.normal(key, shape)


def _moments(x):
    """Per-instance, per-channel mean and (biased) variance of x [B, H, W, C] in float32."""
    x = x.astype(jnp.float32)
    return x, x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)


class InstanceNormPlus(nnx.Module):
    """InstanceNorm++: h = gamma * ((x - mu) / s + alpha * (mu - m) / v) + beta, per instance.

    mu, s^2: per-channel mean and variance of x [B, H, W, C]; m, v^2: mean and variance of mu over
    channels. alpha, gamma ~ N(1, 0.02^2) [C], beta = 0 [C]. With num_scales > 0 the three vectors
    are rows of an embedding [num_scales, 3C] indexed by the noise level (conditional, NCSN v1).
    """

    def __init__(self, channels: int, num_scales: int = 0, *, dtype=jnp.float32, rngs):
        if num_scales:
            C = channels
            init = jnp.concatenate(
                [_plus_init(rngs.params(), (num_scales, 2 * C)), jnp.zeros((num_scales, C))],
                axis=-1,
            )
            self.embed = nnx.Param(init)  # [gamma | alpha | beta]
        else:
            self.embed = None
            self.alpha = nnx.Param(_plus_init(rngs.params(), (channels,)))
            self.gamma = nnx.Param(_plus_init(rngs.params(), (channels,)))
            self.beta = nnx.Param(jnp.zeros((channels,)))
        self.dtype = dtype

    def __call__(self, x, y=None):
        x, mu, var = _moments(x)
        means = mu[:, 0, 0, :]  # [B, C]
        means_plus = (means - means.mean(-1, keepdims=True)) / jnp.sqrt(
            means.var(-1, keepdims=True) + 1e-5
        )
        h = (x - mu) / jnp.sqrt(var + 1e-5)
        if self.embed is not None:
            gamma, alpha, beta = jnp.split(self.embed[...][y], 3, axis=-1)
        else:
            gamma, alpha, beta = self.gamma[...], self.alpha[...], self.beta[...]
            gamma, alpha, beta = gamma[None], alpha[None], beta[None]
        h = h + means_plus[:, None, None, :] * alpha[:, None, None, :]
        h = gamma[:, None, None, :] * h + beta[:, None, None, :]
        return h.astype(self.dtype)


class InstanceNorm(nnx.Module):
    """h = scale * (x - mu) / s + bias (variance_only: scale * x / s, no bias; 'VarianceNorm')."""

    def __init__(self, channels: int, *, variance_only: bool = False, dtype=jnp.float32, rngs):
        if variance_only:
            self.scale = nnx.Param(_plus_init(rngs.params(), (channels,)))
            self.bias = None
        else:
            self.scale = nnx.Param(jnp.ones((channels,)))
            self.bias = nnx.Param(jnp.zeros((channels,)))
        self.dtype = dtype

    def __call__(self, x, y=None):
        x, mu, var = _moments(x)
        if self.bias is None:
            return (x / jnp.sqrt(var + 1e-5) * self.scale[...]).astype(self.dtype)
        h = (x - mu) / jnp.sqrt(var + 1e-5)
        return (h * self.scale[...] + self.bias[...]).astype(self.dtype)


class ConvMeanPool(nnx.Module):
    """conv ('same') then 2x2 mean pooling: [B, H, W, in] -> [B, H/2, W/2, out]."""

    def __init__(self, in_ch, out_ch, kernel=3, *, dtype, rngs):
        self.conv = ncsn_conv(in_ch, out_ch, kernel, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return uds.naive_downsample_2d(self.conv(x))


class ResidualBlock(nnx.Module):
    """out = shortcut(x) + conv2(act(norm2(conv1(act(norm1(x)))))), optionally downsampling."""

    def __init__(self, in_ch, out_ch, *, down: bool, dilation: int, norm, act, dtype, rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.normalize1 = norm(in_ch)
        shortcut = None
        if down:
            self.conv1 = ncsn_conv(in_ch, in_ch, dilation=dilation, **kw)
            self.normalize2 = norm(in_ch)
            if dilation > 1:
                self.conv2 = ncsn_conv(in_ch, out_ch, dilation=dilation, **kw)
                shortcut = ncsn_conv(in_ch, out_ch, dilation=dilation, **kw)
            else:
                self.conv2 = ConvMeanPool(in_ch, out_ch, 3, **kw)
                shortcut = ConvMeanPool(in_ch, out_ch, 1, **kw)
        else:
            self.conv1 = ncsn_conv(in_ch, out_ch, dilation=dilation, **kw)
            self.normalize2 = norm(out_ch)
            self.conv2 = ncsn_conv(out_ch, out_ch, dilation=dilation, **kw)
            if in_ch != out_ch:
                shortcut = (
                    ncsn_conv(in_ch, out_ch, dilation=dilation, **kw)
                    if dilation > 1
                    else ncsn_conv(in_ch, out_ch, 1, **kw)
                )
        self.shortcut = shortcut
        self.act = act

    def __call__(self, x, y):
        h = self.conv1(self.act(self.normalize1(x, y)))
        h = self.conv2(self.act(self.normalize2(h, y)))
        return h + (x if self.shortcut is None else self.shortcut(x)).astype(h.dtype)


class RCUBlock(nnx.Module):
    """Residual conv units: n_blocks x (x + [norm ->] act -> conv, twice), bias-free convs."""

    def __init__(self, ch, n_blocks, *, norm, cond, act, dtype, rngs):
        n = 2 * n_blocks
        self.convs = nnx.List(
            [ncsn_conv(ch, ch, use_bias=False, dtype=dtype, rngs=rngs) for _ in range(n)]
        )
        self.norms = nnx.List([norm(ch) for _ in range(n)]) if cond else None
        self.n_blocks, self.act = n_blocks, act

    def __call__(self, x, y):
        for i in range(self.n_blocks):
            residual = x
            for j in (2 * i, 2 * i + 1):
                if self.norms is not None:
                    x = self.norms[j](x, y)
                x = self.convs[j](self.act(x))
            x = x + residual
        return x


def _pool5(x, kind: str):
    """5x5 stride-1 'same' pooling; 'avg' counts the zero padding (as PyTorch and flax)."""
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 5, 5, 1), (1,) * 4, "SAME")
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 5, 5, 1), (1,) * 4, "SAME") / 25.0


class CRPBlock(nnx.Module):
    """Chained residual pooling: x = act(x); path <- conv(pool([norm](path))); x += path, twice."""

    def __init__(self, ch, *, norm, cond, act, dtype, rngs):
        self.convs = nnx.List(
            [ncsn_conv(ch, ch, use_bias=False, dtype=dtype, rngs=rngs) for _ in range(2)]
        )
        self.norms = nnx.List([norm(ch) for _ in range(2)]) if cond else None
        self.pool = "avg" if cond else "max"
        self.act = act

    def __call__(self, x, y):
        x = self.act(x)
        path = x
        for i in range(2):
            if self.norms is not None:
                path = self.norms[i](path, y)
            path = self.convs[i](_pool5(path, self.pool))
            x = path + x
        return x


class MSFBlock(nnx.Module):
    """Multi-resolution fusion: sum_i resize(conv_i([norm_i](x_i))) at the output shape."""

    def __init__(self, in_planes, features, *, norm, cond, interpolation, dtype, rngs):
        self.convs = nnx.List([ncsn_conv(c, features, dtype=dtype, rngs=rngs) for c in in_planes])
        self.norms = nnx.List([norm(c) for c in in_planes]) if cond else None
        self.method = "bilinear" if interpolation == "bilinear" else "nearest"

    def __call__(self, xs, y, shape):
        out = 0.0
        for i, x in enumerate(xs):
            if self.norms is not None:
                x = self.norms[i](x, y)
            h = self.convs[i](x)
            h = jax.image.resize(h, (h.shape[0], *shape, h.shape[-1]), self.method)
            out = out + h
        return out


class RefineBlock(nnx.Module):
    """RefineNet block: RCU per input -> MSF (unless first) -> CRP -> RCU (3 units at the end)."""

    def __init__(self, in_planes, features, *, start=False, end=False, **kw):
        rcu_kw = {k: kw[k] for k in ("norm", "cond", "act", "dtype", "rngs")}
        self.adapt_convs = nnx.List([RCUBlock(c, 2, **rcu_kw) for c in in_planes])
        self.msf = (
            None
            if start
            else MSFBlock(
                in_planes,
                features,
                **{k: kw[k] for k in ("norm", "cond", "interpolation", "dtype", "rngs")},
            )
        )
        self.crp = CRPBlock(features, **rcu_kw)
        self.output_convs = RCUBlock(features, 3 if end else 1, **rcu_kw)

    def __call__(self, xs, y, shape):
        hs = [conv(x, y) for conv, x in zip(self.adapt_convs, xs, strict=True)]
        h = hs[0] if self.msf is None else self.msf(hs, y, shape)
        return self.output_convs(self.crp(h, y), y)


class NCSNv2(nnx.Module):
    """NCSNv2 / NCSN RefineNet: x [B, H, W, C], labels [B] (noise index) -> [B, H, W, C]."""

    def __init__(self, cfg: ModelSpec, data: DataSpec, *, rngs: layers.KeyGen):
        variant = variant_for(cfg.name, data.image_size)
        spec = VARIANTS[variant]
        factor = 2 ** sum(1 for _, down, dil in spec if down and dil == 1)
        if data.image_size % factor:
            raise ValueError(
                f"config.data.image_size ({data.image_size}) must be divisible by {factor} for "
                f"{variant}"
            )
        self.cfg, self.centered = cfg, data.centered
        dt = layers.get_dtype(cfg.dtype)
        act = layers.get_act(cfg.nonlinearity)
        cond = variant == "ncsn"
        nf = cfg.nf

        def norm(ch):
            if cond or cfg.normalization == "InstanceNorm++":
                return InstanceNormPlus(ch, cfg.num_scales if cond else 0, dtype=dt, rngs=rngs)
            return InstanceNorm(
                ch, variance_only=cfg.normalization == "VarianceNorm", dtype=dt, rngs=rngs
            )

        kw = dict(dtype=dt, rngs=rngs)
        self.begin_conv = ncsn_conv(data.num_channels, nf, **kw)
        stages, chans, in_ch = [], [], nf
        for mult, down, dilation in spec:
            out_ch = mult * nf
            stages.append(
                nnx.List(
                    [
                        ResidualBlock(
                            in_ch, out_ch, down=down, dilation=dilation, norm=norm, act=act, **kw
                        ),
                        ResidualBlock(
                            out_ch, out_ch, down=False, dilation=dilation, norm=norm, act=act, **kw
                        ),
                    ]
                )
            )
            chans.append(out_ch)
            in_ch = out_ch
        self.res = nnx.List(stages)
        # refine k (deepest first) outputs the channels of the next shallower stage
        rkw = dict(norm=norm, cond=cond, act=act, interpolation=cfg.interpolation, **kw)
        n = len(chans)
        refine = [RefineBlock([chans[-1]], chans[-2], start=True, **rkw)]
        for k in range(n - 2, -1, -1):
            refine.append(
                RefineBlock([chans[k], chans[k]], chans[max(k - 1, 0)], end=k == 0, **rkw)
            )
        self.refine = nnx.List(refine)
        self.normalizer = norm(nf)
        self.end_conv = ncsn_conv(nf, data.num_channels, **kw)
        self.act = act

    def __call__(self, x, labels, *, train=False, rng=None, class_labels=None):
        """x [B, H, W, C], labels [B] (index i of sigma_i, descending) -> [B, H, W, C]."""
        del train, rng  # no dropout
        if class_labels is not None:
            raise ValueError("ncsn/ncsnv2 are not class-conditional: pass class_labels=None")
        cfg = self.cfg
        dt = layers.get_dtype(cfg.dtype)
        y = labels.astype(jnp.int32)
        h = (x if self.centered else 2 * x - 1.0).astype(dt)
        h = self.begin_conv(h)
        feats = []
        for stage in self.res:
            for block in stage:
                h = block(h, y)
            feats.append(h)
        ref = self.refine[0]([feats[-1]], y, feats[-1].shape[1:3])
        for k, block in zip(range(len(feats) - 2, -1, -1), self.refine[1:], strict=True):
            ref = block([feats[k], ref], y, feats[k].shape[1:3])
        h = self.end_conv(self.act(self.normalizer(ref, y))).astype(x.dtype)
        if cfg.scale_by_sigma:
            sigmas = jnp.asarray(get_sigmas(cfg.sigma_min, cfg.sigma_max, cfg.num_scales))
            h = h / sigmas[y].reshape((-1, 1, 1, 1)).astype(h.dtype)
        return h
