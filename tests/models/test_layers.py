"""The flax.nnx primitives of score_sde.models.layers against the plain formulas they replace.

GroupNorm (two-pass variance, statistics in float32), 'same' / strided / dilated convolutions,
dense layers and the fused FIR convolutions, in float32 and bfloat16; the DDPM initializer
(variance_scaling fan_avg uniform) against its closed form; determinism given the key; and the
import graph of layers / up_or_down_sampling. Small shapes: the file runs in seconds.
"""

import ast
import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from score_sde.models import layers
from score_sde.models import up_or_down_sampling as uds

DTYPES = [jnp.float32, jnp.bfloat16]
BF16_RTOL = 2.0**-7  # one bfloat16 ulp (8 bits of mantissa) relative to the value
DN = ("NHWC", "HWIO", "NHWC")


def _rngs(seed: int = 0) -> nnx.Rngs:
    return nnx.Rngs(params=jax.random.key(seed))


def _normal(seed: int, shape, scale: float = 1.0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape) * scale


def _f32(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, jnp.float32))


# ------------------------------------------------------------------------------ GroupNorm


def group_norm_ref(x, scale, bias, groups: int, eps: float = 1e-6, dtype=np.float32):
    """GroupNorm over [B, H, W, C] in numpy: channels in `groups` contiguous groups, two-pass
    variance mean((h - mean)^2), statistics in `dtype` (float32 as the layer; float64 as an
    exact reference), then per-channel scale and bias."""
    h = _f32(x).astype(dtype)
    B, H, W, C = h.shape
    h = h.reshape(B, H, W, groups, C // groups)
    mean = h.mean(axis=(1, 2, 4), keepdims=True)
    var = np.square(h - mean).mean(axis=(1, 2, 4), keepdims=True)
    h = ((h - mean) / np.sqrt(var + eps)).reshape(B, H, W, C)
    return h * np.asarray(scale, dtype) + np.asarray(bias, dtype)


def _affine_group_norm(channels, groups, dtype, seed=1, fast=False):
    """layers.group_norm with random (non-trivial) scale and bias."""
    if fast:  # the one-pass E[x^2] - E[x]^2 variance layers.group_norm avoids
        gn = nnx.GroupNorm(channels, num_groups=groups, epsilon=1e-6, dtype=dtype, rngs=_rngs())
    else:
        gn = layers.group_norm(channels, groups, dtype=dtype, rngs=_rngs())
    gn.scale[...] = jax.random.uniform(jax.random.key(seed), (channels,), minval=0.5, maxval=2.0)
    gn.bias[...] = _normal(seed + 1, (channels,))
    return gn


@pytest.mark.parametrize("channels,groups", [(16, 4), (16, 1), (8, 8), (32, 32)])
def test_group_norm_matches_plain_formula_fp32(channels, groups):
    gn = _affine_group_norm(channels, groups, jnp.float32)
    assert isinstance(gn, nnx.GroupNorm) and gn.epsilon == 1e-6 and not gn.use_fast_variance
    x = _normal(0, (2, 4, 4, channels), 3.0) + 0.5
    y = gn(x)
    assert y.dtype == jnp.float32 and y.shape == x.shape
    ref = group_norm_ref(x, gn.scale[...], gn.bias[...], groups)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-6, atol=1e-6)


def test_group_norm_default_affine_is_identity():
    gn = layers.group_norm(16, 4, rngs=_rngs())
    np.testing.assert_array_equal(gn.scale[...], np.ones(16))
    np.testing.assert_array_equal(gn.bias[...], np.zeros(16))
    assert gn.scale[...].dtype == gn.bias[...].dtype == jnp.float32


def test_group_norm_two_pass_variance_survives_a_large_mean():
    """mean 1000, std 1: the one-pass variance cancels catastrophically in float32."""
    x = _normal(0, (2, 4, 4, 16)) + 1000.0
    gn = _affine_group_norm(16, 4, jnp.float32)
    exact = group_norm_ref(x, gn.scale[...], gn.bias[...], 4, dtype=np.float64)
    np.testing.assert_allclose(np.asarray(gn(x)), exact, atol=2e-3)
    # the bound has teeth: the fast-variance GroupNorm misses it by orders of magnitude
    fast = _affine_group_norm(16, 4, jnp.float32, fast=True)
    assert np.abs(np.asarray(fast(x)) - exact).max() > 0.1


@pytest.mark.parametrize("affine", ["identity", "random"])
def test_group_norm_bf16_statistics_in_fp32_output_in_bf16(affine):
    gn = _affine_group_norm(16, 4, jnp.bfloat16)
    if affine == "identity":  # the init: scale 1, bias 0
        gn.scale[...], gn.bias[...] = jnp.ones(16), jnp.zeros(16)
    # std 100 around 1000: a bf16 mean (8 significant bits) would be off by ~2% of a std
    x = (_normal(0, (2, 4, 4, 16), 100.0) + 1000.0).astype(jnp.bfloat16)
    y = gn(x)
    assert y.dtype == jnp.bfloat16
    assert gn.scale[...].dtype == gn.bias[...].dtype == jnp.float32  # params stay float32
    # the float32 formula on the bf16 input (statistics of the bf16 values, in float32)
    scale, bias = _f32(gn.scale[...]), _f32(gn.bias[...])
    ref = group_norm_ref(x, scale, bias, 4)
    normalized = group_norm_ref(x, np.ones(16), np.zeros(16), 4)
    # bf16 tolerance: one bf16 ulp (2^-7) of the terms summed, |scale * normalized| + |bias|
    # (nnx.GroupNorm rounds scale and bias to the compute dtype before applying them)
    bound = BF16_RTOL * (np.abs(normalized * scale) + np.abs(bias)) + 1e-6
    err = np.abs(_f32(y) - ref)
    assert np.all(err <= bound), float((err / bound).max())


# ---------------------------------------------------------------------------- convolutions


def conv_ref(x, w, b, *, stride=1, padding, dilation=1):
    """Cross-correlation NHWC / HWIO in float64 numpy, explicit padding ((p0, p1), (q0, q1)):
    out[b, i, j] = sum_{u, v} xpad[b, i s + u d, j s + v d] @ w[u, v] + bias."""
    x, w = _f32(x).astype(np.float64), _f32(w).astype(np.float64)
    (p0, p1), (q0, q1) = padding
    xp = np.pad(x, ((0, 0), (p0, p1), (q0, q1), (0, 0)))
    k = w.shape[0]
    ho = (xp.shape[1] - dilation * (k - 1) - 1) // stride + 1
    wo = (xp.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[-1]))
    for u in range(k):
        for v in range(k):
            i0, j0 = u * dilation, v * dilation
            patch = xp[
                :,
                i0 : i0 + stride * (ho - 1) + 1 : stride,
                j0 : j0 + stride * (wo - 1) + 1 : stride,
            ]
            out += patch @ w[u, v]
    return out + _f32(b).astype(np.float64)


CONVS = {
    "3x3_same": dict(kernel=3),
    "1x1": dict(kernel=1),
    "3x3_dilation2": dict(kernel=3, dilation=2),
    "5x5_same": dict(kernel=5),
    "3x3_stride2_pad01": dict(kernel=3, stride=2, padding=((0, 1), (0, 1))),  # DDPM Downsample
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_matches_lax_conv_plus_bias(name, dtype):
    opts = CONVS[name]
    k, stride, dilation = opts["kernel"], opts.get("stride", 1), opts.get("dilation", 1)
    padding = opts.get("padding", ((dilation * (k // 2),) * 2,) * 2)  # 'same'
    c = layers.conv(
        4,
        6,
        k,
        stride=stride,
        padding=opts.get("padding"),
        dilation=dilation,
        dtype=dtype,
        rngs=_rngs(),
    )
    assert isinstance(c, nnx.Conv) and c.kernel[...].shape == (k, k, 4, 6)
    assert c.kernel[...].dtype == c.bias[...].dtype == jnp.float32
    np.testing.assert_array_equal(c.bias[...], np.zeros(6))  # zero bias at init
    c.bias[...] = _normal(5, (6,))
    x = _normal(0, (2, 8, 8, 4))
    y = c(x)
    assert y.dtype == dtype
    if stride == 1:
        assert y.shape == (2, 8, 8, 6)  # 'same'
    else:
        assert y.shape == (2, 4, 4, 6)
    w, b = c.kernel[...], c.bias[...]
    lax = jax.lax.conv_general_dilated(
        x.astype(dtype),
        w.astype(dtype),
        (stride, stride),
        padding,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=DN,
    ) + b.astype(dtype)
    exact = conv_ref(x, w, b, stride=stride, padding=padding, dilation=dilation)
    if dtype == jnp.float32:
        np.testing.assert_allclose(np.asarray(y), np.asarray(lax), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(y), exact, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(_f32(y), _f32(lax), rtol=BF16_RTOL, atol=1e-2)
        assert np.linalg.norm(_f32(y) - exact) / np.linalg.norm(exact) < 1e-2


def test_conv_without_bias_and_with_custom_init():
    init = jax.nn.initializers.constant(0.5)
    c = layers.conv(3, 2, 3, use_bias=False, kernel_init=init, rngs=_rngs())
    assert c.bias is None
    np.testing.assert_array_equal(c.kernel[...], np.full((3, 3, 3, 2), 0.5))
    x = _normal(0, (1, 5, 5, 3))
    exact = conv_ref(x, c.kernel[...], np.zeros(2), padding=((1, 1), (1, 1)))
    np.testing.assert_allclose(np.asarray(c(x)), exact, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------- dense


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
def test_dense_is_x_at_w_plus_b(dtype):
    d = layers.dense(12, 7, dtype=dtype, rngs=_rngs())
    assert isinstance(d, nnx.Linear) and d.kernel[...].shape == (12, 7)
    assert d.kernel[...].dtype == d.bias[...].dtype == jnp.float32
    np.testing.assert_array_equal(d.bias[...], np.zeros(7))
    d.bias[...] = _normal(5, (7,))
    x = _normal(0, (3, 5, 12))  # leading dims broadcast
    y = d(x)
    assert y.dtype == dtype and y.shape == (3, 5, 7)
    w, b = d.kernel[...], d.bias[...]
    exact = _f32(x).astype(np.float64) @ _f32(w).astype(np.float64) + _f32(b)
    if dtype == jnp.float32:
        np.testing.assert_allclose(np.asarray(y), np.asarray(x @ w + b), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(y), exact, rtol=1e-5, atol=1e-5)
    else:
        plain = x.astype(dtype) @ w.astype(dtype) + b.astype(dtype)
        np.testing.assert_allclose(_f32(y), _f32(plain), rtol=BF16_RTOL, atol=1e-2)
        assert np.linalg.norm(_f32(y) - exact) / np.linalg.norm(exact) < 1e-2
    nobias = layers.dense(12, 7, use_bias=False, rngs=_rngs())
    assert nobias.bias is None
    np.testing.assert_allclose(
        np.asarray(nobias(x)), np.asarray(x @ nobias.kernel[...]), rtol=1e-6, atol=1e-6
    )


def test_embed_is_a_table_lookup():
    e = layers.embed(5, 3, rngs=_rngs())
    assert isinstance(e, nnx.Embed) and e.embedding[...].shape == (5, 3)
    idx = jnp.array([4, 0, 4, 2])
    np.testing.assert_array_equal(e(idx), np.asarray(e.embedding[...])[np.asarray(idx)])


# ----------------------------------------------------------------------------- FIR convs


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("resample_kernel", [(1, 3, 3, 1), (1, 1)])
@pytest.mark.parametrize("mode", ["up", "down", "none"])
def test_fir_conv_matches_the_functional_ops(mode, resample_kernel, dtype):
    c = layers.FIRConv(
        3,
        5,
        3,
        up=mode == "up",
        down=mode == "down",
        resample_kernel=resample_kernel,
        dtype=dtype,
        rngs=_rngs(),
    )
    assert c.kernel[...].shape == (3, 3, 3, 5) and c.kernel[...].dtype == jnp.float32
    np.testing.assert_array_equal(c.bias[...], np.zeros(5))
    c.bias[...] = _normal(5, (5,))
    x = _normal(0, (2, 8, 8, 3))
    y = c(x)
    xd, w, b = x.astype(dtype), c.kernel[...].astype(dtype), c.bias[...].astype(dtype)
    if mode == "up":
        ref, size = uds.upsample_conv_2d(xd, w, resample_kernel), 16
    elif mode == "down":
        ref, size = uds.conv_downsample_2d(xd, w, resample_kernel), 4
    else:
        ref, size = uds.conv_2d(xd, w), 8
    ref = ref + b
    assert y.dtype == ref.dtype == dtype and y.shape == (2, size, size, 5)
    if dtype == jnp.float32:
        np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(_f32(y), _f32(ref), rtol=BF16_RTOL, atol=1e-2)


def test_fir_conv_without_resampling_is_the_same_conv():
    f = layers.FIRConv(3, 5, 3, rngs=_rngs())
    c = layers.conv(3, 5, 3, rngs=_rngs(1))
    c.kernel[...] = f.kernel[...]
    x = _normal(0, (2, 8, 8, 3))
    np.testing.assert_allclose(np.asarray(f(x)), np.asarray(c(x)), rtol=1e-6, atol=1e-6)


def test_fir_conv_up_and_down_is_an_error():
    with pytest.raises(ValueError, match="up and down"):
        layers.FIRConv(3, 5, up=True, down=True, rngs=_rngs())


# ---------------------------------------------------------------------------- initializer


def _check_fan_avg_uniform(w, fan_in: int, fan_out: int, scale: float):
    """variance_scaling(scale, 'fan_avg', 'uniform'): U(-a, a), a^2 = 3 scale / fan_avg."""
    w = np.asarray(w, np.float64).ravel()
    var = (1e-10 if scale == 0 else scale) / ((fan_in + fan_out) / 2)
    bound = np.sqrt(3 * var)
    # ~27k draws: the variance estimate has a relative standard error ~0.5%
    assert abs(np.mean(w**2) / var - 1) < 0.03, (np.mean(w**2), var)
    assert abs(np.mean(w) / np.sqrt(var)) < 0.03
    assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.99 * bound
    assert abs(np.mean(w**4) / np.mean(w**2) ** 2 - 9 / 5) < 0.05  # uniform (normal: 3)


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.0])
def test_ddpm_initializer_statistics(scale):
    # fan_in != fan_out, so fan_in or fan_out alone would be off by 2x
    c = layers.conv(32, 96, 3, init_scale=scale, rngs=_rngs())
    _check_fan_avg_uniform(c.kernel[...], 9 * 32, 9 * 96, scale)
    d = layers.dense(96, 288, init_scale=scale, rngs=_rngs())
    _check_fan_avg_uniform(d.kernel[...], 96, 288, scale)
    f = layers.FIRConv(32, 96, 3, init_scale=scale, rngs=_rngs())
    _check_fan_avg_uniform(f.kernel[...], 9 * 32, 9 * 96, scale)
    n = layers.NIN(96, 288, init_scale=scale, rngs=_rngs())
    _check_fan_avg_uniform(n.W[...], 96, 288, scale)


def test_embed_initializer_is_normal_0_02():
    w = np.asarray(layers.embed(1000, 32, rngs=_rngs()).embedding[...], np.float64)
    assert abs(w.std() / 0.02 - 1) < 0.03 and abs(w.mean()) < 0.02 * 0.03
    assert abs(np.mean(w**4) / np.mean(w**2) ** 2 - 3) < 0.15  # normal


def test_init_is_deterministic_given_the_key():
    def build(seed):
        rngs = _rngs(seed)
        return [
            layers.conv(4, 6, 3, rngs=rngs).kernel[...],
            layers.conv(4, 6, 3, rngs=rngs).kernel[...],
            layers.dense(4, 6, rngs=rngs).kernel[...],
            layers.FIRConv(4, 6, 3, up=True, rngs=rngs).kernel[...],
            layers.embed(4, 6, rngs=rngs).embedding[...],
        ]

    a, b, c = build(3), build(3), build(4)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert all(not np.array_equal(u, v) for u, v in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[1])  # each layer draws its own key from the Rngs


# ---------------------------------------------------------------------------- import graph


def _imported_modules(module) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_import_cycle_between_layers_and_up_or_down_sampling():
    uds_imports = _imported_modules(uds)
    assert not any("layers" in n or n.startswith("flax") for n in uds_imports), uds_imports
    assert "score_sde.models.up_or_down_sampling" in _imported_modules(layers)
    # a fresh interpreter: up_or_down_sampling alone does not pull in layers
    code = (
        "import sys\n"
        "import score_sde.models.up_or_down_sampling\n"
        "assert 'score_sde.models.layers' not in sys.modules, 'uds imported layers'\n"
        "import score_sde.models.layers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
