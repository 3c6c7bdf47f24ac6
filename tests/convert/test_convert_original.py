"""Our NCSN++ / DDPM++ / DDPM parameters map one to one onto the ORIGINAL score_sde's parameter
trees, for every original config file of those families.

tests/assets/original_param_trees.json.gz holds the parameter paths and shapes of the original's
flax models (models/ncsnpp.py, models/ddpm.py of yang-song/score_sde), initialized with
jax.eval_shape from each original config file. The layout map of score_sde.convert.layout must
produce exactly those names (e.g. the FIR `Conv2d` kernel is 'weight') with those shapes, so a
published JAX checkpoint converts (our own round trip cannot see a naming mismatch: both
directions share the map).
"""

import gzip
import json

import numpy as np
import pytest
from flax import nnx

from score_sde import config, models
from score_sde.convert import layout
from tests.helpers import ROOT

FIXTURE = json.load(gzip.open(ROOT / "tests" / "assets" / "original_param_trees.json.gz", "rt"))


@pytest.mark.slow
@pytest.mark.parametrize("rel", sorted(FIXTURE["configs"]))
def test_layout_names_and_shapes_are_the_originals(rel):
    original = FIXTURE["trees"][FIXTURE["configs"][rel]]
    cfg = config.load(str(ROOT / "configs" / rel))
    like = nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))
    names = layout._jax_map(like, cfg)
    mapped = {
        "/".join(map(str, names[path])): list(leaf.shape)
        for path, leaf in layout.flatten(like).items()
    }
    assert sorted(set(mapped) - set(original))[:10] == [] and not set(original) - set(mapped)
    assert mapped == original


def test_an_original_shaped_checkpoint_converts(tmp_path):
    """A params tree with the original's exact names and shapes (values random) converts into
    our NCSN++ (VE, FIR, residual input pyramid) and back, bit for bit."""
    rel = "ve/cifar10_ncsnpp_continuous.py"
    original = FIXTURE["trees"][FIXTURE["configs"][rel]]
    rng = np.random.default_rng(0)
    tree = layout.unflatten(
        {
            tuple(k.split("/")): rng.standard_normal(v).astype(np.float32)
            for k, v in original.items()
        }
    )
    cfg = config.load(str(ROOT / "configs" / rel))
    like = nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))
    ours = layout.from_jax_layout(tree, cfg, like)
    back = layout.flatten(layout.to_jax_layout(ours, cfg))
    assert {"/".join(k) for k in back} == set(original)
    for k, v in layout.flatten(tree).items():
        np.testing.assert_array_equal(back[k], v)
    assert any(k[-1] == "weight" and "Conv2d_0" in k for k in back)  # the FIR convolutions


NCSNPP_SMALL = [  # configs/ve/cifar10_ncsnpp_continuous.py shrunk; FIR and the pyramids stay
    "--config.model.nf=8",
    "--config.model.ch_mult=(1,2)",
    "--config.model.num_res_blocks=1",
    "--config.model.attn_resolutions=(16,)",
    "--config.model.num_scales=4",
    "--config.sampling.num_samples=4",
    "--config.sampling.batch_size=4",
]


@pytest.mark.slow
def test_a_converted_original_ncsnpp_checkpoint_samples(tmp_path):
    """An original-layout flax msgpack checkpoint of a small VE NCSN++ (its names are the ones
    checked against the original above) -> `python -m score_sde.convert` -> `launch.py
    --mode=sample`: the samples equal those of the same EMA parameters sampled directly."""
    import subprocess
    import sys

    import jax
    from flax import serialization

    from score_sde.run import experiment, sample_files
    from score_sde.store.checkpoint import Checkpoints, restore_ema

    _, overrides, _ = config.split_argv(NCSNPP_SMALL, "")
    cfg = config.load("ve/cifar10_ncsnpp_continuous", overrides)
    like = nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))
    rng = np.random.default_rng(1)
    ema = jax.tree.map(lambda s: 0.05 * rng.standard_normal(s.shape).astype(s.dtype), like)
    state = {
        "step": 24,
        "optimizer": {"target": layout.to_jax_layout(ema, cfg), "state": {}},
        "params_ema": layout.to_jax_layout(ema, cfg),
        "ema_rate": 0.999,
    }
    source = tmp_path / "exp" / "checkpoint_24"
    source.parent.mkdir()
    source.write_bytes(serialization.msgpack_serialize(state))
    workdir = tmp_path / "run"
    common = ["--config=ve/cifar10_ncsnpp_continuous", *NCSNPP_SMALL]
    for argv in (
        ["-m", "score_sde.convert", *common, f"--source={source}", f"--workdir={workdir}"],
        [str(ROOT / "launch.py"), *common, f"--workdir={workdir}", "--mode=sample"],
    ):
        proc = subprocess.run(
            [sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (workdir / "samples").glob("ckpt_24_*.npz")
    got = np.load(path)["samples"]

    exp = experiment.build(cfg)
    with Checkpoints(str(workdir), read_only=True) as ckpts:
        restored, step = restore_ema(ckpts, exp.state_like())
    assert step == 24
    flat = layout.flatten(jax.tree.map(np.asarray, nnx.to_pure_dict(restored)))
    assert flat.keys() == layout.flatten(ema).keys()
    for k, v in layout.flatten(ema).items():
        np.testing.assert_array_equal(flat[k], v)  # the EMA weights, bit for bit
    key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), 24), 2)
    x, _ = exp.sample(restored, key, 4)
    assert got.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(got, sample_files.on_host(x, cfg.data))
