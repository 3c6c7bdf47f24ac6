"""NCSN++ / DDPM++ / DDPM: option combinations, dtype policy, conditioning, determinism, FIR ops.

Small widths (nf 8-32, 8x8 images) so that the file runs in well under a minute on 2 CPU cores.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from score_sde import models
from score_sde.config import DataConfig, DDPMConfig, NCSNppConfig
from score_sde.models import layers
from score_sde.models import up_or_down_sampling as uds

DATA = DataConfig(dataset="test", image_size=8, num_channels=3, centered=True)
BASE = dict(
    name="ncsnpp",
    scale_by_sigma=False,
    nonlinearity="swish",
    nf=8,
    ch_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(4,),
    resamp_with_conv=True,
    conditional=True,
    fir=False,
    fir_kernel=(1, 3, 3, 1),
    skip_rescale=True,
    resblock_type="biggan",
    progressive="none",
    progressive_input="none",
    progressive_combine="sum",
    init_scale=0.0,
    embedding_type="positional",
    fourier_scale=16.0,
    conv_size=3,
    dropout=0.1,
    sigma_min=0.01,
    sigma_max=50.0,
    num_scales=1000,
    num_classes=0,
    dtype="float32",
)
# The fields of BASE that DDPM has (it has no FIR, progressive paths or Fourier features).
DDPM_FIELDS = (
    "scale_by_sigma",
    "nonlinearity",
    "nf",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "resamp_with_conv",
    "conditional",
    "dropout",
    "sigma_min",
    "sigma_max",
    "num_scales",
    "num_classes",
    "dtype",
)


def _model(**model) -> NCSNppConfig:
    return NCSNppConfig(**{**BASE, **model})


def _ddpm(**model) -> DDPMConfig:
    return DDPMConfig(**{"name": "ddpm", **{k: BASE[k] for k in DDPM_FIELDS}, **model})


def _inputs(embedding_type="positional", batch=2):
    x = jax.random.normal(jax.random.key(1), (batch, 8, 8, 3))
    labels = jnp.array([0.5, 3.0]) if embedding_type == "fourier" else jnp.array([3.0, 700.0])
    return x, labels


def _all_finite(tree):
    return all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(tree))


COMBOS = [
    # DDPM++ (cont.): biggan blocks, no FIR, no progressive paths
    dict(),
    # NCSN++ (VE, 32 px): FIR, residual input pyramid, Fourier features, scale_by_sigma
    dict(fir=True, progressive_input="residual", embedding_type="fourier", scale_by_sigma=True),
    # NCSN++ (256 px): output_skip + input_skip
    dict(
        fir=True,
        progressive="output_skip",
        progressive_input="input_skip",
        embedding_type="fourier",
    ),
    # ddpm blocks with every progressive variant, cat combine, non-FIR resampling
    dict(
        resblock_type="ddpm",
        progressive="residual",
        progressive_input="input_skip",
        progressive_combine="cat",
        skip_rescale=False,
    ),
    dict(
        resblock_type="ddpm",
        fir=True,
        progressive="output_skip",
        progressive_input="residual",
        resamp_with_conv=False,
        num_classes=3,
    ),
    # unconditional on the noise level
    dict(conditional=False),
]


@pytest.mark.parametrize("opts", COMBOS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_ncsnpp_options_shape_and_finite(opts):
    m = _model(init_scale=0.1, **opts)
    apply_fn, params = models.init_model(m, DATA, jax.random.key(0))
    assert models.count_params(params) == models.count_params(models.abstract_params(m, DATA))
    x, labels = _inputs(m.embedding_type)
    out = jax.jit(apply_fn)(params, x, labels)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert _all_finite(out) and float(jnp.abs(out).max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("opts", [COMBOS[2], COMBOS[3]], ids=["ncsnpp_256", "ddpm_blocks_cat"])
def test_ncsnpp_gradients_finite_with_dropout(opts):
    m = _model(init_scale=0.1, **opts)
    apply_fn, params = models.init_model(m, DATA, jax.random.key(0))
    x, labels = _inputs(m.embedding_type)

    def loss(p):
        out = apply_fn(p, x, labels, train=True, rng=jax.random.key(3))
        return jnp.mean(out**2)

    val, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert _all_finite(grads) and float(val) > 0
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0


def test_ddpm_shape_finite_and_scale_by_sigma():
    kw = dict(nf=32, ch_mult=(1, 2), num_res_blocks=1, num_scales=10)
    apply_fn, params = models.init_model(_ddpm(scale_by_sigma=True, **kw), DATA, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    labels = jnp.array([0, 9])
    out = jax.jit(apply_fn)(params, x, labels)
    assert out.shape == x.shape and _all_finite(out)
    # scale_by_sigma divides by sigma_i, i = label (sigma_0 = sigma_max is the largest)
    plain = models.init_model(_ddpm(scale_by_sigma=False, **kw), DATA, jax.random.key(0))[0]
    out2 = jax.jit(plain)(params, x, labels)
    np.testing.assert_allclose(out[0] * 50.0, out2[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[1] * 0.01, out2[1], rtol=1e-4, atol=1e-6)


def test_bf16_matches_fp32_to_bf16_tolerance():
    opts = dict(
        fir=True,
        progressive="output_skip",
        progressive_input="residual",
        embedding_type="fourier",
        init_scale=1.0,
    )
    f32, params = models.init_model(_model(**opts), DATA, jax.random.key(0))
    bf16, params_b = models.init_model(_model(dtype="bfloat16", **opts), DATA, jax.random.key(0))
    # fp32 parameters either way, identical given the key
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_b), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)
    x, labels = _inputs("fourier")
    y32 = jax.jit(f32)(params, x, labels)
    y16 = jax.jit(bf16)(params, x, labels)
    assert y16.dtype == x.dtype == jnp.float32  # output in the input's dtype
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert rel < 3e-2, rel
    assert rel > 0  # bf16 really was used


def test_determinism_given_key():
    m = _model(dropout=0.3, init_scale=0.1)
    f, p1 = models.init_model(m, DATA, jax.random.key(7))
    _, p2 = models.init_model(m, DATA, jax.random.key(7))
    _, p3 = models.init_model(m, DATA, jax.random.key(8))
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    pairs = zip(jax.tree.leaves(p1), jax.tree.leaves(p3), strict=True)
    assert any(not np.array_equal(a, b) for a, b in pairs)
    x, labels = _inputs()
    g = jax.jit(lambda p, k: f(p, x, labels, train=True, rng=k))
    np.testing.assert_array_equal(g(p1, jax.random.key(0)), g(p1, jax.random.key(0)))
    assert not np.array_equal(g(p1, jax.random.key(0)), g(p1, jax.random.key(1)))
    with pytest.raises(ValueError, match="rng"):
        f(p1, x, labels, train=True)


def test_abstract_model_builds_the_same_network_without_parameters():
    m = _model(init_scale=0.1)
    f, params = models.init_model(m, DATA, jax.random.key(7))
    g, init_params = models.abstract_model(m, DATA)  # nothing computed yet
    shapes = models.abstract_params(m, DATA)
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    for s, p in zip(jax.tree.leaves(shapes), jax.tree.leaves(params), strict=True):
        assert isinstance(s, jax.ShapeDtypeStruct) and (s.shape, s.dtype) == (p.shape, p.dtype)
    again = init_params(jax.random.key(7))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    x, labels = _inputs()
    np.testing.assert_array_equal(g(again, x, labels), f(params, x, labels))


def test_class_conditioning_with_null_label():
    m = _model(num_classes=3, init_scale=1.0)
    f, p = models.init_model(m, DATA, jax.random.key(0))
    x, labels = _inputs()
    y0 = f(p, x, labels, class_labels=jnp.array([0, 0]))
    y1 = f(p, x, labels, class_labels=jnp.array([1, 1]))
    y_null = f(p, x, labels, class_labels=jnp.array([3, 3]))
    y_none = f(p, x, labels)
    assert not np.allclose(y0, y1)
    np.testing.assert_array_equal(y_null, y_none)  # no labels = the null label (index num_classes)
    uncond = models.count_params(models.abstract_params(_model(), DATA))
    assert models.count_params(p) == uncond + 4 * 4 * 8  # + an Embed (num_classes + 1, 4 nf)


def test_fir_resampling_matches_reference_operations():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    # the box kernel [1, 1] is nearest-neighbour upsampling / 2x2 average pooling
    np.testing.assert_allclose(uds.upsample_2d(x, (1, 1)), uds.naive_upsample_2d(x), atol=1e-6)
    np.testing.assert_allclose(uds.downsample_2d(x, (1, 1)), uds.naive_downsample_2d(x), atol=1e-6)
    # a constant image stays constant away from the zero-padded border
    ones = jnp.ones((1, 8, 8, 1))
    np.testing.assert_allclose(uds.upsample_2d(ones)[:, 2:-2, 2:-2], 1.0, atol=1e-6)
    np.testing.assert_allclose(uds.downsample_2d(ones)[:, 1:-1, 1:-1], 1.0, atol=1e-6)
    # fused FIR conv == separate FIR resampling and 'same' 3x3 conv (exactly for the box kernel,
    # away from the border for [1, 3, 3, 1] where the fused op pads once)
    for k, border in [((1, 1), 0), ((1, 3, 3, 1), 2)]:
        up = layers.FIRConv(3, 5, up=True, resample_kernel=k, rngs=nnx.Rngs(params=1))
        dn = layers.FIRConv(3, 5, down=True, resample_kernel=k, rngs=nnx.Rngs(params=1))
        ref = layers.conv(3, 5, rngs=nnx.Rngs(params=2))
        ref.kernel[...] = up.kernel[...]
        a, b = up(x), ref(uds.upsample_2d(x, k))
        s = slice(border, a.shape[1] - border)
        np.testing.assert_allclose(a[:, s, s], b[:, s, s], atol=1e-5)
        a, b = dn(x), uds.downsample_2d(ref(x), k)
        s = slice(border // 2, a.shape[1] - border // 2)
        np.testing.assert_allclose(a[:, s, s], b[:, s, s], atol=1e-5)


def test_group_norm_and_attention_statistics_in_fp32():
    gn = layers.group_norm(16, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(params=0))
    x = (jax.random.normal(jax.random.key(0), (2, 4, 4, 16)) * 100 + 1000).astype(jnp.bfloat16)
    y = gn(x)
    assert y.dtype == jnp.bfloat16
    g = y.astype(jnp.float32).reshape(2, 4, 4, 4, 4)
    np.testing.assert_allclose(g.mean(axis=(1, 2, 4)), 0.0, atol=0.05)
    np.testing.assert_allclose(g.std(axis=(1, 2, 4)), 1.0, atol=0.05)


@pytest.mark.parametrize(
    "field,value",
    [
        ("resblock_type", "resnet"),
        ("progressive", "skip"),
        ("progressive_input", "x"),
        ("embedding_type", "learned"),
        ("nonlinearity", "gelu2"),
        ("dtype", "float16"),
    ],
)
def test_bad_options_raise_valueerror_naming_the_field(field, value):
    # checked where the typed config.model is made, before any network is built
    with pytest.raises(ValueError, match=re.escape(f"config.model.{field} ({value!r})")):
        _model(**{field: value})
