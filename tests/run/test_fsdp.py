"""Sharded parameters (config.training.mesh = (data, fsdp)): the sharding rule, the mesh errors,
and exact equivalences: a DiT's train steps on four devices with an fsdp axis of 2 (weights,
Adam moments and EMA split in two) equal one device's and plain data parallel's, to float
round-off; a checkpoint of the sharded state restores into the same shardings."""

import jax
import numpy as np
import pytest

from score_sde import config as config_lib
from score_sde import parallel
from score_sde.run import experiment
from score_sde.store.checkpoint import Checkpoints

DIT = {"model.hidden_size": "32", "model.depth": "2", "model.num_heads": "2", "optim.warmup": "0"}


def _cfg(mesh="(-1, 1)"):
    return config_lib.load("digits/dit", {**DIT, "training.batch_size": "8", "training.mesh": mesh})


def _steps(exp, n=3):
    xs = np.asarray(jax.random.uniform(jax.random.key(5), (n, 8, 8, 8, 1), minval=-1, maxval=1))
    state, losses = exp.new_state(), []
    steps = exp.train_steps()
    for x in xs:
        state, m = steps(state, [{"x": x}])
        losses.append(float(parallel.to_host(m["loss"])[0]))
    return state, losses


def _spec(a) -> tuple:
    return tuple(a.sharding.spec)


def test_leaf_sharding_splits_the_largest_divisible_axis_of_large_leaves():
    mesh = parallel.make_mesh(4, (-1, 2))
    assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": 2, "fsdp": 2}
    assert tuple(parallel.leaf_sharding((64, 192), mesh).spec) == (None, "fsdp")
    assert tuple(parallel.leaf_sharding((3, 3, 64, 64), mesh).spec) == (None, None, "fsdp")
    assert tuple(parallel.leaf_sharding((33, 65), mesh).spec) == ()  # no axis divisible by 2
    assert tuple(parallel.leaf_sharding((64,), mesh).spec) == ()  # small: replicated
    assert tuple(parallel.leaf_sharding((), mesh).spec) == ()
    flat = parallel.make_mesh(4)  # data parallel: everything replicated
    assert flat.axis_names == ("data",)
    assert tuple(parallel.leaf_sharding((64, 192), flat).spec) == ()
    # the batch is split over every device of either mesh
    assert tuple(parallel.batch_sharding(mesh).spec) == (("data", "fsdp"),)
    assert tuple(parallel.batch_sharding(flat, 1).spec) == (None, "data")


@pytest.mark.parametrize("shape", [(-1, 3), (3, 2), (-1, 8)])
def test_a_mesh_that_does_not_fit_the_devices_names_the_field(shape):
    with pytest.raises(ValueError, match=r"config.training.mesh .* does not fit the 4 devices"):
        parallel.make_mesh(4, shape)


def test_bad_mesh_values_are_refused_at_the_config_boundary():
    assert _cfg("(-1, 2)").training.mesh == (-1, 2)
    for bad in ("(-1, 0)", "(0, 2)", "(2, 2, 1)"):
        with pytest.raises(ValueError, match="config.training.mesh"):
            _cfg(bad)


@pytest.mark.slow
def test_four_devices_with_fsdp_equal_one_device_and_data_parallel(tmp_path):
    one, loss_one = _steps(experiment.build(_cfg(), parallel.make_mesh(1)))
    dp, loss_dp = _steps(experiment.build(_cfg(), parallel.make_mesh(4)))
    exp = experiment.build(_cfg("(-1, 2)"))  # the mesh from the config: all 4 devices
    assert dict(exp.mesh.shape) == {"data": 2, "fsdp": 2}
    fsdp, loss_fsdp = _steps(exp)

    # the large leaves really are split: weights, both Adam moments and the EMA
    sharded = [a for a in jax.tree.leaves(fsdp) if "fsdp" in _spec(a)]
    assert len(sharded) >= 4 * 3, [_spec(a) for a in jax.tree.leaves(fsdp.params)]
    for a in sharded:
        axis = _spec(a).index("fsdp")
        assert a.addressable_shards[0].data.shape[axis] == a.shape[axis] // 2
    assert any("fsdp" in _spec(a) for a in jax.tree.leaves(fsdp.ema_params))

    np.testing.assert_allclose(loss_fsdp, loss_one, rtol=1e-5)
    np.testing.assert_allclose(loss_dp, loss_one, rtol=1e-5)
    host = [parallel.to_host(s) for s in (one, dp, fsdp)]
    for a, b, c in zip(*(jax.tree.leaves(h) for h in host), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)
    start = parallel.to_host(experiment.build(_cfg(), parallel.make_mesh(1)).new_state())
    moved = [np.abs(a - b).max() for a, b in zip(*(jax.tree.leaves(s.params) for s in (start, host[0])), strict=True)]  # fmt: skip
    assert max(moved) > 1e-3  # the steps moved the weights: the comparison is not vacuous

    # a checkpoint of the sharded state restores into the same shardings, bit for bit
    with Checkpoints(str(tmp_path)) as ckpts:
        ckpts.save(3, fsdp, snapshot=True)
    with Checkpoints(str(tmp_path)) as ckpts:
        back = ckpts.restore(exp.state_like())
    for a, b in zip(jax.tree.leaves(fsdp), jax.tree.leaves(back), strict=True):
        assert _spec(a) == _spec(b)
        np.testing.assert_array_equal(parallel.to_host(a), parallel.to_host(b))
