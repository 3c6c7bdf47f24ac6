"""Our NCSN++ / DDPM++ / DDPM parameters map one to one onto the ORIGINAL score_sde's parameter
trees, for every original config file of those families.

tests/data/original_param_trees.json.gz holds the parameter paths and shapes of the original's
flax models (models/ncsnpp.py, models/ddpm.py of yang-song/score_sde), initialized with
jax.eval_shape from each original config file. The layout map of score_sde.convert_layout must
produce exactly those names (e.g. the FIR `Conv2d` kernel is 'weight') with those shapes, so a
published JAX checkpoint converts (our own round trip cannot see a naming mismatch: both
directions share the map).
"""

import gzip
import json
import pathlib

import numpy as np
import pytest
from flax import nnx

from score_sde import config, models
from score_sde import convert_layout as layout

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = json.load(gzip.open(ROOT / "tests" / "data" / "original_param_trees.json.gz", "rt"))


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
