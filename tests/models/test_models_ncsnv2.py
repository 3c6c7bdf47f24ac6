"""NCSN (v1) and NCSNv2 RefineNets: shapes, finite outputs and gradients, noise conditioning, and
parameter counts equal to a closed-form sum over the architecture of the original code.

No published counts exist for these models (FIGURES.md), so the counts are checked against the
formula below, written from the original layer definitions, not from our module code.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import config, models
from score_sde.config import DataConfig, NCSNv2Config
from score_sde.models.ncsnpp import get_sigmas
from tests.helpers import ROOT

# (out multiplier, resample='down', dilation) of res1, res2, ... in the original ncsnv2.py
STAGES = {
    "ncsnv2_64": [(1, False, 1), (2, True, 1), (2, True, 2), (2, True, 4)],
    "ncsn": [(1, False, 1), (2, True, 1), (2, True, 2), (2, True, 4)],
    "ncsnv2_128": [(1, False, 1), (2, True, 1), (2, True, 1), (4, True, 2), (4, True, 4)],
    "ncsnv2_256": [
        (1, False, 1),
        (2, True, 1),
        (2, True, 1),
        (2, True, 1),
        (4, True, 2),
        (4, True, 4),
    ],
}
# RefineBlock(in_planes, features) multipliers, deepest first, as listed in the original
REFINES = {
    "ncsnv2_64": [([2], 2), ([2, 2], 2), ([2, 2], 1), ([1, 1], 1)],
    "ncsn": [([2], 2), ([2, 2], 2), ([2, 2], 1), ([1, 1], 1)],
    "ncsnv2_128": [([4], 4), ([4, 4], 2), ([2, 2], 2), ([2, 2], 1), ([1, 1], 1)],
    "ncsnv2_256": [([4], 4), ([4, 4], 2), ([2, 2], 2), ([2, 2], 2), ([2, 2], 1), ([1, 1], 1)],
}


def closed_form_count(variant: str, nf: int, channels: int, num_scales: int) -> int:
    cond = variant == "ncsn"

    def conv(i, o, k=3, bias=True):
        return k * k * i * o + (o if bias else 0)

    def norm(c):  # InstanceNorm++: alpha, gamma, beta (conditional: one row per noise level)
        return 3 * c * (num_scales if cond else 1)

    def res(i, o, down, dil):
        n = norm(i)
        if down:
            n += conv(i, i) + norm(i) + conv(i, o) + (conv(i, o) if dil > 1 else conv(i, o, 1))
        else:
            n += conv(i, o) + norm(o) + conv(o, o)
            if i != o:
                n += conv(i, o) if dil > 1 else conv(i, o, 1)
        return n

    def rcu(c, n_blocks):
        return 2 * n_blocks * (conv(c, c, bias=False) + (norm(c) if cond else 0))

    def refine(ins, f, start, end):
        n = sum(rcu(c, 2) for c in ins) + rcu(f, 3 if end else 1)
        n += 2 * (conv(f, f, bias=False) + (norm(f) if cond else 0))  # CRP
        if not start:
            n += sum(conv(c, f) + (norm(c) if cond else 0) for c in ins)  # MSF
        return n

    total = conv(channels, nf) + norm(nf) + conv(nf, channels)
    in_ch = nf
    for mult, down, dil in STAGES[variant]:
        total += res(in_ch, mult * nf, down, dil) + res(mult * nf, mult * nf, False, dil)
        in_ch = mult * nf
    refines = REFINES[variant]
    for k, (ins, f) in enumerate(refines):
        total += refine([m * nf for m in ins], f * nf, k == 0, k == len(refines) - 1)
    return total


def _data(image_size=8) -> DataConfig:
    return DataConfig(dataset="test", image_size=image_size, num_channels=3, centered=False)


def _model(name="ncsnv2_64", **model) -> NCSNv2Config:
    base = dict(
        name=name,
        nf=8,
        nonlinearity="elu",
        normalization="InstanceNorm++",
        interpolation="bilinear",
        scale_by_sigma=name != "ncsn",
        sigma_min=0.01,
        sigma_max=50.0,
        num_scales=10,
        num_classes=0,
        dtype="float32",
    )
    return NCSNv2Config(**{**base, **model})


CASES = [("ncsn", 8), ("ncsnv2_64", 8), ("ncsnv2_128", 16), ("ncsnv2_256", 16)]


@pytest.mark.slow
@pytest.mark.parametrize("name,size", CASES)
def test_shape_finite_grads_and_closed_form_count(name, size):
    apply_fn, params = models.init_model(_model(name), _data(size), jax.random.key(0))
    assert models.count_params(params) == closed_form_count(name, 8, 3, 10)
    x = jax.random.uniform(jax.random.key(1), (2, size, size, 3))
    labels = jnp.array([0, 9])

    def loss(p):
        out = apply_fn(p, x, labels)
        return jnp.mean(out**2), out

    g, out = jax.jit(jax.grad(loss, has_aux=True))(params)
    assert out.shape == x.shape and bool(jnp.isfinite(out).all())
    leaves = jax.tree.leaves(g)
    assert all(bool(jnp.isfinite(v).all()) for v in leaves)
    assert sum(float(jnp.abs(v).sum()) for v in leaves) > 0


@pytest.mark.slow
def test_ncsnv2_divides_by_sigma_and_ncsn_conditions_its_norms():
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    f, p = models.init_model(_model("ncsnv2_64"), _data(), jax.random.key(0))
    plain = models.init_model(
        _model("ncsnv2_64", scale_by_sigma=False), _data(), jax.random.key(0)
    )[0]
    sig = get_sigmas(0.01, 50.0, 10)
    y, y0 = f(p, x, jnp.array([0, 9])), plain(p, x, jnp.array([0, 9]))
    np.testing.assert_allclose(
        y * sig[jnp.array([0, 9])][:, None, None, None], y0, rtol=1e-5, atol=1e-6
    )
    # NCSNv2's network body ignores the label; NCSN's conditional norms do not
    g, q = models.init_model(_model("ncsn"), _data(), jax.random.key(0))
    # the zero-initialized shift rows make every level alike at init: perturb the embeddings
    emb = jax.tree.map_with_path(
        lambda path, v: (
            v + jax.random.normal(jax.random.key(len(path)), v.shape) * 0.1
            if "embed" in jax.tree_util.keystr(path)
            else v
        ),
        q,
    )
    a, b = g(emb, x[:1], jnp.array([0])), g(emb, x[:1], jnp.array([5]))
    assert float(jnp.abs(a - b).max()) > 1e-3


def test_bf16_close_to_fp32():
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    f32, p = models.init_model(_model("ncsnv2_64"), _data(), jax.random.key(0))
    bf16 = models.init_model(_model("ncsnv2_64", dtype="bfloat16"), _data(), jax.random.key(0))[0]
    a, b = f32(p, x, jnp.array([3, 4])), bf16(p, x, jnp.array([3, 4]))
    assert b.dtype == jnp.float32
    assert 0 < float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)) < 3e-2


@pytest.mark.parametrize(
    "field,value", [("normalization", "BatchNorm"), ("interpolation", "cubic"), ("num_classes", 10)]
)
def test_bad_options_raise(field, value):
    # checked where the typed config.model is made, before any network is built
    with pytest.raises(ValueError, match=f"config.model.{field}"):
        _model(**{field: value})


@pytest.mark.parametrize(
    "rel",
    sorted(
        str(p.relative_to(ROOT / "configs"))
        for d in ("ve/ncsn", "ve/ncsnv2")
        for p in (ROOT / "configs" / d).glob("*.py")
    ),
)
def test_every_ncsn_config_builds_with_the_closed_form_count(rel):
    cfg = config.load(str(ROOT / "configs" / rel))
    from score_sde.models.ncsnv2 import variant_for

    variant = variant_for(cfg.model.name, cfg.data.image_size)
    n = models.count_params(models.abstract_params(cfg.model, cfg.data))
    assert n == closed_form_count(
        variant, cfg.model.nf, cfg.data.num_channels, cfg.model.num_scales
    )
