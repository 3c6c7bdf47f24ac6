"""The work directory's run lock (score_sde.store.workdir.RunLock) in one process: a second lock
on a held directory is one clear error naming the holder, and a clean exit hands it on. Through the
launcher (two runs, a stale lock after SIGKILL): tests/system/test_faults.py."""

import os

import pytest

from score_sde.store import workdir
from tests.helpers import assert_one_clear_line


def test_lock_in_process():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with workdir.RunLock(d):
            with pytest.raises(ValueError) as info:
                workdir.RunLock(d).acquire()
            assert_one_clear_line(str(info.value), "is in use by another run", f"pid {os.getpid()}")
        assert not os.path.exists(os.path.join(d, "run.lock"))  # a clean exit removes it
        with workdir.RunLock(d):  # and the next run takes it
            pass


def test_a_checkpoints_link_into_another_work_directory_is_refused(tmp_path):
    """Into another work directory (a folder beside its config.json): one line naming it; to a
    folder of no work directory (checkpoints on a bigger disk) or inside this one: fine."""
    a, b, disk = tmp_path / "a", tmp_path / "b", tmp_path / "disk"
    for d in (a / "checkpoints", b, disk / "ckpts"):
        d.mkdir(parents=True)
    (a / "config.json").write_text("{}")
    (b / "checkpoints").symlink_to(a / "checkpoints")
    with pytest.raises(ValueError) as info:
        workdir.refuse_shared_folders(str(b), ("checkpoints", "checkpoints-meta"))
    assert_one_clear_line(
        str(info.value), f"{b}/checkpoints is a symbolic link to {a}/checkpoints", f"--workdir={a}"
    )
    (b / "checkpoints").unlink()
    (b / "checkpoints").symlink_to(disk / "ckpts")
    (b / "checkpoints-meta").symlink_to(b / "checkpoints")
    workdir.refuse_shared_folders(str(b), ("checkpoints", "checkpoints-meta"))
