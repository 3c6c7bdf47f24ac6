"""Post-hoc EMA through the launcher: a tiny run tracking three widths stores their snapshots at
the cadence beside its checkpoints (kept whatever retention deletes); `python -m score_sde.phema`
rebuilds the 0.08 EMA from the 0.05 and 0.1 snapshots alone into a work directory that
score_sde.load and sample mode read, equal to the 0.08 EMA tracked in the run; a resumed run
writes the same snapshots and state as an uninterrupted one; phema off leaves the train state as
it was."""

import io
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import score_sde
from score_sde import parallel, phema
from score_sde.config import from_config
from score_sde.run import experiment, modes
from score_sde.store import phema_files
from score_sde.store.checkpoint import Checkpoints
from tests.helpers import REPO, snapshot, tiny_config

STDS = (0.05, 0.1, 0.08)
PHEMA = {
    "training.n_iters": 200,
    "training.n_jitted_steps": 5,
    "training.snapshot_freq": 50,
    "training.keep_checkpoints": 1,
    "training.phema_stds": STDS,
    "training.phema_freq": 10,
}


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(parallel.to_host(tree))])


def _final_state(workdir):
    cfg = from_config(json.loads((workdir / "config.json").read_text()))
    exp = experiment.build(cfg, parallel.make_mesh())
    with Checkpoints(str(workdir), read_only=True) as ckpts:
        return exp, ckpts.restore(exp.state_like())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """200 steps tracking 0.05, 0.1 and 0.08, snapshots every 10 steps, one checkpoint kept."""
    workdir = tmp_path_factory.mktemp("phema") / "run"
    modes.run("train", tiny_config("launch", **PHEMA), str(workdir), stream=io.StringIO())
    return workdir


@pytest.mark.slow
def test_snapshots_at_the_cadence_survive_retention(run):
    found = phema_files.listing(str(run))
    assert sorted({s.step for s in found}) == list(range(10, 201, 10))
    assert {s.std for s in found} == set(STDS) and len(found) == 60
    with Checkpoints(str(run), read_only=True) as ckpts:
        assert ckpts.snapshot_steps() == [200]  # keep_checkpoints = 1 deleted 50, 100, 150
    # the last snapshot is the EMA in the final train state, bit for bit
    exp, state = _final_state(run)
    last = {s.std: s for s in found if s.step == 200}
    for std, ema in zip(STDS, phema.emas(state.opt_state), strict=True):
        stored = phema_files.read(last[std], exp.state_like().ema_params)
        np.testing.assert_array_equal(_flat(stored), _flat(ema))


@pytest.mark.slow
def test_the_cli_rebuilds_a_tracked_width_from_two_others(run, tmp_path):
    """The 0.08 snapshots removed, `python -m score_sde.phema --std 0.08` fits it from the 0.05
    and 0.1 ones (20 each); the written work directory loads, and its EMA equals the 0.08 EMA
    the run tracked to relative L2 <= 1e-3 (and to 1% of how far training moved the
    parameters, where the tracked 0.05 and 0.1 EMAs miss by several times more)."""
    two = tmp_path / "two"
    shutil.copytree(run, two)
    for path in two.glob("phema/*/std-0.08.npz"):
        path.unlink()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "score_sde.phema", f"--workdir={two}", "--std=0.08",
         "--std", "0.15", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "std 0.08 at step 200 from 40 snapshots" in proc.stdout, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["std-0.08", "std-0.15"]
    info = json.loads((out / "std-0.08" / "phema.json").read_text())
    assert info["step"] == 200 and len(info["snapshots"]) == 40 and info["profile_error"] < 0.01

    model = score_sde.load(str(out / "std-0.08"))
    assert model.step == 200
    exp, state = _final_state(run)
    tracked = [_flat(e) for e in phema.emas(state.opt_state)]
    init = _flat(exp.new_state().params)
    got, want = _flat(model.params), tracked[2]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3
    moved = np.linalg.norm(want - init)
    assert np.linalg.norm(got - want) / moved <= 0.01
    for other in tracked[:2]:
        assert np.linalg.norm(other - want) / moved > 0.03

    # sample mode reads it with the training config
    cfg = from_config(tiny_config("launch", **PHEMA, **{"sampling.num_samples": 16}))
    modes.run("sample", cfg, str(out / "std-0.08"), stream=io.StringIO())
    assert list((out / "std-0.08" / "samples").glob("ckpt_200_*.npz"))


@pytest.mark.slow
def test_a_resumed_run_writes_what_an_uninterrupted_one_does(tmp_path):
    """24 steps straight, and 12 then resumed to 24: the same snapshots, byte for byte, and the
    same final state (the tracked EMAs in the optimizer state included), bit for bit."""
    fields = {**PHEMA, "training.n_iters": 24, "training.n_jitted_steps": 2,
              "training.snapshot_freq": 12, "training.phema_freq": 4}  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    modes.run("train", tiny_config("launch", **fields), str(straight), stream=io.StringIO())
    for n in (12, 24):
        cfg = tiny_config("launch", **{**fields, "training.n_iters": n})
        modes.run("train", cfg, str(resumed), stream=io.StringIO())
    a, b = snapshot(straight / "phema"), snapshot(resumed / "phema")
    assert len(a) == 18 and a == b  # 6 steps x 3 widths: {path: digest}
    (_, sa), (_, sb) = _final_state(straight), _final_state(resumed)
    assert int(sa.step) == 24
    for u, v in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        np.testing.assert_array_equal(parallel.to_host(u), parallel.to_host(v))


def test_phema_off_keeps_the_train_state_of_before():
    """No tracker in the optimizer state unless asked: checkpoints of earlier runs restore."""
    off = experiment.build(from_config(tiny_config("launch")), parallel.make_mesh(1))
    on = experiment.build(
        from_config(tiny_config("launch", **{"training.phema_stds": (0.05, 0.1)})),
        parallel.make_mesh(1),
    )
    leaves_off = jax.tree.leaves(off.state_like())
    assert phema.emas(off.state_like().opt_state) == ()
    n = len(jax.tree.leaves(off.state_like().params))
    assert len(jax.tree.leaves(on.state_like())) == len(leaves_off) + 2 * n + 1
