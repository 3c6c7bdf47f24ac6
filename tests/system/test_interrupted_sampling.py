"""A sample run stopped in the middle, as an operator stops it (SIGKILL, Ctrl-C = SIGINT), through
the real launcher: nothing partial is left in samples/ (the files are written once, atomically, at
the end), Ctrl-C exits 130 with one line, and the same command then writes exactly the samples of
an uninterrupted run (the keys are a function of the checkpoint's step). Interrupted eval rounds:
tests/evaluation/test_eval_fid.py (SIGKILL, and Ctrl-C through the launcher)."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import (
    PROGRESS_LINE,
    RATE_LINE,
    REPO,
    popen_as_a_script_starts_it,
    tiny_flags,
)

# 32 rounds of 256 points: long enough to be stopped after the first
SAMPLE = ["--mode=sample", "--config.sampling.num_samples=8192", "--config.sampling.batch_size=256"]


def _command(workdir):
    return [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
            *tiny_flags(), *SAMPLE]  # fmt: skip


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def _samples(workdir) -> dict[str, np.ndarray]:
    (npz,) = [f for f in os.listdir(workdir / "samples") if f.endswith(".npz")]
    with np.load(workdir / "samples" / npz) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_stopped_sample_run_leaves_nothing_and_reruns_to_the_same_samples(
    signum,
    tiny_run,
    tmp_path,
):
    reference, workdir = tmp_path / "reference", tmp_path / "run"
    shutil.copytree(tiny_run, reference)
    shutil.copytree(tiny_run, workdir)
    done = subprocess.run(_command(reference), cwd=REPO, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]

    child = popen_as_a_script_starts_it(_command(workdir), cwd=REPO, env=_env(), text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    seen = []
    for line in child.stderr:  # the first progress line: sampling is under way
        seen.append(line)
        if RATE_LINE.match(line.strip()):
            break
    assert child.poll() is None, "".join(seen)[-3000:]
    child.send_signal(signum)
    rest = child.communicate(timeout=120)[1]
    if signum == signal.SIGINT:
        assert child.returncode == 130, rest[-3000:]
        lines = [ln for ln in rest.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]
        assert lines == [
            (
                "interrupted (SIGINT): sample stopped; nothing partial was written, and the same command "
                "resumes from what was finished"
            )
        ], rest[-3000:]
    else:
        assert child.returncode == -signal.SIGKILL
    assert not (workdir / "samples").exists() or os.listdir(workdir / "samples") == []

    again = subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr[-3000:]
    ours, uninterrupted = _samples(workdir), _samples(reference)
    assert ours.keys() == uninterrupted.keys() and len(ours["samples"]) == 8192
    for k in ours:
        np.testing.assert_array_equal(ours[k], uninterrupted[k])
