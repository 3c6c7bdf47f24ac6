"""The README's `tensorboard --logdir runs` (the `tb` extra) reads what a training run wrote: the
original's scalar tags and the snapshot sample grid, as TensorBoard itself parses them."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_tensorboard_reads_a_runs_scalars_and_images(tmp_path):
    tensorboard = shutil.which("tensorboard", path=os.path.dirname(sys.executable))
    if tensorboard is None:
        pytest.fail('tensorboard is not installed: pip install -e ".[tb]" (the test extra has it)')
    runs = tmp_path / "runs"
    flags = [
        "--config.training.n_iters=2",
        "--config.training.n_jitted_steps=1",
        "--config.training.snapshot_freq=2",
        "--config.training.log_freq=1",
        "--config.training.eval_freq=1",
        "--config.training.eval_after_training=False",
        "--config.model.nf=16",
    ]
    train = [sys.executable, "launch.py", "--config", "configs/toy/gmm.py"]
    done = subprocess.run(
        [*train, "--workdir", str(runs / "gmm"), *flags], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = subprocess.run(
        [tensorboard, "--inspect", "--logdir", str(runs)], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    tags = shown.stdout.split("These tags are in", 1)[1].split("=" * 20, 1)[0]
    images = tags.split("images", 1)[1].split("scalars", 1)[0].split()
    scalars = tags.split("scalars", 1)[1].split("tensor", 1)[0].split()
    assert images == ["samples"], shown.stdout
    assert {"training_loss", "eval_loss", "grad_norm", "steps_per_sec"} <= set(scalars)
