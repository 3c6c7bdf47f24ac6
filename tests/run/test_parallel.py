"""Multi-process data parallelism: two processes on localhost == one process, same global batch."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from score_sde import parallel
from score_sde.run import experiment
from score_sde.store import checkpoint
from tests.helpers import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(workdir, data_path):
    # 'npz' data: batch order is a function of the global stream position, so a global batch
    # is the same rows whatever the number of processes.
    return [
        sys.executable, "launch.py", "--config", "configs/toy/gmm.py", f"--workdir={workdir}",
        "--config.data.dataset=npz", f"--config.data.path={data_path}",
        "--config.training.n_iters=6", "--config.training.n_jitted_steps=2",
        "--config.training.batch_size=16", "--config.training.snapshot_freq=1000",
        "--config.training.snapshot_freq_for_preemption=1000", "--config.training.log_freq=2",
        "--config.training.eval_freq=1000", "--config.training.snapshot_sampling=False",
        "--config.training.eval_after_training=False", "--config.model.nf=16",
        "--config.model.num_layers=1",
    ]  # fmt: skip


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    from score_sde.data import toy_data

    data = tmp_path / "points.npz"
    pts = np.asarray(toy_data.sample_toy("gmm", jax.random.key(0), 600))
    np.savez(data, x_train=pts[:500], x_test=pts[500:])

    # One process with two devices ...
    single = subprocess.run(_cmd(tmp_path / "one", data), cwd=REPO, env=_env(2),
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    # ... and two processes with one device each, gloo collectives over 127.0.0.1.
    coord = f"--coordinator=127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            _cmd(tmp_path / "two", data) + [coord, "--num_processes=2", f"--process_id={i}"],
            cwd=REPO,
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "process 0/2, 1 local / 2 global" in outs[0][0]
    assert "topology" not in outs[1][0] and "loss" not in outs[1][0]  # only process 0 logs
    with open(tmp_path / "two" / "metrics.jsonl") as f:  # ... and writes metrics, once per step
        assert [json.loads(line)["step"] for line in f if '"training_loss"' in line] == [2, 4, 6]

    # Lockstep: the logged losses of the two runs agree step by step.
    def losses(text):
        return [float(line.split("training_loss ")[1].split()[0]) for line in text.splitlines()
                if "/6  training_loss" in line]  # fmt: skip

    np.testing.assert_allclose(losses(outs[0][0]), losses(single.stdout), rtol=1e-5)
    assert len(losses(single.stdout)) == 3

    from configs.toy import gmm
    from score_sde.config import from_config

    config = gmm.get_config()
    config.model.nf, config.model.num_layers, config.training.batch_size = 16, 1, 16
    like = experiment.build(from_config(config), parallel.make_mesh()).state_like()
    trees = []
    for w in ("one", "two"):
        with checkpoint.Checkpoints(str(tmp_path / w)) as ckpts:
            assert ckpts.latest_step() == 6
            trees.append(ckpts.restore(like))
    a, b = (jax.tree.leaves(parallel.to_host(t)) for t in trees)
    assert len(a) == len(b) > 5
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
