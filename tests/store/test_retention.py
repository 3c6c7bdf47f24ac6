"""Keep-last-N retention (`config.training.keep_checkpoints`): after each successful snapshot the
snapshots older than the newest N honest ones (written by this run, or restored and verified by
it) are deleted; nothing is deleted until N honest ones exist, so the only honest checkpoint is
never deleted; damaged, misnamed and copied-in checkpoints are left for the operator."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from score_sde import config
from score_sde.store import checkpoint
from tests.helpers import REPO, step_state, tiny_flags


def _snapshots(workdir) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def test_keeps_the_newest_n_written(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        removed = []
        for step in (10, 20, 30, 40):
            ckpts.save(step, step_state(step), snapshot=True)
            removed += ckpts.retain(2)
        assert _snapshots(tmp_path) == [30, 40]
        root = os.path.join(str(tmp_path), "checkpoints")
        assert removed == [os.path.join(root, "10"), os.path.join(root, "20")]
        assert ckpts.retain(0) == []  # 0 keeps everything
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        np.testing.assert_array_equal(ckpts.restore(step_state(0)).w, np.full((2, 3), 40.0))


def test_never_deletes_the_only_honest_checkpoint(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        ckpts.save(10, step_state(10), snapshot=True)
    root = tmp_path / "checkpoints"
    shutil.copytree(root / "10", root / "50")  # `cp -r`: its name lies about its step
    with checkpoint.Checkpoints(str(tmp_path), warn=lambda line: None) as ckpts:
        state = ckpts.restore(step_state(0))  # skips 50 (misnamed), restores and verifies 10
        assert int(state.step) == 10 and ckpts.last_restored_step == 10
        assert ckpts.retain(1) == []  # 10 is the only honest one: kept
        assert _snapshots(tmp_path) == [10, 50]
        ckpts.save(20, step_state(20), snapshot=True)
        assert ckpts.retain(1) == [str(root / "10")]  # 20 is honest now; 10 may go
        assert _snapshots(tmp_path) == [20, 50]  # the misnamed 50 is left alone
    with checkpoint.Checkpoints(str(tmp_path), warn=lambda line: None) as ckpts:
        assert int(ckpts.restore(step_state(0)).step) == 20  # the newest honest one survived


def test_a_damaged_newest_is_not_counted(tmp_path):
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        for step in (10, 20):
            ckpts.save(step, step_state(step), snapshot=True)
    newest = tmp_path / "checkpoints" / "20"
    for dirpath, _, files in os.walk(newest):  # truncate every array file of step 20
        for f in files:
            if not f.endswith(".json") and "_METADATA" not in f:
                open(os.path.join(dirpath, f), "r+b").truncate(3)
    with checkpoint.Checkpoints(str(tmp_path), warn=lambda line: None) as ckpts:
        assert int(ckpts.restore(step_state(0)).step) == 10
        assert ckpts.retain(1) == [] and _snapshots(tmp_path) == [10, 20]
        ckpts.save(30, step_state(30), snapshot=True)
        assert ckpts.retain(1) == [str(tmp_path / "checkpoints" / "10")]
        assert _snapshots(tmp_path) == [20, 30]  # damaged 20 stays for the operator


def test_negative_keep_is_refused_at_the_config_boundary():
    with pytest.raises(ValueError) as info:
        config.load("toy/gmm", {"training.keep_checkpoints": "-1"})
    assert str(info.value) == (
        "config.training.keep_checkpoints (-1) must be >= 0 (0 keeps every snapshot)"
    )


@pytest.mark.slow
def test_launcher_keeps_the_last_two_and_says_what_it_deleted(tmp_path):
    run = tmp_path / "run"
    flags = tiny_flags()
    proc = subprocess.run(
        [sys.executable, "launch.py", "--config=toy/gmm", f"--workdir={run}", *flags,
         "--config.training.keep_checkpoints=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _snapshots(run) == [20, 24]  # of 10, 20, 24
    deleted = os.path.join(str(run), "checkpoints", "10")
    assert f"deleted {deleted} (config.training.keep_checkpoints = 2)" in proc.stdout + proc.stderr
