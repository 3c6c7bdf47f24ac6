"""Faults as an operator causes them, through the real launcher: two runs on one work directory,
SIGTERM / SIGINT (exit status 128 + signal after the preemption save), a stale lock after SIGKILL,
and multi-process start-up and mid-run failures on localhost (2 processes x 2 faked devices), each
ending within its bound with one line.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from score_sde import parallel
from score_sde.store import checkpoint
from tests.helpers import REPO, assert_one_clear_line

TOY = [
    "--config=configs/toy/gmm.py",
    "--config.model.nf=16",
    "--config.model.num_layers=1",
    "--config.training.batch_size=16",
    "--config.training.n_jitted_steps=2",
    "--config.training.log_freq=2",
    "--config.training.snapshot_sampling=False",
    "--config.training.eval_after_training=False",
    "--config.training.eval_freq=1000000",
]


def _env(devices=4):
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",
    )


def _start(workdir, *args, devices=4):
    cmd = [sys.executable, "launch.py", *TOY, f"--workdir={workdir}", *args]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(workdir, *args, timeout=240, devices=4):
    p = _start(workdir, *args, devices=devices)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _wait_for(predicate, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _trained_steps(path):
    """Has metrics.jsonl recorded at least one progress line?"""
    return os.path.exists(path) and '"training_loss"' in open(path).read()


@pytest.mark.slow
def test_second_run_on_a_workdir_is_refused_and_a_stale_lock_reclaimed(tmp_path):
    run = tmp_path / "run"
    first = _start(
        run, "--config.training.n_iters=100000", "--config.training.snapshot_freq_for_preemption=2"
    )
    try:
        assert _wait_for(lambda: any((run / "checkpoints-meta").glob("[0-9]*"))), "no checkpoint"
        rc, out, err = _run(run, "--config.training.n_iters=100000", timeout=120)
        assert rc == 2, err[-2000:]
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err[-2000:]
        assert_one_clear_line(lines[0], "is in use by another run", f"pid {first.pid}", "--workdir")
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: its file stays, stale
        first.communicate()
    assert (run / "run.lock").exists()
    rc, out, err = _run(run, "--config.training.n_iters=40", timeout=240)
    assert rc == 0, err[-3000:]
    assert "resumed from step" in out  # the stale lock was reclaimed and the run resumed
    assert not (run / "run.lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_preemption_saves_and_exits_128_plus_signal(sig, status, tmp_path):
    run = tmp_path / "run"
    p = _start(run, "--config.training.n_iters=100000", "--config.training.snapshot_freq=1000000")
    assert _wait_for(lambda: _trained_steps(run / "metrics.jsonl"))
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == status, err[-3000:]
    name = signal.Signals(sig).name
    assert f"{name}: saved a preemption checkpoint at step" in out, out[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    step = int(out.split("preemption checkpoint at step ")[1].split(";")[0])
    with checkpoint.Checkpoints(str(run), read_only=True) as ckpts:
        assert ckpts.latest_step() == step
    rc, out, _ = _run(run, f"--config.training.n_iters={step + 4}")
    assert rc == 0 and f"resumed from step {step}" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _multi(workdir, process_id, port, *args):
    return _start(
        workdir,
        f"--coordinator=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={process_id}",
        *args,
        devices=2,
    )


@pytest.mark.slow
@pytest.mark.parametrize("process_id", [0, 1], ids=["no peer joins", "no coordinator"])
def test_multi_process_start_up_failure_ends_within_the_bound(process_id, tmp_path):
    port = _free_port()
    start = time.time()
    p = _multi(tmp_path / "run", process_id, port, "--init_timeout=5")
    out, err = p.communicate(timeout=120)
    elapsed = time.time() - start
    assert p.returncode == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    assert_one_clear_line(lines[0], f"127.0.0.1:{port}", "within 5 s", "--init_timeout")
    assert elapsed < 5 + 25, elapsed  # the bound plus interpreter start-up


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_at_a_snapshot_step(tmp_path):
    """Snapshots at every dispatch: the preemption is agreed after the step's snapshot, both
    processes exit 143 at once (no colliding save barriers), and resuming reproduces the
    uninterrupted run bit for bit."""
    common = ["--config.training.snapshot_freq=2", "--config.training.batch_size=16"]
    port = _free_port()
    procs = [_multi(tmp_path / "cut", i, port, "--config.training.n_iters=100000", *common)
             for i in (0, 1)]  # fmt: skip
    try:
        assert _wait_for(lambda: _trained_steps(tmp_path / "cut" / "metrics.jsonl"))
        procs[1].send_signal(signal.SIGTERM)
        start = time.time()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert time.time() - start < 30
    assert [p.returncode for p in procs] == [143, 143], [e[-1500:] for _, e in outs]
    step = int(outs[0][0].split("preemption checkpoint at step ")[1].split(";")[0])
    n = step + 4
    for name in ("cut", "straight"):  # resume the cut run; an uninterrupted one for reference
        port = _free_port()
        procs = [_multi(tmp_path / name, i, port, f"--config.training.n_iters={n}", *common)
                 for i in (0, 1)]  # fmt: skip
        outs = [p.communicate(timeout=240) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for _, e in outs]
        assert (f"resumed from step {step}" in outs[0][0]) == (name == "cut")
    like = _toy_state_like()
    states = []
    for name in ("cut", "straight"):
        with checkpoint.Checkpoints(str(tmp_path / name), read_only=True) as ckpts:
            states.append(parallel.to_host(ckpts.restore(like, n)))
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        np.testing.assert_array_equal(a, b)


def _toy_state_like():
    from score_sde import config
    from score_sde.run import experiment

    overrides = dict(a.removeprefix("--config.").split("=", 1) for a in TOY[1:])
    cfg = config.load(os.path.join(REPO, "configs", "toy", "gmm.py"), overrides)
    return experiment.build(cfg, parallel.make_mesh()).state_like()


@pytest.mark.slow
def test_a_peer_that_dies_mid_run_ends_the_other_within_the_heartbeat_bound(tmp_path):
    port = _free_port()
    args = ["--config.training.n_iters=1000000", "--heartbeat_timeout=10"]
    procs = [_multi(tmp_path / "run", i, port, *args) for i in (0, 1)]
    try:
        assert _wait_for(lambda: _trained_steps(tmp_path / "run" / "metrics.jsonl"))
        procs[1].send_signal(signal.SIGKILL)
        start = time.time()
        procs[0].communicate(timeout=120)
        elapsed = time.time() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode != 0
    assert elapsed < 10 + 20, elapsed  # the heartbeat bound plus detection slack
