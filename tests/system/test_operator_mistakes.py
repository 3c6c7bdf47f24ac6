"""Mistakes an operator makes around a work directory, made as the operator makes them (`mkdir
run.lock`, `ln -s`, a file where the directory should be), through the real `launch.py`: exit
status 2, one `error:` line naming the path and the fix, no traceback, and nothing under the
work directory created, changed or removed. (eval.lock and classifier/run.lock are the same
RunLock as run.lock.)"""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest

from score_sde.store import workdir as wd
from tests.helpers import ROOT, assert_refused, file_tree


def _lock_dir(run: pathlib.Path):
    (run / "run.lock").mkdir()


def _lock_dangling(run: pathlib.Path):
    (run / "run.lock").symlink_to(run / "gone" / "lock")


def _lock_link(run: pathlib.Path):
    (run / "elsewhere").write_text("")
    (run / "run.lock").symlink_to(run / "elsewhere")


def _workdir_file(run: pathlib.Path):
    for p in run.iterdir():
        p.unlink()
    run.rmdir()
    run.write_text("I am a file")


# (id, how the operator breaks the work directory, mode, what the one error line must contain)
CASES = [
    ("run.lock is a directory", _lock_dir, "train", ["the run lock {run}/run.lock is a directory", "rm -r {run}/run.lock"]),
    ("run.lock dangles", _lock_dangling, "train", ["{run}/run.lock is a dangling symbolic link (to {run}/gone/lock)"]),
    ("run.lock is a link", _lock_link, "train", ["{run}/run.lock is a symbolic link"]),
    ("workdir is a file (train)", _workdir_file, "train", ["--workdir {run} is a file, not a directory"]),
    ("workdir is a file (sample)", _workdir_file, "sample", ["--workdir {run} is a file, not a directory"]),
]  # fmt: skip


def _run(root: pathlib.Path, breaks, mode: str):
    run = root / "run"
    run.mkdir(parents=True)
    breaks(run)
    before = file_tree(root)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "--config=toy/gmm", f"--workdir={run}",
         f"--mode={mode}", "--config.training.n_iters=2"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return run, proc, before, file_tree(root)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("operator")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = {
            name: pool.submit(_run, root / str(i), breaks, mode)
            for i, (name, breaks, mode, _) in enumerate(CASES)
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, breaks, mode, needles", CASES, ids=[c[0] for c in CASES])
def test_one_line_and_nothing_changed(outcomes, name, breaks, mode, needles):
    run, proc, before, after = outcomes[name]
    assert_refused(proc, [n.replace("{run}", str(run)) for n in needles], before, after)


def test_a_lock_file_of_another_user_is_one_clear_line(tmp_path, monkeypatch):
    """open() refused (as for a run.lock another user owns, mode 0644: root is never refused, so
    the refusal is made here)."""
    (tmp_path / "run.lock").write_text("")

    def refuse(path, mode="r", *a, **k):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(wd, "open", refuse, raising=False)
    with pytest.raises(ValueError) as e:
        wd.RunLock(str(tmp_path)).acquire()
    lock = f"{tmp_path}/run.lock"
    assert str(e.value) == (
        f"cannot open the run lock {lock} (Permission denied); it may belong to another user: "
        f"check its owner (ls -l {lock}), or remove it (rm -r {lock}) if no run is using this "
        "work directory"
    )


def test_a_file_system_without_locks_is_said_once_and_the_run_goes_on(
    tmp_path, monkeypatch, capsys
):
    """flock refused as an NFS mount without lockd refuses it (ENOLCK): not "in use by another
    run", but one note, and the run proceeds without a lock."""
    import errno
    import fcntl

    def no_locks(f, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with wd.RunLock(str(tmp_path)):
        pass
    assert os.listdir(tmp_path) == []  # no lock file left behind
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"note: no run lock on {tmp_path}/run.lock: its file system has no working file locks "
        f"({os.strerror(errno.ENOLCK)}; an NFS mount without lockd?); make sure one run at a "
        "time uses this work directory"
    ]
