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
    workdir.refuse_shared_folders(str(b), ("checkpoints", "checkpoints-meta"))  # b again: fine


def test_two_work_directories_linking_to_one_folder_elsewhere_are_refused(tmp_path):
    """Both checkpoints/ linked to one folder on another disk: the second is refused in one line
    naming the first; once the first no longer links there (moved away), the folder is free."""
    a, b, disk = tmp_path / "a", tmp_path / "b", tmp_path / "disk" / "ckpts"
    for d in (a, b, disk):
        d.mkdir(parents=True)
    (disk / "10").mkdir()  # a's checkpoint
    for run in (a, b):
        (run / "checkpoints").symlink_to(disk)
    workdir.refuse_shared_folders(str(a), ("checkpoints",))
    with pytest.raises(ValueError) as info:
        workdir.refuse_shared_folders(str(b), ("checkpoints",))
    assert_one_clear_line(
        str(info.value),
        f"{b}/checkpoints and {a}/checkpoints are symbolic links to the same folder {disk}",
        f"--workdir={a}",
    )
    assert sorted(os.listdir(disk)) == [workdir.LINK_OWNER, "10"]  # nothing else touched
    a.rename(tmp_path / "a moved")  # the first run moved: its old path links nowhere
    workdir.refuse_shared_folders(str(b), ("checkpoints",))
    assert (disk / workdir.LINK_OWNER).read_text().strip() == str(b)
