"""Storage an operator breaks around a run, made as it happens: a work directory remounted
read-only between runs, a work directory removed while training, and `prepare` writing onto a
full disk (a small tmpfs; root only, skipped where mounting is not allowed). Each ends with exit
status 2 and one `error:` line naming the path, no traceback, and every file written before
bit-identical; the read-only run resumes, once writable, to the uninterrupted result."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import (
    FULL_DISK_FLAGS,
    REPO,
    assert_trees_equal,
    cifar_archive,
    dir_listing,
    fill_disk,
    launch_tiny_run,
    one_error_line,
    prepare,
    restore_host,
    step_state,
)


def _mount(disk, size: str):
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs")


@pytest.fixture
def disk(tmp_path):
    """A 20 MiB tmpfs at tmp_path/disk."""
    d = tmp_path / "disk"
    _mount(d, "20m")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.slow
def test_a_read_only_work_directory_is_one_line_then_resumes(disk, tmp_path, tiny_exp):
    reference = tmp_path / "reference"
    assert launch_tiny_run(reference).returncode == 0  # 40 steps, uninterrupted
    run = disk / "run"
    first = launch_tiny_run(run, "--config.training.n_iters=20")
    assert first.returncode == 0, first.stderr[-3000:]
    before = dir_listing(run)

    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for mode in ("train", "sample"):
        line = one_error_line(launch_tiny_run(run, f"--mode={mode}"))
        assert str(run) in line and "Read-only file system" in line, line
    assert dir_listing(run) == before  # nothing written, nothing removed

    subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    resumed = launch_tiny_run(run)  # the same command, once the disk is writable
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step 20 in {run}" in resumed.stdout
    final, last, _ = restore_host(run, tiny_exp.state_like())
    assert last == 40
    assert_trees_equal(final, restore_host(reference, tiny_exp.state_like())[0])  # = uninterrupted
    for name, digest in before.items():
        if name.startswith("checkpoints/"):
            assert dir_listing(run)[name] == digest, name  # older snapshots: bit-identical


@pytest.mark.slow
def test_a_work_directory_removed_while_training_stops_with_one_line(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={run}",
            *FULL_DISK_FLAGS, "--config.training.n_iters=100000"]  # fmt: skip
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if (run / "checkpoints" / "10").is_dir():
            break
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()[1][-3000:]
    # The operator's `rm -rf` of the run under a live job, repeated until the path is gone: a file
    # the job writes between rmtree's listing and its rmdir fails one pass (as it fails `rm -rf`).
    for _ in range(100):
        shutil.rmtree(run, ignore_errors=True)
        if not run.exists():
            break
        time.sleep(0.01)
    assert not run.exists()
    try:
        out, err = child.communicate(timeout=240)
    finally:
        child.kill()
    proc = subprocess.CompletedProcess(argv, child.returncode, out, err)
    line = one_error_line(proc)
    assert str(run) in line and "vanished" in line, line
    assert not run.exists(), [str(p) for p in run.rglob("*")]  # not silently recreated half-empty


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "preemption slot"])
def test_a_work_directory_removed_as_a_save_starts_is_not_recreated(tmp_path, snapshot):
    """The `rm -rf` lands between the save's check of the work directory and orbax's write,
    which makes the path again (`mkdir -p` of its step): the save ends in the same one-line error
    and removes what it made. (The launcher test above hits this race only now and then.)"""
    from score_sde.store import checkpoint

    workdir = tmp_path / "run"
    with checkpoint.Checkpoints(str(workdir)) as ckpts:
        ckpts.save(10, step_state(10), snapshot=True)
        manager = ckpts.snapshots if snapshot else ckpts.preemption
        save = manager.save

        def removed_first(*args, **kwargs):
            shutil.rmtree(workdir)
            return save(*args, **kwargs)

        manager.save = removed_first
        with pytest.raises(checkpoint.StorageError) as info:
            ckpts.save(20, step_state(20), snapshot=snapshot)
        manager.save = save
    assert str(info.value).startswith(f"the work directory {workdir} vanished"), info.value
    assert "step 20 was not saved" in str(info.value)
    assert not workdir.exists()


def test_a_full_disk_before_the_first_checkpoint_is_one_storage_error(disk):
    """No finished checkpoint yet to name or to size: the error says the run resumes from the
    start (it used to end in a TypeError sizing the missing newest checkpoint)."""
    from score_sde.store import checkpoint

    workdir = disk / "run"
    with checkpoint.Checkpoints(str(workdir)) as ckpts:
        fill_disk(disk)
        with pytest.raises(checkpoint.StorageError) as info:
            ckpts.save(10, step_state(10), snapshot=True)
    line = str(info.value)  # names the step when orbax's error names its file, else "a checkpoint"
    assert line.startswith("cannot write ") and f" in {workdir} (" in line, line
    assert "it resumes from the start (no checkpoint yet)" in line, line
    assert os.listdir(workdir / "checkpoints") == []  # the partial step directory is removed


def test_prepare_onto_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path):
    d = tmp_path / "disk"
    _mount(d, "700k")
    try:
        cifar_archive(tmp_path / "small.tar.gz", per_batch=3)
        cifar_archive(tmp_path / "big.tar.gz", per_batch=40, seed=1)  # ~600 KiB of images
        out = d / "cifar10.npz"
        rc, _, err = prepare("cifar10", "--source", str(tmp_path / "small.tar.gz"),
                              "--out", str(out))  # fmt: skip
        assert rc == 0, err
        old = out.read_bytes()
        fill_disk(d)
        rc, stdout, err = prepare("cifar10", "--source", str(tmp_path / "big.tar.gz"),
                                   "--out", str(out))  # fmt: skip
        proc = subprocess.CompletedProcess([], rc, stdout, err)
        line = one_error_line(proc)
        assert f"cannot write --out {out} (No space left on device): it needs" in line, line
        assert "free there" in line and "nothing was written" in line, line
        assert out.read_bytes() == old  # the previous dataset file is intact
        assert sorted(os.listdir(d)) == ["cifar10.npz", "filler"]  # no partial file beside it
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_quota_reached_mid_save_is_one_storage_error_naming_the_newest_checkpoint(tmp_path):
    """A quota cannot be set up on the test machine: a fake write that fails with EDQUOT, as
    the file system would report it, stands in for it."""
    import errno

    import jax.numpy as jnp

    from score_sde.store import checkpoint

    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        ckpts.save(10, {"w": jnp.ones(3)}, snapshot=True)
        path = str(tmp_path / "checkpoints" / "20")

        def over_quota(*args, **kwargs):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), path)

        ckpts.snapshots.save = over_quota
        with pytest.raises(checkpoint.StorageError) as info:
            ckpts.save(20, {"w": jnp.ones(3)}, snapshot=True)
    message = str(info.value)
    assert "\n" not in message and "Disk quota exceeded" in message, message
    assert str(tmp_path / "checkpoints" / "10") in message, message  # where it will resume from
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]
