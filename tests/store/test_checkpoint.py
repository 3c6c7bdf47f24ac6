"""Checkpoints: round trip, rolling preemption slot, bit-identical resume, SIGTERM save."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from score_sde import parallel
from score_sde.run import experiment
from score_sde.store import checkpoint
from tests.helpers import OVERRIDES, REPO, tiny_flags, train_until_signal


def _launch(workdir, timeout=240):
    cmd = [sys.executable, "launch.py", "--config", "configs/toy/gmm.py", f"--workdir={workdir}"]
    return subprocess.run(
        cmd + tiny_flags(), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _final_state(workdir, step=None):
    from configs.toy import gmm
    from score_sde.config import from_config

    config = gmm.get_config()
    for k, v in OVERRIDES.items():
        a, b = k.split(".")
        config[a][b] = v
    exp = experiment.build(from_config(config), parallel.make_mesh())
    with checkpoint.Checkpoints(str(workdir)) as ckpts:
        state = ckpts.restore(exp.state_like(), step)
    return parallel.to_host(state)


def _assert_bit_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_array_equal(u, v)


def test_round_trip_and_rolling_preemption_slot(tmp_path):
    ckpts = checkpoint.Checkpoints(str(tmp_path))
    mesh = parallel.make_mesh()
    rep = parallel.replicated(mesh)
    tree = {
        "w": jax.device_put(jnp.arange(6.0).reshape(2, 3), rep),
        "step": jax.device_put(jnp.int32(3), rep),
    }
    for step in (2, 4, 6):
        ckpts.save(step, jax.tree.map(lambda x, s=step: x + s, tree), snapshot=False)
    ckpts.save(5, tree, snapshot=True)
    ckpts.wait()
    assert sorted(ckpts.preemption.all_steps()) == [6]  # only the newest preemption checkpoint
    assert ckpts.snapshot_steps() == [5]
    assert ckpts.latest_step() == 6
    restored = ckpts.restore(tree)
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) + 6)
    assert restored["w"].sharding == rep
    np.testing.assert_array_equal(ckpts.restore(tree, 5)["w"], np.arange(6.0).reshape(2, 3))
    ckpts.close()
    assert checkpoint.Checkpoints(str(tmp_path / "empty")).restore(tree) is None


def test_a_replicated_state_is_saved_without_cutting_it_into_replica_slices(tmp_path, monkeypatch):
    """orbax's default writes each replicated array as one slice per replica, each cut on device
    by an eagerly compiled op per shape (most of a first save's time on the test devices). Small
    arrays are written whole from one replica, and read back the same on the 4-device mesh."""
    assert checkpoint.SMALL_ARRAYS_WHOLE  # this orbax takes the option (else its default stays)
    rep = parallel.replicated(parallel.make_mesh())
    assert jax.device_count() == 4
    tree = {f"w{n}": jax.device_put(jnp.arange(4.0 * n).reshape(4, n), rep) for n in (1, 2, 3)}
    cuts = []
    slice_in_dim = jax.lax.slice_in_dim
    monkeypatch.setattr(
        jax.lax, "slice_in_dim", lambda *a, **k: cuts.append(a) or slice_in_dim(*a, **k)
    )
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        ckpts.save(1, tree, snapshot=True)
        ckpts.wait()
        restored = ckpts.restore(tree, 1)
    assert cuts == []
    # our own registry, given to our save handler only: orbax's process-wide one is untouched
    ours = checkpoint._orbax.TYPE_HANDLERS.get(jax.Array)
    assert ocp.type_handlers.get_type_handler(jax.Array) is not ours
    assert (
        ours._min_slice_bytes_for_replica_parallel == checkpoint._orbax.REPLICA_PARALLEL_MIN_BYTES
    )
    for key, value in tree.items():
        np.testing.assert_array_equal(restored[key], value)
        assert restored[key].sharding == rep


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical_and_sigterm_saves(tmp_path):
    straight = _launch(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    # The launcher names the devices it found first (conftest fakes 4 CPU devices).
    assert straight.stdout.startswith("topology: process 0/1, 4 local / 4 global cpu device(s)")

    # SIGKILL while fetching the data of step 14 (mid-run, possibly mid-save), then restart.
    killed = train_until_signal(tmp_path / "killed", "SIGKILL", 14)
    assert killed.returncode == -9, killed.stderr[-3000:]
    partial = checkpoint.Checkpoints(str(tmp_path / "killed")).latest_step()
    assert partial is not None and 0 < partial < 24
    resumed = _launch(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {partial}" in resumed.stdout

    # SIGTERM at step 9: the step-10 dispatch finishes, a preemption checkpoint is saved,
    # and modes.run reports the preemption (the launcher exits 143 on it).
    termed = train_until_signal(tmp_path / "termed", "SIGTERM", 9)
    assert termed.returncode == 143, termed.stderr[-3000:]
    assert "SIGTERM: saved a preemption checkpoint at step 10" in termed.stdout
    assert "preempted: SIGTERM: preempted at step 10" in termed.stdout
    ckpts = checkpoint.Checkpoints(str(tmp_path / "termed"))
    assert ckpts.latest_step() == 10 and ckpts.snapshot_steps() == [10]

    ref = _final_state(tmp_path / "straight", 24)
    assert int(ref.step) == 24
    _assert_bit_identical(ref, _final_state(tmp_path / "killed", 24))
    _assert_bit_identical(
        _final_state(tmp_path / "straight", 10), _final_state(tmp_path / "termed", 10)
    )
