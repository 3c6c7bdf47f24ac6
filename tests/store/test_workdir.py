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
