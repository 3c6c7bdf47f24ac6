"""Signals at awkward moments and a process or clock that misbehaves (issue 37, Faults), through
the real launcher: one row per case.

Each row runs `launch.py` in a child through a small wrapper script that patches the function of
the awkward moment (a save starting, orbax writing, a sampling round, the wall clock) and then
calls score_sde.cli.main. The row asserts the exit status and the line that says why, no
traceback or noise, no partial file that a later run trusts, and then finishes with the plain
launcher: the resumed checkpoints are bit-identical to an uninterrupted run's (the session's tiny
checkpointed run, tests/conftest.py `tiny_run`), or equal to float round-off when the device count
changed between runs. A progress record never shows a negative or absurd rate (a monotonic clock).
The out-of-memory line for every backend's wording (XLA:GPU, XLA:CPU, the host) is checked without
a launch.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import numpy as np
import pytest

from score_sde.store import checkpoint
from tests.helpers import NOISE, REPO, one_error_line, restore_host, tiny_flags

# What every wrapper can use: helpers that run `action` at one moment of the run.
PRELUDE = """
import os, signal, subprocess, sys, time
sys.path.insert(0, {repo!r})


def kill(sig):
    os.kill(os.getpid(), sig)


def term():
    kill(signal.SIGTERM)


def after_dispatch(step, action):
    # after the training dispatch that ends at `step` (before its checkpoint)
    from score_sde.run import experiment

    make = experiment.Experiment.train_steps

    def train_steps(self):
        inner = make(self)

        def steps(state, batches):
            out = inner(state, batches)
            if int(out[0].step) == step:
                action()
            return out

        return steps

    experiment.Experiment.train_steps = train_steps


def as_save_starts(step, action):
    from score_sde.store.checkpoint import _manager

    save = _manager.Checkpoints.save

    def patched(self, at, state, *, snapshot):
        if at == step:
            action()
        return save(self, at, state, snapshot=snapshot)

    _manager.Checkpoints.save = patched


def while_orbax_saves(step, action):
    import orbax.checkpoint as ocp

    save = ocp.CheckpointManager.save

    def patched(self, at, *a, **k):
        if at == step:
            action()
        return save(self, at, *a, **k)

    ocp.CheckpointManager.save = patched


def before_commit(step, action):
    # every file of the step is written, its directory not yet renamed into place
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def patched(self):
        if self.get_final().name == str(step):
            action()
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = patched


def as_checkpoints_close(action):
    from score_sde.store.checkpoint import _manager

    close = _manager.Checkpoints.close

    def patched(self):
        if not self.read_only:
            action()
        return close(self)

    _manager.Checkpoints.close = patched


def after_round(i, action):
    # after sampling round i was drawn
    from score_sde.run import experiment

    draw = experiment.Experiment.draw

    def patched(self, *a, **k):
        for j, out in enumerate(draw(self, *a, **k)):
            if j == i:
                action()
            yield out

    experiment.Experiment.draw = patched


def as_written(suffix, action):
    from score_sde.store import fs

    write = fs.write_bytes

    def patched(p, data):
        if str(p).endswith(suffix):
            action()
        return write(p, data)

    fs.write_bytes = patched
"""

STOP_AND_CONTINUE = """
def stop_and_continue():
    subprocess.Popen(["sh", "-c", f"sleep 2; kill -CONT {os.getpid()}"])
    kill(signal.SIGSTOP)

after_dispatch(6, stop_and_continue)
"""

CLOCK = """
real, offset = time.time, [0.0]
time.time = lambda: real() + offset[0]
after_dispatch(6, lambda: offset.__setitem__(0, -3600.0))  # an hour back
after_dispatch(14, lambda: offset.__setitem__(0, 10 * 365 * 86400.0))  # ten years forward
"""

OOM = """
import jax
from score_sde.run import experiment

def out_of_memory(state, batches):
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")

experiment.Experiment.train_steps = lambda self: out_of_memory
"""

SAMPLE = ["--mode=sample", "--config.sampling.num_samples=1024", "--config.sampling.batch_size=256"]
LOGS = ["--config.training.log_freq=2"]  # rates to look at


class Case(NamedTuple):
    patch: str  # wrapper code run before the launcher (PRELUDE's helpers)
    status: int  # the child's exit status (-9: killed by SIGKILL)
    says: str  # a line of its output (stdout and stderr)
    left: int | None = None  # the newest checkpoint it leaves (None: none)
    flags: tuple = ()  # more flags than tiny_flags()
    start: str = "empty"  # the work directory: empty | trained (tiny_run) | 2 devices (12 steps)
    devices: int = 4
    resumes: str = ""  # what the plain rerun to 24 steps says ("" no rerun)


CASES = {
    "SIGTERM as a save starts": Case(
        "as_save_starts(8, term)", 143, "SIGTERM: preempted at step 8", 8,
        resumes="resumed from step 8"),
    "SIGTERM while orbax writes a snapshot": Case(
        "while_orbax_saves(10, term)", 143, "SIGTERM: preempted at step 10", 10,
        resumes="resumed from step 10"),
    "SIGTERM twice, the second during the preemption save": Case(
        "after_dispatch(14, term); while_orbax_saves(14, term)", 143,
        "SIGTERM: preempted at step 14", 14, resumes="resumed from step 14"),
    "SIGTERM twice, the second as the run closes after its save": Case(
        "as_save_starts(8, term); as_checkpoints_close(term)", 143,
        "SIGTERM: saved a preemption checkpoint at step 8", 8),
    "SIGKILL before the very first save commits": Case(
        "before_commit(4, lambda: kill(signal.SIGKILL))", -9, "training: 0/24 step", None,
        resumes="new run in"),
    "SIGSTOP, then SIGCONT 2 s later": Case(
        STOP_AND_CONTINUE, 0, "step 24: eval loss", 24, flags=tuple(LOGS)),
    "wall clock an hour back, then ten years forward": Case(
        CLOCK, 0, "step 24: eval loss", 24, flags=tuple(LOGS)),
    "out of memory at the first step (XLA RESOURCE_EXHAUSTED)": Case(
        OOM, 2, "error: out of memory on 4 cpu device(s) (Out of memory while trying to allocate "
        "17179869184 bytes) with config.training.batch_size = 16 (4 per device); lower it, e.g. "
        "--config.training.batch_size=8"),
    "trained on 2 devices, resumed on 1": Case(
        "", 0, "resumed from step 12", 24, start="2 devices", devices=1),
    "SIGTERM during sampling": Case(
        "after_round(1, term)", 143, "interrupted (SIGTERM): sample stopped", 24,
        flags=tuple(SAMPLE), start="trained", resumes="1024 samples from checkpoint 24"),
    "SIGTERM as the sample picture is written": Case(
        "as_written('.png', term)", 143, "interrupted (SIGTERM): sample stopped", 24,
        flags=tuple(SAMPLE), start="trained"),
    "SIGKILL as the sample npz (written after its picture) is written": Case(
        "as_written('.npz', lambda: kill(signal.SIGKILL))", -9, "sampling pc", 24,
        flags=tuple(SAMPLE), start="trained", resumes="1024 samples from checkpoint 24"),
}  # fmt: skip


def _env(devices: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}  # fmt: skip


def _launch(workdir, *flags, devices=4, script=None):
    """launch.py (or `script`, a wrapper) on the tiny checkpointed run's flags, then `flags`."""
    entry = [str(script)] if script else ["launch.py"]
    return subprocess.run(
        [sys.executable, *entry, "--config=configs/toy/gmm.py", f"--workdir={workdir}",
         *tiny_flags(), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_env(devices),
    )  # fmt: skip


def _wrapper(path, patch: str):
    path.write_text(
        PRELUDE.format(repo=REPO)
        + textwrap.dedent(patch)
        + '\nfrom score_sde import cli\ncli.main(["launch.py", *sys.argv[1:]])\n'
    )
    return path


@pytest.fixture(scope="module")
def on_two_devices(tmp_path_factory):
    """The tiny checkpointed run's first 12 steps, trained on 2 devices through the launcher."""
    workdir = tmp_path_factory.mktemp("two_devices") / "run"
    done = _launch(workdir, "--config.training.n_iters=12", devices=2)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _leftovers(workdir) -> list[str]:
    """Half-written things: orbax's temporary step directories, our .tmp<pid> files."""
    return [os.path.relpath(os.path.join(root, name), workdir)
            for root, dirs, files in os.walk(workdir) for name in dirs + files
            if "orbax-checkpoint-tmp" in name or re.search(r"\.tmp\d+$", name)]  # fmt: skip


def _assert_rates_sane(workdir, stdout: str) -> None:
    """Every logged rate is positive and not absurd; every ETA under a day."""
    from score_sde.store import metrics_log

    for row in metrics_log.read(str(workdir)) or []:
        if "steps_per_sec" in row:
            assert 0 < row["steps_per_sec"] < 1e6, row
    for hours in re.findall(r"ETA (\d+):\d\d:\d\d", stdout):
        assert int(hours) < 24, stdout[-3000:]


def _sample_files(workdir) -> list[str]:
    d = workdir / "samples"
    return sorted(os.listdir(d)) if d.exists() else []


def _assert_resumed_equals_uninterrupted(workdir, reference, like, exact: bool) -> None:
    for step in (10, 20, 24):
        got, used, _ = restore_host(workdir, like, step)
        want, _, _ = restore_host(reference, like, step)
        assert used == step
        if exact:  # the same devices: bit for bit
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_array_equal(a, b)
        else:  # another device count: the same run to float round-off
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, tiny_run, tiny_exp, request, tmp_path):
    case = CASES[name]
    workdir = tmp_path / "run"
    if case.start == "trained":
        shutil.copytree(tiny_run, workdir)
    elif case.start == "2 devices":
        shutil.copytree(request.getfixturevalue("on_two_devices"), workdir)
    sampling = "--mode=sample" in case.flags

    script = _wrapper(tmp_path / "wrapper.py", case.patch)
    got = _launch(workdir, *case.flags, devices=case.devices, script=script)

    assert got.returncode == case.status, (got.returncode, got.stderr[-3000:])
    for noise in NOISE:
        assert noise not in got.stderr, got.stderr[-3000:]
    assert case.says in got.stdout + got.stderr, (got.stdout[-2000:], got.stderr[-2000:])
    if case.status == 2:  # refused in one line, and no work directory left behind
        line = one_error_line(got)
        assert line.startswith("error: out of memory on ") and case.says in line, line
        assert not workdir.exists(), sorted(os.listdir(workdir))
        return
    if case.status != -9:  # SIGKILL leaves what it leaves; the rerun must not trust it
        assert not _leftovers(workdir), _leftovers(workdir)
    with checkpoint.Checkpoints(str(workdir), read_only=True) as ckpts:
        assert ckpts.latest_step() == case.left  # a half-written step is never listed
    if sampling:
        left = _sample_files(workdir)  # no npz, no temporary file; a png only after SIGKILL
        assert left == [] or (case.status == -9 and [f[-4:] for f in left] == [".png"]), left
        if case.resumes:  # an npz is the mark of finished samples: the rerun is not refused
            again = _launch(workdir, *case.flags)
            assert again.returncode == 0, again.stderr[-3000:]
            assert case.resumes in again.stdout, again.stdout[-3000:]
            assert [f.rsplit(".", 1)[1] for f in _sample_files(workdir)] == ["npz", "png"]
        return
    if case.resumes:
        got = _launch(workdir)
        assert got.returncode == 0, got.stderr[-3000:]
        assert case.resumes in got.stdout, got.stdout[-3000:]
        assert not _leftovers(workdir), _leftovers(workdir)
    elif got.returncode != 0:  # stopped, and resumed as the rows above resume
        return
    _assert_rates_sane(workdir, got.stdout)
    exact = case.devices == 4 and case.start != "2 devices"
    _assert_resumed_equals_uninterrupted(workdir, tiny_run, tiny_exp.state_like(), exact)


@pytest.mark.parametrize(
    "error, mode, says",
    [
        (jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                                    "1.50GiB."), "train",
         "(Out of memory while trying to allocate 1.50GiB) with config.training.batch_size = 16"),
        (jax.errors.JaxRuntimeError("INTERNAL: Error dispatching computation: Out of memory "
                                    "allocating 4865393528 bytes."), "sample",  # XLA:CPU's
         "(Out of memory allocating 4865393528 bytes) with config.sampling.batch_size = 16"),
        (MemoryError("Unable to allocate 12.0 GiB for an array"), "eval",
         "on the host (Unable to allocate 12.0 GiB for an array) with config.eval.batch_size"),
        (jax.errors.JaxRuntimeError("INTERNAL: something else"), "train", None),
        (RuntimeError("out of memory"), "train", None),
    ],
)  # fmt: skip
def test_out_of_memory_of_any_backend_is_one_line_naming_the_batch(error, mode, says):
    from score_sde import cli
    from score_sde.config import from_config
    from tests.helpers import tiny_config

    line = cli._out_of_memory(error, from_config(tiny_config()), mode)
    if says is None:
        assert line is None  # not a memory error: raised as it is
    else:
        assert line.startswith("out of memory on ") and says in line, line
        assert "\n" not in line and ", e.g. --config." in line
