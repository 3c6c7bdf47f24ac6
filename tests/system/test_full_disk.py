"""A work directory on a disk that fills up, made as it happens: a small tmpfs (root only; skipped
where mounting is not allowed). Training stops with exit status 2 and one `error:` line naming the
step, the directory, the space and the checkpoint it will resume from; no library traceback
reaches the terminal; no half-written checkpoint is left; the snapshots written before stay
bit-identical. With room made, the same command resumes and ends exactly where an uninterrupted
run ends. Sampling and evaluation into a full disk are one line too, and leave no partial file."""

import os
import subprocess
import sys

import pytest

from tests.test_checkpoint_faults import (  # noqa: F401 (exp: the module's fixture)
    NOISE,
    _assert_equal,
    _flags,
    _listing,
    _restore,
    exp,
)
from tests.test_progress import LINE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = _flags(**{"training.n_iters": 40})


def _launch(workdir, *more):
    return subprocess.run(
        [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
         *FLAGS, *more],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip


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


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    for noise in NOISE:
        assert noise not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not LINE.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def _fill(disk, keep: int = 12 * 1024):
    """Writes a filler file until the disk is full, then gives back `keep` bytes (room for the
    work directory's write probe, not for the samples' files)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(disk / "filler", max(os.path.getsize(disk / "filler") - keep, 0))


@pytest.mark.slow
def test_a_disk_that_fills_up(small_disk, tmp_path, exp):  # noqa: F811
    reference = tmp_path / "reference"
    assert _launch(reference).returncode == 0  # the uninterrupted run, on a roomy disk

    run = small_disk / "run"
    line = _one_error_line(_launch(run))
    assert f"in {run} (No space left on device)" in line and "free there" in line, line
    assert "rerun the same command: it resumes from the newest checkpoint, " in line, line
    newest = line.split("resumes from the newest checkpoint, ")[1].split(";")[0]
    assert os.path.isdir(newest), line
    leftovers = [d for _, ds, _ in os.walk(run) for d in ds if "orbax-checkpoint-tmp" in d]
    assert leftovers == []  # no half-written checkpoint
    # what was written is intact: the named checkpoint is the uninterrupted run's, bit for bit
    step = int(os.path.basename(newest))
    state, used, warned = _restore(run, exp.state_like(), step)
    assert warned == [] and used == step
    if (reference / "checkpoints" / str(step)).is_dir():  # (a rolling one is not kept there)
        _assert_equal(state, _restore(reference, exp.state_like(), step)[0])
    snapshots = {d: _listing(run / "checkpoints" / d) for d in os.listdir(run / "checkpoints")}

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    resumed = _launch(run)  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {step} in {run}" in resumed.stdout
    final, last, _ = _restore(run, exp.state_like())
    assert last == 40
    _assert_equal(final, _restore(reference, exp.state_like())[0])  # = uninterrupted
    for d, listing in snapshots.items():  # the snapshots of before the failure: untouched
        assert _listing(run / "checkpoints" / d) == listing, d

    _fill(small_disk)  # and now sampling and evaluation into a full disk
    for mode in ("sample", "eval"):
        line = _one_error_line(_launch(run, f"--mode={mode}"))
        assert f"cannot write {run}/" in line and "(No space left on device)" in line, line
    partial = [f for _, _, fs in os.walk(run) for f in fs if ".tmp" in f]
    assert partial == []
    assert sorted(os.listdir(run / "checkpoints")) == ["10", "20", "30", "40"]
