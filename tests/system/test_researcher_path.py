"""README's "From the CIFAR-10 archive to FID and bits/dim", run line by line in a fresh directory.

The two downloads are replaced by local files: a small cifar-10-python.tar.gz in the real format
(tests/assets/test_prepare.py) and, since the conversion of pytorch-fid's .pth is checked against torch
elsewhere (tests/store/test_torch_format.py, tests/evaluation/test_evaluation_inception.py), random Inception
weights written where the conversion line puts them (that line is then skipped). Every other line
runs as written, with a shrunk network and small sample counts appended as --config flags; the
eval is SIGKILLed once its first round file exists and rerun, and must then finish with FID / IS /
KID and bits/dim in results.json, having shown progress bars.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import ROOT, cifar_archive

HEADING = "## From the CIFAR-10 archive to FID and bits/dim"

SMALL = [
    "--config.model.nf=16",
    "--config.model.ch_mult=(1,)",
    "--config.model.num_res_blocks=1",
    "--config.model.attn_resolutions=()",
    "--config.model.num_scales=8",
    "--config.training.batch_size=8",
    "--config.training.n_iters=2",
    "--config.training.snapshot_freq=2",
    "--config.training.snapshot_sampling=False",
    "--config.eval.num_samples=24",
    "--config.eval.batch_size=8",
    "--config.sampling.batch_size=8",
    "--config.eval.num_bpd_examples=8",
    "--config.eval.rtol=1e-2",
    "--config.eval.atol=1e-2",
]


def readme_block() -> list[list[str]]:
    """The command lines of the first bash block after HEADING (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(HEADING) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_block_is_the_researchers_path():
    programs = [" ".join(argv[:3]) for argv in readme_block()]
    assert programs == [
        "wget https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "python -m score_sde.data.prepare",
        "wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "python -m score_sde.evaluation.inception",
        "python -m score_sde.evaluation.reference_stats",
        "python launch.py --config=vp/cifar10_ddpmpp_continuous",
        "python launch.py --config=vp/cifar10_ddpmpp_continuous",
    ]


def _argv(argv: list[str]) -> list[str]:
    argv = [sys.executable, *argv[1:]]
    if argv[1] == "launch.py":
        argv[1] = str(ROOT / "launch.py")
        argv += SMALL
    return argv


@pytest.mark.slow
def test_from_the_archive_to_results_json(tmp_path):
    from score_sde.evaluation import inception

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lines = readme_block()
    for argv in lines[:-1]:
        if argv[0] == "wget":
            name = argv[1].rsplit("/", 1)[1]
            if name == "cifar-10-python.tar.gz":
                cifar_archive(tmp_path / name, per_batch=4, n_test=8)
            continue
        if argv[:3] == ["python", "-m", "score_sde.evaluation.inception"]:
            out = tmp_path / argv[argv.index("--out") + 1]
            np.savez(out, **inception.random_flat_weights(0))
            continue
        proc = subprocess.run(
            _argv(argv), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (argv, proc.stderr[-3000:])
        if "score_sde.evaluation.reference_stats" in argv:
            assert "reference statistics: train split" in proc.stderr  # its progress bar
    assert (tmp_path / "assets/stats/cifar10_32_train_stats.npz").is_file()
    assert (tmp_path / "runs/c10/checkpoints/2").is_dir()

    evaluate = _argv(lines[-1])
    child = subprocess.Popen(
        evaluate, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 600
    rounds = str(tmp_path / "runs/c10/eval/2/rounds-*/**/*.npz")
    while time.time() < deadline and child.poll() is None and not glob.glob(rounds, recursive=True):
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()[1][-3000:].decode()
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert not (tmp_path / "runs/c10/eval/2/results.json").exists()

    again = subprocess.run(
        evaluate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # Not a terminal: plain progress lines with the rate, no carriage-return bar.
    assert "img/s" in again.stderr and "\r" not in again.stderr
    results = json.loads((tmp_path / "runs/c10/eval/2/results.json").read_text())
    for key in ("fid_pc", "inception_score_pc", "kid_pc", "bpd"):
        assert np.isfinite(results[key]), (key, results)
    assert results["likelihood_examples"] == 8
