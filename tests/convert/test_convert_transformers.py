"""The released transformer checkpoints convert: U-ViT (baofff/U-ViT `libs/uvit.py`), DiT
(facebookresearch/DiT `models.py`) and SiT (willisma/SiT `models.py`), read without torch.

The originals' state_dicts are written here from their module structure (`uvit_state_shapes`,
`dit_state_shapes`: the key names and shapes their code registers), and their forward passes are
written here in numpy from the same code (`uvit_forward`, `dit_forward`, NCHW like the
originals). The proof that the map is right: a synthetic `.pth` of random weights, converted and
loaded into our network, computes the numpy original's function (a transposed or swapped weight
fails, as the negative control shows); and for the published sizes the map's key set and shapes
are the originals' and their element count is the published one.
"""

import argparse
import collections
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from score_sde import config as config_lib
from score_sde import convert, models
from score_sde.convert import transformers
from tests.helpers import REPO, write_pth

# ------------------------------------------------------------------ the originals' state_dicts


def uvit_state_shapes(*, img, p, C, D, depth, num_classes, mlp_time_embed, qkv_bias, conv=True):
    """{key: shape} of U-ViT's UViT(img_size, patch_size, in_chans, embed_dim, depth, ...)
    state_dict; num_classes <= 0: unconditional (no label_emb, one extra token)."""
    extras = 2 if num_classes > 0 else 1
    s = {"pos_embed": (1, extras + (img // p) ** 2, D)}
    s["patch_embed.proj.weight"], s["patch_embed.proj.bias"] = (D, C, p, p), (D,)
    if mlp_time_embed:  # nn.Sequential(Linear(D, 4D), SiLU(), Linear(4D, D))
        s |= {"time_embed.0.weight": (4 * D, D), "time_embed.0.bias": (4 * D,)}
        s |= {"time_embed.2.weight": (D, 4 * D), "time_embed.2.bias": (D,)}
    if num_classes > 0:
        s["label_emb.weight"] = (num_classes, D)

    def block(prefix, skip):
        b = {f"{prefix}.norm1.weight": (D,), f"{prefix}.norm1.bias": (D,)}
        b[f"{prefix}.attn.qkv.weight"] = (3 * D, D)
        if qkv_bias:
            b[f"{prefix}.attn.qkv.bias"] = (3 * D,)
        b |= {f"{prefix}.attn.proj.weight": (D, D), f"{prefix}.attn.proj.bias": (D,)}
        b |= {f"{prefix}.norm2.weight": (D,), f"{prefix}.norm2.bias": (D,)}
        b |= {f"{prefix}.mlp.fc1.weight": (4 * D, D), f"{prefix}.mlp.fc1.bias": (4 * D,)}
        b |= {f"{prefix}.mlp.fc2.weight": (D, 4 * D), f"{prefix}.mlp.fc2.bias": (D,)}
        if skip:
            b |= {f"{prefix}.skip_linear.weight": (D, 2 * D), f"{prefix}.skip_linear.bias": (D,)}
        return b

    for i in range(depth // 2):
        s |= block(f"in_blocks.{i}", False)
    s |= block("mid_block", False)
    for i in range(depth // 2):
        s |= block(f"out_blocks.{i}", True)
    s |= {"norm.weight": (D,), "norm.bias": (D,)}
    s |= {"decoder_pred.weight": (p * p * C, D), "decoder_pred.bias": (p * p * C,)}
    if conv:
        s |= {"final_layer.weight": (C, C, 3, 3), "final_layer.bias": (C,)}
    return s


def dit_state_shapes(*, img, p, C, D, depth, num_classes, learn_sigma, mlp_ratio=4):
    """{key: shape} of DiT's / SiT's DiT(input_size, patch_size, in_channels, hidden_size, depth,
    ..., class_dropout_prob > 0, num_classes, learn_sigma) state_dict (pos_embed included: an
    nn.Parameter with requires_grad=False)."""
    out, H = (2 * C if learn_sigma else C), int(D * mlp_ratio)
    s = {"pos_embed": (1, (img // p) ** 2, D)}
    s |= {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,)}
    s |= {"t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,)}
    s |= {"t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,)}
    s["y_embedder.embedding_table.weight"] = (num_classes + 1, D)  # + the CFG (null) row
    for i in range(depth):
        b = f"blocks.{i}"
        s |= {f"{b}.attn.qkv.weight": (3 * D, D), f"{b}.attn.qkv.bias": (3 * D,)}
        s |= {f"{b}.attn.proj.weight": (D, D), f"{b}.attn.proj.bias": (D,)}
        s |= {f"{b}.mlp.fc1.weight": (H, D), f"{b}.mlp.fc1.bias": (H,)}
        s |= {f"{b}.mlp.fc2.weight": (D, H), f"{b}.mlp.fc2.bias": (D,)}
        s |= {
            f"{b}.adaLN_modulation.1.weight": (6 * D, D),
            f"{b}.adaLN_modulation.1.bias": (6 * D,),
        }
    s |= {"final_layer.linear.weight": (p * p * out, D), "final_layer.linear.bias": (p * p * out,)}
    s["final_layer.adaLN_modulation.1.weight"] = (2 * D, D)
    s["final_layer.adaLN_modulation.1.bias"] = (2 * D,)
    return s


def dit_pos_embed(D, grid):
    """DiT's get_2d_sincos_pos_embed (from MAE): grid = meshgrid(w, h), the first half of the
    features encodes grid[0] (the column), each half [sin, cos] of pos / 10000^(k / (D / 4))."""
    gh, gw = np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64)
    g = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid, grid)

    def one(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(D // 2, g[0]), one(D // 2, g[1])], axis=1)
    return emb.astype(np.float32)[None]


def random_state(shapes, seed, pos_embed=None):
    """An OrderedDict of float32 weights for `shapes`: N(0, 1/fan_in) (so activations stay O(1)),
    norms' weights near 1; DiT's pos_embed its fixed value."""
    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()
    for k, shape in shapes.items():
        if k == "pos_embed" and pos_embed is not None:
            sd[k] = pos_embed
        elif ".norm" in k or k.startswith("norm."):
            sd[k] = (float(k.endswith("weight")) + 0.2 * rng.standard_normal(shape)).astype("f4")
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 4
            sd[k] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
    return sd


# ------------------------------------------------------------------ the originals in numpy


def _linear(sd, name, x):
    y = x @ sd[f"{name}.weight"].astype(np.float64).T
    return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y


def _layer_norm(x, eps, weight=None, bias=None):
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y if weight is None else y * weight + bias


def _gelu(x, tanh):
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _silu(x):
    return x / (1 + np.exp(-x))


def _conv2d(x, w, b, stride, pad):
    """torch's Conv2d on NCHW x with OIHW w."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    ho, wo = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def _attention(sd, name, x, heads):
    """timm's / U-ViT's Attention: qkv -> (3, heads, head_dim) features, softmax(q k^T / sqrt d)."""
    B, L, C = x.shape
    qkv = _linear(sd, f"{name}.qkv", x).reshape(B, L, 3, heads, C // heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv
    a = q @ k.transpose(0, 1, 3, 2) * (C // heads) ** -0.5
    a = np.exp(a - a.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    return _linear(sd, f"{name}.proj", (a @ v).transpose(0, 2, 1, 3).reshape(B, L, C))


def _timestep_embedding(t, dim):
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / half)
    args = np.asarray(t, np.float64)[:, None] * freqs[None]
    return np.concatenate([np.cos(args), np.sin(args)], axis=-1)


def uvit_forward(sd, x, timesteps, y, *, p, heads, mlp_time_embed):
    """U-ViT's UViT.forward: x [B, C, H, W], timesteps [B], y [B] or None -> [B, C, H, W]."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    B, C = x.shape[:2]
    h = _conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], p, 0)
    h = h.reshape(B, h.shape[1], -1).transpose(0, 2, 1)
    D = h.shape[-1]
    time = _timestep_embedding(timesteps, D)
    if mlp_time_embed:
        time = _linear(sd, "time_embed.2", _silu(_linear(sd, "time_embed.0", time)))
    h = np.concatenate([time[:, None], h], axis=1)
    if y is not None:
        h = np.concatenate([sd["label_emb.weight"][y][:, None], h], axis=1)
    h = h + sd["pos_embed"]

    def block(name, h, skip=None):
        if skip is not None:
            h = _linear(sd, f"{name}.skip_linear", np.concatenate([h, skip], axis=-1))
        n1 = _layer_norm(h, 1e-5, sd[f"{name}.norm1.weight"], sd[f"{name}.norm1.bias"])
        h = h + _attention(sd, f"{name}.attn", n1, heads)
        n2 = _layer_norm(h, 1e-5, sd[f"{name}.norm2.weight"], sd[f"{name}.norm2.bias"])
        return h + _linear(sd, f"{name}.mlp.fc2", _gelu(_linear(sd, f"{name}.mlp.fc1", n2), False))

    n_in = sum(k.startswith("in_blocks.") and k.endswith("norm1.weight") for k in sd)
    skips = []
    for i in range(n_in):
        h = block(f"in_blocks.{i}", h)
        skips.append(h)
    h = block("mid_block", h)
    for i in range(n_in):
        h = block(f"out_blocks.{i}", h, skips.pop())
    h = _linear(sd, "decoder_pred", _layer_norm(h, 1e-5, sd["norm.weight"], sd["norm.bias"]))
    h = h[:, (2 if y is not None else 1) :]
    g = int(math.isqrt(h.shape[1]))  # 'B (h w) (p1 p2 C) -> B C (h p1) (w p2)'
    img = h.reshape(B, g, g, p, p, C).transpose(0, 5, 1, 3, 2, 4).reshape(B, C, g * p, g * p)
    return _conv2d(img, sd["final_layer.weight"], sd["final_layer.bias"], 1, 1)


def dit_forward(sd, x, t, y, *, p, heads):
    """DiT's / SiT's forward (before SiT's learn_sigma chunk): x [B, C, H, W], t [B], y [B] ->
    [B, C_out, H, W]."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    B = x.shape[0]
    h = _conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], p, 0)
    h = h.reshape(B, h.shape[1], -1).transpose(0, 2, 1) + sd["pos_embed"]
    temb = _linear(sd, "t_embedder.mlp.0", _timestep_embedding(t, 256))
    c = _linear(sd, "t_embedder.mlp.2", _silu(temb)) + sd["y_embedder.embedding_table.weight"][y]

    def modulate(v, shift, scale):
        return v * (1 + scale[:, None]) + shift[:, None]

    depth = sum(k.endswith("attn.qkv.weight") for k in sd)
    for i in range(depth):
        b = f"blocks.{i}"
        mods = np.split(_linear(sd, f"{b}.adaLN_modulation.1", _silu(c)), 6, axis=1)
        sa, ca, ga, sm, cm, gm = mods
        h = h + ga[:, None] * _attention(
            sd, f"{b}.attn", modulate(_layer_norm(h, 1e-6), sa, ca), heads
        )
        m = _gelu(_linear(sd, f"{b}.mlp.fc1", modulate(_layer_norm(h, 1e-6), sm, cm)), True)
        h = h + gm[:, None] * _linear(sd, f"{b}.mlp.fc2", m)
    shift, scale = np.split(_linear(sd, "final_layer.adaLN_modulation.1", _silu(c)), 2, axis=1)
    h = _linear(sd, "final_layer.linear", modulate(_layer_norm(h, 1e-6), shift, scale))
    g, c_out = int(math.isqrt(h.shape[1])), h.shape[-1] // (p * p)
    h = h.reshape(B, g, g, p, p, c_out)
    return np.einsum("nhwpqc->nchpwq", h).reshape(B, c_out, g * p, g * p)


# ------------------------------------------------------------------ our side


def _ours(cfg, params, x_nchw, labels, class_labels=None):
    """Our network with converted `params` on the NHWC input -> NCHW output (float64)."""
    apply_fn, _ = models.abstract_model(cfg.model, cfg.data)
    state = models.abstract_params(cfg.model, cfg.data)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1), jnp.float32)
    y = None if class_labels is None else jnp.asarray(class_labels)
    out = apply_fn(state, x, jnp.asarray(labels, jnp.float32), class_labels=y)
    return np.asarray(out, np.float64).transpose(0, 3, 1, 2)


def _assert_close(ours, ref):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-4 * np.abs(ref).max())


TINY = {"model.depth": "2", "model.num_heads": "4", "model.num_scales": "4"}
TINY_UVIT = {
    "cifar10": ("vp/cifar10_uvit_s2", {**TINY, "model.embed_dim": "64", "model.patch_size": "4"}),
    "imagenet64": (  # class-conditional without a null label, with a time MLP and qkv biases
        "vp/imagenet64_uvit_m4",
        {
            **TINY,
            "model.embed_dim": "64",
            "data.image_size": "16",
            "model.num_classes": "10",
            "model.mlp_time_embed": "True",
            "model.qkv_bias": "True",
        },
    ),
}
TINY_DIT = {"model.hidden_size": "64", "data.image_size": "8", "model.num_classes": "10"}


def _uvit_case(name, tmp_path, seed=0):
    config_name, overrides = TINY_UVIT[name]
    cfg = config_lib.load(config_name, overrides)
    m, d = cfg.model, cfg.data
    shapes = uvit_state_shapes(
        img=d.image_size,
        p=m.patch_size,
        C=d.num_channels,
        D=m.embed_dim,
        depth=m.depth,
        num_classes=m.num_classes or -1,
        mlp_time_embed=m.mlp_time_embed,
        qkv_bias=m.qkv_bias,
    )
    sd = random_state(shapes, seed)
    path = tmp_path / f"{name}_uvit.pth"
    write_pth(path, sd)
    return cfg, sd, str(path)


@pytest.mark.parametrize("name", sorted(TINY_UVIT))
def test_a_converted_uvit_computes_the_original(name, tmp_path):
    """Random U-ViT weights in a .pth with the original's names: converted, our network computes
    the numpy original's output (CIFAR-10: unconditional; ImageNet-64: with a class token, no
    null label in the file); back to the original's layout bit for bit."""
    cfg, sd, path = _uvit_case(name, tmp_path)
    params, ema, step = convert.convert_params(cfg, path)
    assert step == 0 and ema is params  # a bare state_dict: the EMA weights themselves
    rng = np.random.default_rng(1)
    n, C, H = 3, cfg.data.num_channels, cfg.data.image_size
    x = rng.standard_normal((n, C, H, H))
    t = np.array([0.0, 321.5, 999.0])
    y = rng.integers(0, cfg.model.num_classes, n) if cfg.model.num_classes else None
    m = cfg.model
    ref = uvit_forward(
        sd, x, t, y, p=m.patch_size, heads=m.num_heads, mlp_time_embed=m.mlp_time_embed
    )
    _assert_close(_ours(cfg, params, x, t, y), ref)
    back = transformers.to_torch(params, cfg)
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)
    if m.num_classes:  # the added null row: the class rows' mean
        np.testing.assert_allclose(
            params["label_emb"]["embedding"][-1],
            sd["label_emb.weight"].mean(0, np.float64),
            rtol=1e-6,
        )


def test_a_swapped_weight_is_caught(tmp_path):
    """The negative control: one square weight transposed in the file (what a missing transpose
    in the map would do) and the outputs no longer agree."""
    cfg, sd, _ = _uvit_case("cifar10", tmp_path)
    bad = dict(sd, **{"mid_block.attn.proj.weight": sd["mid_block.attn.proj.weight"].T})
    params = transformers.from_torch(bad, _like(cfg), cfg)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    t = np.array([10.0, 500.0])
    m = cfg.model
    ref = uvit_forward(sd, x, t, None, p=m.patch_size, heads=m.num_heads, mlp_time_embed=False)
    with pytest.raises(AssertionError):
        _assert_close(_ours(cfg, params, x, t), ref)


def _like(cfg):
    return nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))


def _dit_case(kind, tmp_path, seed=0):
    """(config, state_dict, path) of a tiny DiT ('dit', VP) or SiT ('sit', flow) release."""
    config_name = "vp/imagenet256_dit_xl2" if kind == "dit" else "flow/imagenet256_sit_xl2"
    cfg = config_lib.load(config_name, {**TINY, **TINY_DIT})
    m, d = cfg.model, cfg.data
    shapes = dit_state_shapes(
        img=d.image_size,
        p=m.patch_size,
        C=d.num_channels,
        D=m.hidden_size,
        depth=m.depth,
        num_classes=m.num_classes,
        learn_sigma=m.learn_sigma,
    )
    grid = d.image_size // m.patch_size
    sd = random_state(shapes, seed, pos_embed=dit_pos_embed(m.hidden_size, grid))
    path = tmp_path / f"{kind}.pt"
    write_pth(path, sd)
    return cfg, sd, str(path)


@pytest.mark.parametrize("kind", ["dit", "sit"])
def test_a_converted_dit_or_sit_computes_the_original(kind, tmp_path):
    """Random DiT / SiT weights (learned-sigma head, 10 classes + the null row, the frozen
    pos_embed buffer) in a .pt: converted, our network is the original's first C output channels
    (DiT at timestep = our label; SiT: our velocity -v_SiT at SiT's t = 1 - t); the null label
    works; back to the original's layout bit for bit."""
    cfg, sd, path = _dit_case(kind, tmp_path)
    params, _, _ = convert.convert_params(cfg, path)
    rng = np.random.default_rng(2)
    n, C, H = 4, cfg.data.num_channels, cfg.data.image_size
    x = rng.standard_normal((n, C, H, H))
    t = np.array([0.0, 0.25, 0.6, 1.0])
    labels = 999.0 * t  # the VP SDE's (discrete: (N - 1) t) and the flow path's labels
    y = np.array([3, 0, 9, cfg.model.num_classes])  # the last: the null label
    m = cfg.model
    if kind == "dit":
        ref = dit_forward(sd, x, labels, y, p=m.patch_size, heads=m.num_heads)[:, :C]
    else:
        ref = -dit_forward(sd, x, 1.0 - t, y, p=m.patch_size, heads=m.num_heads)[:, :C]
    _assert_close(_ours(cfg, params, x, labels, y), ref)
    back = transformers.to_torch(params, cfg)
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)


def test_a_dit_training_checkpoint_gives_model_and_ema(tmp_path):
    """DiT / SiT train.py's {'model', 'ema', 'opt', 'args'} (args an argparse.Namespace): the
    params from 'model', the EMA from 'ema'."""
    cfg, sd, _ = _dit_case("dit", tmp_path)
    ema = collections.OrderedDict((k, v * 0.5 if k != "pos_embed" else v) for k, v in sd.items())
    path = tmp_path / "0400000.pt"
    args = argparse.Namespace(model="DiT-XL/2", image_size=256, global_batch_size=256)
    write_pth(
        path, {"model": sd, "ema": ema, "opt": {"state": {}, "param_groups": []}, "args": args}
    )
    params, ema_params, step = convert.convert_params(cfg, str(path))
    w = ("blocks", 0, "attn", "qkv", "kernel")
    get = lambda tree: tree[w[0]][w[1]][w[2]][w[3]][w[4]]  # noqa: E731
    np.testing.assert_array_equal(get(params), sd["blocks.0.attn.qkv.weight"].T)
    np.testing.assert_array_equal(get(ema_params), ema["blocks.0.attn.qkv.weight"].T)


# ------------------------------------------------------------------ the published sizes

PUBLISHED = {  # config -> (the original's state_dict, its element count, the paper's)
    "vp/cifar10_uvit_s2": (
        uvit_state_shapes(
            img=32, p=2, C=3, D=512, depth=12, num_classes=-1, mlp_time_embed=False, qkv_bias=False
        ),
        44_255_328,
        44e6,
    ),
    "vp/imagenet64_uvit_m4": (
        uvit_state_shapes(
            img=64,
            p=4,
            C=3,
            D=768,
            depth=16,
            num_classes=1000,
            mlp_time_embed=False,
            qkv_bias=False,
        ),
        130_940_292,
        131e6,
    ),
    "vp/imagenet64_uvit_l4": (
        uvit_state_shapes(
            img=64,
            p=4,
            C=3,
            D=1024,
            depth=20,
            num_classes=1000,
            mlp_time_embed=False,
            qkv_bias=False,
        ),
        286_827_652,
        287e6,
    ),
    "vp/imagenet256_dit_xl2": (
        dit_state_shapes(img=32, p=2, C=4, D=1152, depth=28, num_classes=1000, learn_sigma=True),
        675_129_632,
        675e6,
    ),
    "flow/imagenet256_sit_xl2": (
        dit_state_shapes(img=32, p=2, C=4, D=1152, depth=28, num_classes=1000, learn_sigma=True),
        675_129_632,
        675e6,
    ),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_published_layouts_are_the_originals(name):
    """For each released checkpoint's config (abstract init, nothing allocated): the map's keys
    and shapes are exactly the original's state_dict, and its element count is the published
    parameter count (DiT: with its frozen pos_embed, as printed by its code; U-ViT ImageNet-64:
    ours has the null label's row besides)."""
    original, count, paper = PUBLISHED[name]
    cfg = config_lib.load(name)
    like = _like(cfg)
    kind = transformers.source_kind(cfg)
    mapped = {
        e.key: e.torch_shape(tuple(transformers._leaf(like, path).shape))
        for path, e in transformers.entries(like, kind).items()
    }
    if kind != "uvit":
        mapped["pos_embed"] = transformers._pos_embed(cfg).shape
    assert sorted(set(mapped) ^ set(original)) == []
    assert mapped == original
    n = sum(math.prod(s) for s in original.values())
    assert n == count and round(n / 1e6) == paper / 1e6
    ours = models.count_params(models.abstract_params(cfg.model, cfg.data))
    extra = cfg.model.embed_dim if name.startswith("vp/imagenet64") else 0  # the null row
    pos = math.prod(original["pos_embed"]) if kind != "uvit" else 0  # a constant here
    assert ours == count + extra - pos


# ------------------------------------------------------------------ refusals


def test_a_wrong_config_or_file_is_refused_in_one_message(tmp_path):
    cfg, sd, path = _uvit_case("cifar10", tmp_path)
    deeper = config_lib.load("vp/cifar10_uvit_s2", {**TINY_UVIT["cifar10"][1], "model.depth": "4"})
    with pytest.raises(
        ValueError, match=r"does not match .* missing keys \(24\): in_blocks\.1\.attn"
    ):
        convert.convert_params(deeper, path)
    with pytest.raises(ValueError, match="--format=jax: config.model.name 'uvit'"):
        convert.convert_params(cfg, path, "jax")
    flow = config_lib.load(
        "vp/cifar10_uvit_s2", {**TINY_UVIT["cifar10"][1], "training.sde": "vesde"}
    )
    with pytest.raises(ValueError, match=r"config.training.sde \('vesde'\).*'vpsde'"):
        convert.convert_params(flow, path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK not really a zip")
    with pytest.raises(ValueError, match="is not a PyTorch file"):
        convert.convert_params(cfg, str(junk))

    dit, dsd, dpath = _dit_case("dit", tmp_path)
    no_time = config_lib.load(
        "flow/imagenet256_sit_xl2", {**TINY, **TINY_DIT, "model.time_scale": "1.0"}
    )
    with pytest.raises(ValueError, match=r"config.model.time_offset \(1.0\) and time_scale"):
        convert.convert_params(no_time, dpath)
    shifted = dict(dsd, pos_embed=np.roll(dsd["pos_embed"], 1, axis=1))
    write_pth(tmp_path / "shifted.pt", shifted)
    with pytest.raises(ValueError, match="pos_embed is not DiT's fixed sin-cos embedding"):
        convert.convert_params(dit, str(tmp_path / "shifted.pt"))


# ------------------------------------------------------------------ the command line


@pytest.mark.slow
def test_convert_then_sample_a_tiny_uvit_through_the_cli(tmp_path):
    """`python -m score_sde.convert --config=vp/cifar10_uvit_s2 (shrunk) --source x.pth` then
    `score-sde sample`: the checkpoint holds the converted weights bit for bit, and the samples
    are those of these weights sampled directly."""
    from score_sde.run import experiment, sample_files
    from score_sde.store.checkpoint import Checkpoints, restore_ema

    _, sd, path = _uvit_case("cifar10", tmp_path)
    overrides = {**TINY_UVIT["cifar10"][1], "sampling.num_samples": 4, "sampling.batch_size": 4}
    common = ["--config=vp/cifar10_uvit_s2", *(f"--config.{k}={v}" for k, v in overrides.items())]
    workdir = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    score_sde = os.path.join(os.path.dirname(sys.executable), "score-sde")
    for argv in (
        [sys.executable, "-m", "score_sde.convert", *common, f"--source={path}"],
        [score_sde, "sample", *common],
    ):
        proc = subprocess.run(
            [*argv, f"--workdir={workdir}"],
            cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    (samples,) = (workdir / "samples").glob("ckpt_0_*.npz")
    got = np.load(samples)["samples"]

    cfg = config_lib.load("vp/cifar10_uvit_s2", {k: str(v) for k, v in overrides.items()})
    exp = experiment.build(cfg)
    with Checkpoints(str(workdir), read_only=True) as ckpts:
        restored, step = restore_ema(ckpts, exp.state_like())
    assert step == 0
    back = transformers.to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(restored)), cfg)
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)
    key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), 0), 2)
    x, _ = exp.sample(restored, key, 4)
    assert got.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(got, sample_files.on_host(x, cfg.data))
