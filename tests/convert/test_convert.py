"""Checkpoint conversion: our params <-> the original JAX and PyTorch-port layouts, bit-identical,
every leaf mapped exactly once, clear errors for a checkpoint of another config, and a converted
checkpoint that sample mode loads. No torch needed (the .pth file test skips without it).
"""

import dataclasses
import importlib.util
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from score_sde import config as config_lib
from score_sde import convert, models
from score_sde.convert import layout
from tests.helpers import ASSETS, ROOT

BASE = dict(
    name="ncsnpp", nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
    embedding_type="positional", dropout=0.1,
)  # fmt: skip


def _config(**model):
    """A tiny network of the family of model['name'] on 8x8 RGB images: .model and .data, what
    the layout maps read."""
    opts = {**BASE, **model}
    cls = config_lib.model_class(opts["name"])
    known = {f.name for f in dataclasses.fields(cls)}
    data = config_lib.DataConfig(dataset="x", image_size=8, num_channels=3, centered=True)
    return types.SimpleNamespace(
        model=cls(**{k: v for k, v in opts.items() if k in known}), data=data
    )


VARIANTS = {
    "ddpmpp": dict(),
    "ncsnpp": dict(
        fir=True,
        progressive="output_skip",
        progressive_input="residual",
        embedding_type="fourier",
        resblock_type="biggan",
    ),
    "ddpm_blocks": dict(
        resblock_type="ddpm",
        progressive="residual",
        progressive_input="input_skip",
        progressive_combine="cat",
    ),
    "ddpm": dict(name="ddpm", nf=32, num_scales=10),
}


def _params(opts, key=0):
    c = _config(init_scale=0.5, **opts)
    return c, nnx.to_pure_dict(models.init_model(c.model, c.data, jax.random.key(key))[1])


def _assert_same(a, b):
    fa, fb = layout.flatten(a), layout.flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        x, y = np.asarray(fa[k]), np.asarray(fb[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trips_are_bit_identical_and_one_to_one(variant):
    c, params = _params(VARIANTS[variant])
    leaves = layout.flatten(params)
    # PyTorch layout
    sd = layout.to_torch_layout(params)
    assert len(sd) == len(leaves)  # one key per leaf, none merged
    assert all(
        k.startswith("module.all_modules.") or k.startswith("module.class_embed") for k in sd
    )
    for path, x in leaves.items():
        if path[-1] == "kernel" and np.ndim(x) == 4:
            key = "module." + ".".join(map(str, path[:-1])) + ".weight"
            kh, kw, cin, cout = x.shape
            assert sd[key].shape == (cout, cin, kh, kw)  # OIHW
    _assert_same(layout.from_torch_layout(sd, params), params)
    # JAX layout
    tree = layout.to_jax_layout(params, c)
    assert len(layout.flatten(tree)) == len(leaves)
    assert len(tree) == len(params["all_modules"])  # one flax name per module
    _assert_same(layout.from_jax_layout(tree, c, params), params)


def test_original_module_names():
    c, params = _params(VARIANTS["ncsnpp"])
    names = layout.jax_module_names(c)
    assert names[:4] == ["GaussianFourierProjection_0", "Dense_0", "Dense_1", "Conv_0"]
    assert "ResnetBlockBigGANpp_0" in names and "AttnBlockpp_0" in names
    assert "Downsample_0" in names and "GroupNorm_0" in names
    tree = layout.to_jax_layout(params, c)
    assert set(tree["ResnetBlockBigGANpp_0"]) >= {"Conv_0", "Conv_1", "GroupNorm_0", "Dense_0"}
    assert set(tree["AttnBlockpp_0"]) == {"GroupNorm_0", "NIN_0", "NIN_1", "NIN_2", "NIN_3"}
    cd, _ = _params(VARIANTS["ddpm"])
    dn = layout.jax_module_names(cd)
    assert dn[:3] == ["Dense_0", "Dense_1", "Conv_0"] and "ResnetBlockDDPM_0" in dn
    # the published CIFAR-10 DDPM++: PyTorch keys of the port, from shapes alone (no allocation)
    spec = importlib.util.spec_from_file_location(
        "c", ROOT / "configs" / "vp" / "cifar10_ddpmpp_continuous.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = config_lib.from_config(mod.get_config())
    like = nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))
    m = layout._torch_map(like, "module.")
    keys = {k for k, _ in m.values()}
    assert {
        "module.all_modules.0.weight",
        "module.all_modules.2.weight",
        "module.all_modules.3.GroupNorm_0.weight",
        "module.all_modules.3.Dense_0.weight",
    } <= keys


@pytest.mark.slow
def test_mismatched_checkpoint_errors_name_keys_and_shapes():
    c, params = _params(VARIANTS["ddpmpp"])
    _, wider = _params(dict(nf=16))
    sd = layout.to_torch_layout(wider)
    with pytest.raises(
        ValueError,
        match=r"module\.all_modules\.1\.weight: checkpoint \(64, 64\) "
        r"vs model \(32, 32\)",
    ):
        layout.from_torch_layout(sd, params)
    sd = layout.to_torch_layout(params)
    del sd["module.all_modules.2.bias"]
    sd["module.all_modules.99.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as e:
        layout.from_torch_layout(sd, params)
    assert "missing keys (1): module.all_modules.2.bias" in str(e.value)
    assert "unexpected keys (1): module.all_modules.99.weight" in str(e.value)
    tree = layout.to_jax_layout(params, c)
    tree.pop("Conv_0")
    with pytest.raises(ValueError, match="missing keys .*Conv_0/kernel"):
        layout.from_jax_layout(tree, c, params)
    # a model with parts no published checkpoint has (class embedding) cannot be filled
    cc, cond = _params(dict(num_classes=3))
    with pytest.raises(ValueError, match="class_embed"):
        layout.from_torch_layout(layout.to_torch_layout(params), cond)


def test_torch_ema_list_maps_onto_trainable_parameters():
    c, params = _params(VARIANTS["ncsnpp"])
    sd = {"module.sigmas": np.ones(3, np.float32), **layout.to_torch_layout(params)}
    keys = [
        k for k in layout.torch_parameter_keys(sd) if not k.endswith(".W") or np.ndim(sd[k]) != 1
    ]  # the frozen Fourier W is not in shadow_params
    shadow = [sd[k] + 1 for k in keys]
    ema = layout.torch_ema_state_dict(sd, {"shadow_params": shadow})
    got = layout.from_torch_layout(ema, params)
    np.testing.assert_array_equal(got["all_modules"][0]["W"], params["all_modules"][0]["W"])
    np.testing.assert_array_equal(
        got["all_modules"][1]["kernel"], params["all_modules"][1]["kernel"] + 1
    )
    with pytest.raises(ValueError, match="shadow_params has 2"):
        layout.torch_ema_state_dict(sd, {"shadow_params": shadow[:2]})


def _digits_config():
    from configs.digits.ddpmpp import get_config

    c = get_config()
    c.model.nf = 8
    c.model.num_scales = 4
    c.sampling.num_samples = c.sampling.batch_size = 8
    return c


@pytest.mark.slow
def test_converted_jax_checkpoint_loads_in_sample_mode(tmp_path):
    from flax import serialization

    from score_sde.config import from_config
    from score_sde.run import experiment
    from score_sde.run.modes.sample import sample
    from score_sde.store import checkpoint

    c = from_config(_digits_config())
    p = nnx.to_pure_dict(models.init_model(c.model, c.data, jax.random.key(1))[1])
    e = jax.tree.map(lambda x: x * 0.5, p)
    state = {
        "step": 1234,
        "optimizer": {"target": layout.to_jax_layout(p, c), "state": {}},
        "params_ema": layout.to_jax_layout(e, c),
        "ema_rate": 0.999,
    }
    src = tmp_path / "checkpoint_7"
    src.write_bytes(serialization.msgpack_serialize(state))
    assert convert.detect_format(str(src)) == "jax"
    workdir = str(tmp_path / "run")
    assert convert.convert(c, str(src), workdir) == 1234
    exp = experiment.build(c)
    with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
        restored = ckpts.restore(exp.state_like())
    assert int(restored.step) == 1234
    _assert_same(
        jax.tree.map(np.asarray, nnx.to_pure_dict(restored.ema_params)), jax.tree.map(np.asarray, e)
    )
    _assert_same(
        jax.tree.map(np.asarray, nnx.to_pure_dict(restored.params)), jax.tree.map(np.asarray, p)
    )
    x = sample(c, workdir)
    assert x.shape == (8, 8, 8, 1) and np.isfinite(x).all()
    # a checkpoint of another width: one clear error naming a key and both shapes
    wide = _digits_config()
    wide.model.nf = 16
    with pytest.raises(
        ValueError,
        match=r"Conv_0/kernel: checkpoint \(3, 3, 1, 8\) vs model "
        r"\(3, 3, 1, 16\)",
    ):
        convert.convert(wide, str(src), str(tmp_path / "run2"))


def test_port_pth_reads_without_torch(monkeypatch):
    """tests/assets/port_checkpoint_9.pth: the port's checkpoint layout (optimizer, model, ema with
    shadow_params, step) for VARIANTS['ncsnpp'], written by PyTorch 2.13; the expected arrays are
    torch's own (tests/assets/README.md)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    data = str(ASSETS)
    model, ema, step = convert.read_torch_checkpoint(os.path.join(data, "port_checkpoint_9.pth"))
    expected = np.load(os.path.join(data, "port_checkpoint_9_expected.npz"))
    assert step == 9
    assert sorted(model) == sorted(k[len("model/") :] for k in expected if k.startswith("model/"))
    for k, v in model.items():
        np.testing.assert_array_equal(v, expected["model/" + k])
    c, params = _params(VARIANTS["ncsnpp"])
    converted = layout.from_torch_layout(ema, params)  # the port's EMA in our tree
    assert layout.flatten(converted).keys() == layout.flatten(params).keys()
    shadow = [expected[f"ema/{i}"] for i in range(sum(k.startswith("ema/") for k in expected))]
    assert sum(np.asarray(v).size for v in layout.flatten(converted).values()) >= sum(
        s.size for s in shadow
    )


def test_pth_file_round_trip(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional)")
    c, params = _params(VARIANTS["ncsnpp"])
    sd = {k: torch.from_numpy(np.array(v)) for k, v in layout.to_torch_layout(params).items()}
    shadow = [v for k, v in sd.items() if not (k.endswith(".W") and v.ndim == 1)]
    torch.save(
        {
            "model": sd,
            "ema": {"decay": 0.999, "num_updates": 3, "shadow_params": shadow},
            "step": 9,
        },
        tmp_path / "checkpoint_9.pth",
    )
    model, ema, step = convert.read_torch_checkpoint(str(tmp_path / "checkpoint_9.pth"))
    assert step == 9
    _assert_same(layout.from_torch_layout(model, params), params)
    _assert_same(layout.from_torch_layout(ema, params), params)


def test_jnp_leaves_are_accepted():
    c, params = _params(VARIANTS["ddpmpp"])
    sd = {k: jnp.asarray(v) for k, v in layout.to_torch_layout(params).items()}
    _assert_same(layout.from_torch_layout(sd, params), params)
