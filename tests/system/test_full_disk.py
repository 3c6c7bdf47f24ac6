"""A work directory on a disk that fills up, made as it happens: a small tmpfs (root only; skipped
where mounting is not allowed). Training stops with exit status 2 and one `error:` line naming the
step, the directory, the space and the checkpoint it will resume from; no library traceback
reaches the terminal; no half-written checkpoint is left; the snapshots written before stay
bit-identical. With room made, the same command resumes and ends exactly where an uninterrupted
run ends. Sampling and evaluation into a full disk are one line too, and leave no partial file."""

import os
import subprocess

import pytest

from tests.helpers import (
    assert_trees_equal,
    dir_listing,
    fill_disk,
    launch_tiny_run,
    one_error_line,
    restore_host,
)


@pytest.fixture
def small_disk(tmp_path):
    """A 700 KiB tmpfs at tmp_path/disk (a checkpoint of the tiny run is ~200 KiB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_disk_that_fills_up(small_disk, tmp_path, tiny_exp):
    reference = tmp_path / "reference"
    assert launch_tiny_run(reference).returncode == 0  # the uninterrupted run, on a roomy disk

    run = small_disk / "run"
    line = one_error_line(launch_tiny_run(run))
    assert f"in {run} (No space left on device)" in line and "free there" in line, line
    assert "rerun the same command: it resumes from the newest checkpoint, " in line, line
    newest = line.split("resumes from the newest checkpoint, ")[1].split(";")[0]
    assert os.path.isdir(newest), line
    leftovers = [d for _, ds, _ in os.walk(run) for d in ds if "orbax-checkpoint-tmp" in d]
    assert leftovers == []  # no half-written checkpoint
    # what was written is intact: the named checkpoint is the uninterrupted run's, bit for bit
    step = int(os.path.basename(newest))
    state, used, warned = restore_host(run, tiny_exp.state_like(), step)
    assert warned == [] and used == step
    if (reference / "checkpoints" / str(step)).is_dir():  # (a rolling one is not kept there)
        assert_trees_equal(state, restore_host(reference, tiny_exp.state_like(), step)[0])
    snapshots = {d: dir_listing(run / "checkpoints" / d) for d in os.listdir(run / "checkpoints")}

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    resumed = launch_tiny_run(run)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {step} in {run}" in resumed.stdout
    final, last, _ = restore_host(run, tiny_exp.state_like())
    assert last == 40
    assert_trees_equal(final, restore_host(reference, tiny_exp.state_like())[0])  # = uninterrupted
    for d, listing in snapshots.items():  # the snapshots of before the failure: untouched
        assert dir_listing(run / "checkpoints" / d) == listing, d

    fill_disk(small_disk)  # and now sampling and evaluation into a full disk
    for mode in ("sample", "eval"):
        line = one_error_line(launch_tiny_run(run, f"--mode={mode}"))
        assert f"cannot write {run}/" in line and "(No space left on device)" in line, line
    partial = [f for _, _, fs in os.walk(run) for f in fs if ".tmp" in f]
    assert partial == []
    assert sorted(os.listdir(run / "checkpoints")) == ["10", "20", "30", "40"]
