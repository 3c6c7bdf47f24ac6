"""`score-sde --mode=plot`: the loss curve and the newest sample picture of a work directory as
PNG files, their paths printed. The work directories are written with the real writers (the
metrics logger, the sample writer) instead of a training run."""

import io
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from score_sde.run import modes, sample_files
from score_sde.run.modes import plot as plot_lib
from score_sde.store import fs, image_io
from score_sde.store.metrics_log import MetricsLogger
from tests.helpers import REPO


def _metrics(workdir, losses, every: int = 10, eval_every: int = 50) -> None:
    """training_loss = losses[i] at step every * (i + 1), eval_loss every eval_every steps."""
    os.makedirs(workdir, exist_ok=True)
    with MetricsLogger(str(workdir), stream=io.StringIO()) as log:
        for i, loss in enumerate(losses):
            step = every * (i + 1)
            log.progress(step, {"training_loss": loss, "grad_norm": 1.0}, batch_size=8)
            if step % eval_every == 0:
                log.write(step, {"eval_loss": 1.1 * loss})


def _samples(workdir, stem: str, seed: int = 0) -> str:
    """Random digits-like images [16, 8, 8, 1] written as sample_files does; the .png path."""
    run = types.SimpleNamespace(main=True, log=MetricsLogger(str(workdir), enabled=False))
    images = np.random.default_rng(seed).random((16, 8, 8, 1))
    sample_files.write(run, os.path.join(workdir, stem), image_io.to_uint8(images), "16 samples")
    return os.path.join(workdir, stem + ".png")


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def workdir(tmp_path):
    _metrics(tmp_path, [1.0 / np.sqrt(i + 1) for i in range(20)])
    _samples(tmp_path, "samples/iter_100/sample")
    return str(tmp_path)


def test_plot_writes_both_pngs_and_prints_exactly_their_paths(workdir):
    out = io.StringIO()
    written = modes.run("plot", None, workdir, stream=out)  # no config needed
    loss, samples = (os.path.join(workdir, "plots", n) for n in ("loss.png", "samples.png"))
    assert written == [loss, samples]
    assert out.getvalue().splitlines() == [loss, samples]
    for path in written:
        pixels = _pixels(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200, pixels.shape
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5  # drawn, not blank


def test_the_loss_plot_follows_the_metrics(tmp_path):
    plots = {}
    for name, losses in (("falling", np.geomspace(1, 0.01, 20)), ("flat", np.full(20, 0.5))):
        _metrics(tmp_path / name, losses)
        (path,) = plot_lib.plot(str(tmp_path / name), stream=io.StringIO())  # no samples: loss only
        plots[name] = _pixels(path)
    assert plots["falling"].shape == plots["flat"].shape
    assert (plots["falling"] != plots["flat"]).any(axis=-1).mean() > 0.01


def test_loss_curves_keep_the_last_value_of_a_replayed_step(tmp_path):
    _metrics(tmp_path, [3.0, 2.0, 1.0])  # steps 10, 20, 30
    with MetricsLogger(str(tmp_path), stream=io.StringIO()) as log:  # resumed at step 10
        log.progress(20, {"training_loss": 5.0}, batch_size=8)
        log.write(20, {"eval/eval_loss": 4.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "training_lo')  # a line cut short by a kill
    curves = plot_lib.loss_curves(plot_lib.read_metrics(str(tmp_path)))
    assert curves == {
        "training_loss": ([10, 20, 30], [3.0, 5.0, 1.0]),
        "eval/eval_loss": ([20], [4.0]),
    }


def test_the_newest_picture_is_shown_with_its_step_and_source(tmp_path):
    _samples(tmp_path, "samples/iter_100/sample")
    _samples(tmp_path, "samples/ckpt_100_ode")
    newest = _samples(tmp_path, "eval/200/pc")
    os.utime(newest, (time.time() - 60,) * 2)  # older on disk, but of a later step
    scatter = tmp_path / "eval" / "200" / "scatter.png"
    image_io.save_scatter(str(scatter), {"data": np.random.default_rng(0).normal(size=(50, 2))})
    pictures = plot_lib.sample_pictures(str(tmp_path))
    assert [(p.rel, p.step, p.source) for p in pictures] == [
        ("samples/iter_100/sample.png", 100, "training snapshot (EMA)"),
        ("samples/ckpt_100_ode.png", 100, "sample mode: ode"),
        ("eval/200/pc.png", 200, "eval mode: pc"),
        ("eval/200/scatter.png", 200, "eval mode: scatter"),
    ]


def test_a_workdir_without_metrics_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="metrics.jsonl not found") as e:
        modes.run("plot", None, str(tmp_path))
    assert str(tmp_path / "metrics.jsonl") in str(e.value)
    assert "--mode=train" in str(e.value)
    assert not (tmp_path / "plots").exists()
    (tmp_path / "metrics.jsonl").write_text('{"step": 4, "eval/bpd": 3.1}\n')
    with pytest.raises(ValueError, match="no training_loss or eval_loss"):
        modes.run("plot", None, str(tmp_path))


def test_only_the_plot_mode_imports_matplotlib():
    code = (
        "import sys; import score_sde, score_sde.api, score_sde.run.modes.train, "
        "score_sde.run.modes.eval, score_sde.run.modes.plot; "
        "assert 'matplotlib' not in sys.modules, 'imported at module level'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=_env())


def _env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}


@pytest.mark.slow
def test_launcher_plot_mode(workdir):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch.py"), "--mode=plot", f"--workdir={workdir}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    paths = [os.path.join(workdir, "plots", n) for n in ("loss.png", "samples.png")]
    lines = proc.stdout.splitlines()
    assert lines[-2:] == paths, proc.stdout  # (the launcher may print a topology line first)
    assert all(fs.path(p).is_file() for p in paths)
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "launch.py"), "--mode=plot", "--workdir=/nonexistent"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: /nonexistent/metrics.jsonl not found: nothing to plot yet; train first "
        "(score-sde --mode=train --workdir=/nonexistent) to write the metrics"
    ]
