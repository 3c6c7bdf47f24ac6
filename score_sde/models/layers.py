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

from score_sde.models import up_or_down_sampling as uds


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


def check_resolution(image_size: int, ch_mult) -> None:
    """A U-Net with len(ch_mult) levels halves the resolution len(ch_mult) - 1 times."""
    n = len(ch_mult)
    if image_size % 2 ** (n - 1):
        raise ValueError(
            f"config.data.image_size ({image_size}) must be divisible by "
            f"2**(len(config.model.ch_mult) - 1) = {2 ** (n - 1)}"
        )


def dropout(x: jax.Array, rate: float, rng: jax.Array | None, train: bool) -> jax.Array:
    """Inverted dropout with an explicit key; identity unless train and rate > 0."""
    if not train or rate == 0.0:
        return x
    if rng is None:
        raise ValueError(
            f"dropout rate {rate} with train=True needs an explicit key: "
            "pass rng=jax.random.key(...)"
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


class KeyGen:
    """The `params` key stream the nnx layers draw from: fold_in(key, 1), fold_in(key, 2), ...

    Passed as `rngs=` to nnx.Linear / nnx.Conv / nnx.GroupNorm / nnx.Embed, which only call
    `rngs.params()`. A plain Python counter instead of nnx.Rngs: under `jax.eval_shape` each
    nnx.Rngs draw costs ~10 ms (flax 0.12 asks the traced counter for its sharding, which makes
    JAX build a tracer-provenance message), so the 100M-parameter published networks took 8 s to
    build abstractly instead of 0.5 s.
    """

    def __init__(self, key: jax.Array):
        self.key, self.count = key, 0

    def params(self) -> jax.Array:
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


class GaussianFourierProjection(nnx.Module):
    """Random Fourier features [sin(2 pi W x), cos(2 pi W x)] of a scalar [B] -> [B, 2 E].

    W ~ N(0, scale^2) [E] is stored as a parameter (as in the original, which counts it) but is
    never trained: the forward pass stops its gradient.
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, *, rngs: KeyGen):
        self.W = nnx.Param(jax.random.normal(rngs.params(), (embedding_size,)) * scale)

    def __call__(self, x: jax.Array) -> jax.Array:
        W = jax.lax.stop_gradient(self.W[...])
        x_proj = x.astype(jnp.float32)[:, None] * W[None, :] * 2 * np.pi
        return jnp.concatenate([jnp.sin(x_proj), jnp.cos(x_proj)], axis=-1)


def dense(
    in_features: int,
    out_features: int,
    *,
    init_scale: float = 1.0,
    dtype=jnp.float32,
    rngs: KeyGen,
    use_bias: bool = True,
) -> nnx.Linear:
    """nnx.Linear with the DDPM initializer and zero bias; computed in `dtype`, params float32."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=default_init(init_scale),
        dtype=dtype,
        rngs=rngs,
    )


def embed(num: int, features: int, *, rngs: KeyGen) -> nnx.Embed:
    """nnx.Embed [num, features] initialized N(0, 0.02^2) (class labels)."""
    return nnx.Embed(num, features, embedding_init=jax.nn.initializers.normal(0.02), rngs=rngs)


# ---------------------------------------------------------------------------------------------
# Convolutions, normalization, attention and residual blocks of DDPM and NCSN++ (NHWC).
# Attribute names follow the original code (Conv_0, GroupNorm_0, NIN_0, ...) so that published
# checkpoints map onto our parameters one to one.
# ---------------------------------------------------------------------------------------------


def conv(
    in_ch: int,
    out_ch: int,
    kernel: int = 3,
    *,
    stride: int = 1,
    padding=None,
    dilation: int = 1,
    init_scale: float = 1.0,
    use_bias: bool = True,
    kernel_init=None,
    dtype=jnp.float32,
    rngs: KeyGen,
) -> nnx.Conv:
    """k x k nnx.Conv (NHWC, kernel [k, k, in, out]) computed in `dtype`.

    'same' padding (dilation * (k // 2) each side) unless `padding` is given; the kernel is drawn
    from `kernel_init` (default: the DDPM initializer with `init_scale`), the bias is zero.
    """
    if padding is None:
        padding = ((dilation * (kernel // 2),) * 2,) * 2
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=stride,
        padding=tuple(tuple(p) for p in padding),
        kernel_dilation=dilation,
        use_bias=use_bias,
        kernel_init=default_init(init_scale) if kernel_init is None else kernel_init,
        dtype=dtype,
        rngs=rngs,
    )


class GroupNorm(nnx.GroupNorm):
    """nnx.GroupNorm over [B, H, W, C] computed in float32 (statistics by the two-pass variance,
    then the float32 scale [C] = 1 and bias [C] = 0), the result cast to the compute dtype."""

    def __init__(self, num_channels: int, num_groups: int, eps: float = 1e-6, *, dtype, rngs):
        super().__init__(
            num_channels,
            num_groups=num_groups,
            epsilon=eps,
            use_fast_variance=False,
            dtype=jnp.float32,
            rngs=rngs,
        )
        self.out_dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(x.astype(jnp.float32)).astype(self.out_dtype)


def group_norm(
    num_channels: int, num_groups: int, eps: float = 1e-6, *, dtype=jnp.float32, rngs: KeyGen
) -> GroupNorm:
    """GroupNorm with `num_groups` groups; the error names the config fields to change."""
    if num_channels % num_groups:
        raise ValueError(
            f"GroupNorm: {num_channels} channels are not divisible into {num_groups} groups; "
            "change config.model.nf / ch_mult"
        )
    return GroupNorm(num_channels, num_groups, eps, dtype=dtype, rngs=rngs)


def ncsnpp_groups(channels: int) -> int:
    """NCSN++ uses min(C // 4, 32) groups."""
    return min(channels // 4, 32)


class NIN(nnx.Module):
    """Network-in-network (1x1) layer: x [..., in] @ W [in, out] + b [out]."""

    def __init__(
        self,
        in_dim: int,
        num_units: int,
        init_scale: float = 0.1,
        *,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        self.W = nnx.Param(default_init(init_scale)(rngs.params(), (in_dim, num_units)))
        self.b = nnx.Param(jnp.zeros((num_units,)))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        return x @ self.W[...].astype(self.dtype) + self.b[...].astype(self.dtype)


class FIRConv(nnx.Module):
    """Conv2d fused with FIR up- or down-sampling (StyleGAN2 upsample_conv_2d /
    conv_downsample_2d): kernel [k, k, in, out], bias [out]."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        *,
        up: bool = False,
        down: bool = False,
        resample_kernel=(1, 3, 3, 1),
        use_bias: bool = True,
        init_scale: float = 1.0,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        if up and down:
            raise ValueError("FIRConv: up and down cannot both be set")
        self.kernel = nnx.Param(
            default_init(init_scale)(rngs.params(), (kernel, kernel, in_ch, out_ch))
        )
        self.bias = nnx.Param(jnp.zeros((out_ch,))) if use_bias else None
        self.up, self.down, self.k = up, down, tuple(resample_kernel)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x, w = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        if self.up:
            x = uds.upsample_conv_2d(x, w, self.k)
        elif self.down:
            x = uds.conv_downsample_2d(x, w, self.k)
        else:
            x = uds.conv_2d(x, w)
        return x if self.bias is None else x + self.bias[...].astype(self.dtype)


def _attention(q, k, v):
    """Single-head attention over all pixels; logits and softmax in float32."""
    B, H, W, C = q.shape
    w = jnp.einsum("bhwc,bijc->bhwij", q, k, preferred_element_type=jnp.float32) * C**-0.5
    w = jax.nn.softmax(w.reshape(B, H, W, H * W), axis=-1).reshape(B, H, W, H, W)
    return jnp.einsum("bhwij,bijc->bhwc", w.astype(v.dtype), v)


class AttnBlock(nnx.Module):
    """DDPM self-attention block (32 groups); out = x + NIN_3(attn(GN(x)))."""

    def __init__(
        self,
        channels: int,
        *,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        num_groups: int | None = 32,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        groups = ncsnpp_groups(channels) if num_groups is None else num_groups
        self.GroupNorm_0 = group_norm(channels, groups, dtype=dtype, rngs=rngs)
        self.NIN_0 = NIN(channels, channels, dtype=dtype, rngs=rngs)
        self.NIN_1 = NIN(channels, channels, dtype=dtype, rngs=rngs)
        self.NIN_2 = NIN(channels, channels, dtype=dtype, rngs=rngs)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale, dtype=dtype, rngs=rngs)
        self.skip_rescale = skip_rescale

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.GroupNorm_0(x)
        h = self.NIN_3(_attention(self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)))
        out = x + h.astype(x.dtype)
        return out / np.sqrt(2.0) if self.skip_rescale else out


def AttnBlockpp(channels: int, *, skip_rescale: bool, init_scale: float, dtype, rngs):
    """NCSN++ attention: min(C//4, 32) groups, configurable init_scale and skip_rescale."""
    return AttnBlock(
        channels,
        skip_rescale=skip_rescale,
        init_scale=init_scale,
        num_groups=None,
        dtype=dtype,
        rngs=rngs,
    )


class Upsample(nnx.Module):
    """x2 upsampling: nearest (+3x3 conv), or FIR (+fused FIR conv when with_conv)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel=(1, 3, 3, 1),
        conv_size: int = 3,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        out_ch = out_ch or in_ch
        self.fir, self.with_conv, self.fir_kernel = fir, with_conv, tuple(fir_kernel)
        self.Conv_0 = (
            conv(in_ch, out_ch, conv_size, dtype=dtype, rngs=rngs)
            if with_conv and not fir
            else None
        )
        self.Conv2d_0 = (
            FIRConv(in_ch, out_ch, 3, up=True, resample_kernel=fir_kernel, dtype=dtype, rngs=rngs)
            if with_conv and fir
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.fir:
            h = uds.naive_upsample_2d(x, 2)
            return self.Conv_0(h) if self.with_conv else h
        if not self.with_conv:
            return uds.upsample_2d(x, self.fir_kernel, factor=2)
        return self.Conv2d_0(x)


class Downsample(nnx.Module):
    """/2 downsampling: stride-2 3x3 conv after (0, 1) padding or average pooling; or FIR."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel=(1, 3, 3, 1),
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        out_ch = out_ch or in_ch
        self.fir, self.with_conv, self.fir_kernel = fir, with_conv, tuple(fir_kernel)
        self.Conv_0 = (
            conv(in_ch, out_ch, 3, stride=2, padding=[(0, 1), (0, 1)], dtype=dtype, rngs=rngs)
            if with_conv and not fir
            else None
        )
        self.Conv2d_0 = (
            FIRConv(in_ch, out_ch, 3, down=True, resample_kernel=fir_kernel, dtype=dtype, rngs=rngs)
            if with_conv and fir
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.fir:
            return self.Conv_0(x) if self.with_conv else uds.naive_downsample_2d(x, 2)
        if not self.with_conv:
            return uds.downsample_2d(x, self.fir_kernel, factor=2)
        return self.Conv2d_0(x)


class ResnetBlockDDPM(nnx.Module):
    """DDPM residual block (also NCSN++'s 'ddpm' block with min(C//4, 32) groups):

    h = Conv_1(drop(act(GN_1(Conv_0(act(GN_0(x))) + Dense_0(act(temb)))))),
    out = (shortcut(x) + h) [/ sqrt 2 when skip_rescale].
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        act,
        temb_dim: int | None,
        dropout: float,
        init_scale: float = 0.0,
        skip_rescale: bool = False,
        conv_shortcut: bool = False,
        num_groups: int | None = 32,
        conv_size: int = 3,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        out_ch = out_ch or in_ch
        kw = dict(dtype=dtype, rngs=rngs)
        g0 = ncsnpp_groups(in_ch) if num_groups is None else num_groups
        g1 = ncsnpp_groups(out_ch) if num_groups is None else num_groups
        self.GroupNorm_0 = group_norm(in_ch, g0, **kw)
        self.Conv_0 = conv(in_ch, out_ch, conv_size, **kw)
        self.Dense_0 = dense(temb_dim, out_ch, **kw) if temb_dim else None
        self.GroupNorm_1 = group_norm(out_ch, g1, **kw)
        self.Conv_1 = conv(out_ch, out_ch, conv_size, init_scale=init_scale, **kw)
        change = in_ch != out_ch
        self.Conv_2 = conv(in_ch, out_ch, conv_size, **kw) if change and conv_shortcut else None
        self.NIN_0 = NIN(in_ch, out_ch, **kw) if change and not conv_shortcut else None
        self.act, self.dropout, self.skip_rescale = act, dropout, skip_rescale

    def __call__(self, x, temb=None, *, train=False, rng=None):
        act = self.act
        h = self.Conv_0(act(self.GroupNorm_0(x)))
        if temb is not None and self.Dense_0 is not None:
            h = h + self.Dense_0(act(temb))[:, None, None, :]
        h = act(self.GroupNorm_1(h))
        h = self.Conv_1(dropout(h, self.dropout, rng, train))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        elif self.NIN_0 is not None:
            x = self.NIN_0(x)
        out = x.astype(h.dtype) + h
        return out / np.sqrt(2.0) if self.skip_rescale else out


class ResnetBlockBigGAN(nnx.Module):
    """BigGAN residual block of NCSN++, with optional (FIR) up/down-sampling inside:

    h = Conv_1(drop(act(GN_1(Conv_0(resample(act(GN_0(x)))) + Dense_0(act(temb)))))),
    out = (Conv_2(resample(x)) + h) / sqrt 2 (Conv_2 only if channels change or resampling).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        act,
        temb_dim: int | None,
        dropout: float,
        up: bool = False,
        down: bool = False,
        fir: bool = False,
        fir_kernel=(1, 3, 3, 1),
        init_scale: float = 0.0,
        skip_rescale: bool = True,
        conv_size: int = 3,
        dtype=jnp.float32,
        rngs: KeyGen,
    ):
        out_ch = out_ch or in_ch
        kw = dict(dtype=dtype, rngs=rngs)
        self.GroupNorm_0 = group_norm(in_ch, ncsnpp_groups(in_ch), **kw)
        self.Conv_0 = conv(in_ch, out_ch, conv_size, **kw)
        self.Dense_0 = dense(temb_dim, out_ch, **kw) if temb_dim else None
        self.GroupNorm_1 = group_norm(out_ch, ncsnpp_groups(out_ch), **kw)
        self.Conv_1 = conv(out_ch, out_ch, conv_size, init_scale=init_scale, **kw)
        resample = in_ch != out_ch or up or down
        self.Conv_2 = conv(in_ch, out_ch, 1, **kw) if resample else None
        self.act, self.dropout, self.skip_rescale = act, dropout, skip_rescale
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)

    def _resample(self, x):
        if self.up:
            return uds.upsample_2d(x, self.fir_kernel) if self.fir else uds.naive_upsample_2d(x)
        if self.down:
            return uds.downsample_2d(x, self.fir_kernel) if self.fir else uds.naive_downsample_2d(x)
        return x

    def __call__(self, x, temb=None, *, train=False, rng=None):
        act = self.act
        h = self._resample(act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h)
        if temb is not None and self.Dense_0 is not None:
            h = h + self.Dense_0(act(temb))[:, None, None, :]
        h = act(self.GroupNorm_1(h))
        h = self.Conv_1(dropout(h, self.dropout, rng, train))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        out = x.astype(h.dtype) + h
        return out / np.sqrt(2.0) if self.skip_rescale else out


class Combine(nnx.Module):
    """Merge an input-pyramid image into the feature map: cat or sum of Conv_0(x) (1x1) and y."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat", *, dtype=jnp.float32, rngs):
        if method not in ("cat", "sum"):
            raise ValueError(
                f"config.model.progressive_combine ({method!r}) must be 'cat' or 'sum'"
            )
        self.Conv_0 = conv(dim1, dim2, 1, dtype=dtype, rngs=rngs)
        self.method = method

    def __call__(self, x, y):
        h = self.Conv_0(x)
        return jnp.concatenate([h, y], axis=-1) if self.method == "cat" else h + y
