"""Pod shape on CPU with the work directory in a bucket (the GCS emulator): 4 processes x 2
devices against 1 process x 8 devices, then a resume on another topology (1 process x 4 devices),
as a pod user does when a slice size changes.

Cross-process reductions go through gloo, whose summation order differs from one process's: the
parameters agree to float round-off, not bit for bit (the largest difference is printed)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.toy import gmm
from score_sde import parallel
from score_sde.config import from_config
from score_sde.run import experiment
from score_sde.store import checkpoint, metrics_log
from tests.gcs import free_port
from tests.helpers import REPO

FLAGS = {
    "data.dataset": "npz",
    "training.n_jitted_steps": 2,
    "training.batch_size": 16,
    "training.snapshot_freq": 2,
    "training.snapshot_freq_for_preemption": 1000,
    "training.log_freq": 2,
    "training.eval_freq": 1000,
    "training.snapshot_sampling": False,
    "training.eval_after_training": False,
    "model.nf": 16,
    "model.num_layers": 1,
}


def _cmd(workdir: str, data: str, n_iters: int) -> list[str]:
    flags = {**FLAGS, "data.path": data, "training.n_iters": n_iters}
    return [
        sys.executable,
        "launch.py",
        "--config",
        "configs/toy/gmm.py",
        f"--workdir={workdir}",
    ] + [f"--config.{k}={v}" for k, v in flags.items()]


def _env(devices: int) -> dict:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }


def _launch(cmd: list[str], processes: int, devices: int) -> list[str]:
    """Runs `cmd` as `processes` processes of `devices` devices each; their stdouts."""
    extra = [[]]
    if processes > 1:
        coord = f"--coordinator=127.0.0.1:{free_port()}"
        extra = [
            [coord, f"--num_processes={processes}", f"--process_id={i}"] for i in range(processes)
        ]
    procs = [
        subprocess.Popen(
            cmd + e,
            cwd=REPO,
            env=_env(devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for e in extra
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def _params(workdir: str, step: int, like):
    with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
        return jax.tree.leaves(parallel.to_host(ckpts.restore(like, step).params))


def _max_diff(a, b) -> float:
    assert len(a) == len(b) > 5
    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b, strict=True)
    )


@pytest.mark.slow
def test_four_processes_on_a_bucket_match_one_process_and_resume_on_another_topology(
    tmp_path, bucket
):
    from score_sde.data import toy_data

    data = str(tmp_path / "points.npz")
    pts = np.asarray(toy_data.sample_toy("gmm", jax.random.key(0), 600))
    np.savez(data, x_train=pts[:500], x_test=pts[500:])
    single, pod = str(tmp_path / "single"), f"{bucket}/pod"

    _launch(_cmd(single, data, 10), 1, 8)  # uninterrupted: 10 steps on 1 x 8
    outs = _launch(_cmd(pod, data, 6), 4, 2)  # 6 steps on 4 x 2, in the bucket
    assert "process 0/4, 2 local / 8 global" in outs[0]
    resumed = _launch(_cmd(pod, data, 10), 1, 4)  # the slice shrank: 1 x 4 continues to 10
    assert "resumed from step 6" in resumed[0]

    config = gmm.get_config()
    config.model.nf, config.model.num_layers, config.training.batch_size = 16, 1, 16
    like = experiment.build(from_config(config), parallel.make_mesh()).state_like()
    at6 = _max_diff(_params(single, 6, like), _params(pod, 6, like))
    at10 = _max_diff(_params(single, 10, like), _params(pod, 10, like))
    print(
        f"largest parameter difference: 4x2 vs 1x8 at step 6 {at6:.3g}; resumed on 1x4 at 10 {at10:.3g}"
    )
    assert at6 < 1e-5 and at10 < 1e-5
    # the same data order: the logged losses agree step by step, each step logged once
    rows = {w: [r for r in metrics_log.read(w) if "training_loss" in r] for w in (single, pod)}
    assert [r["step"] for r in rows[pod]] == [r["step"] for r in rows[single]] == [2, 4, 6, 8, 10]
    np.testing.assert_allclose(
        [r["training_loss"] for r in rows[pod]],
        [r["training_loss"] for r in rows[single]],
        rtol=1e-5,
    )


@pytest.mark.slow
def test_a_killed_process_of_four_ends_them_all_and_the_same_command_resumes(tmp_path, bucket):
    """SIGKILL of process 3 of a 4 x 2 run on a bucket: the others end within the heartbeat
    bound (10 s here), and the same command resumes to the uninterrupted run's parameters."""
    import signal
    import time

    from score_sde.data import toy_data

    data = str(tmp_path / "points.npz")
    pts = np.asarray(toy_data.sample_toy("gmm", jax.random.key(0), 600))
    np.savez(data, x_train=pts[:500], x_test=pts[500:])
    n, single, pod = 200, str(tmp_path / "single"), f"{bucket}/pod"
    cmd = _cmd(pod, data, n) + ["--config.training.snapshot_freq=50", "--heartbeat_timeout=10"]
    coord = f"--coordinator=127.0.0.1:{free_port()}"
    procs = [
        subprocess.Popen(
            cmd + [coord, "--num_processes=4", f"--process_id={i}"],
            cwd=REPO,
            env=_env(2),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(4)
    ]
    try:
        deadline = time.monotonic() + 300
        while max((r["step"] for r in metrics_log.read(pod) or []), default=0) < 52:  # saved 50
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.2)
        procs[3].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for p in procs[:3]:
            p.wait(timeout=120)
        elapsed = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode != 0 for p in procs[:3]) and elapsed < 10 + 20, elapsed
    with checkpoint.Checkpoints(pod, read_only=True) as ckpts:
        partial = ckpts.latest_step()
    assert partial is not None and 50 <= partial < n  # killed mid-run, after a snapshot

    outs = _launch(cmd, 4, 2)  # the same command
    assert f"resumed from step {partial}" in outs[0]
    _launch(_cmd(single, data, n) + ["--config.training.snapshot_freq=50"], 1, 8)
    config = gmm.get_config()
    config.model.nf, config.model.num_layers, config.training.batch_size = 16, 1, 16
    like = experiment.build(from_config(config), parallel.make_mesh()).state_like()
    diff = _max_diff(_params(single, n, like), _params(pod, n, like))
    print(f"peers ended {elapsed:.1f} s after the kill; resumed from {partial}; largest parameter "
          f"difference at step {n}: {diff:.3g}")  # fmt: skip
    assert diff < 1e-5
