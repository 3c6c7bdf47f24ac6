"""Eval mode on images: FID / IS / KID of samples against reference statistics and bits/dim over
the whole test split, with a random-weight Inception on scikit-learn's 8x8 digits (4 devices)."""

import io
import json
import os
import shutil

import jax
import numpy as np
import pytest

from score_sde import parallel
from score_sde.config import from_config
from score_sde.data import datasets, preprocess
from score_sde.evaluation import evaluator, fid, inception, sample_quality
from score_sde.run import experiment, modes
from tests.helpers import REPO, digits_config, interrupted_config, popen_as_a_script_starts_it

DIGITS_TEST = 1797 - 1500  # datasets.py: train = the first 1500


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Random Inception weights, one inception_fn, reference stats of 32 training digits."""
    root = tmp_path_factory.mktemp("fid")
    weights = root / "inception.npz"
    np.savez(weights, **inception.random_flat_weights(0))
    mesh = parallel.make_mesh()
    inception_fn = evaluator.get_inception_fn(mesh=mesh, weights=weights)
    stats = root / "digits_train_stats.npz"
    config = digits_config(weights, stats)
    evaluator.compute_dataset_statistics(
        from_config(config).data,
        "train",
        stats,
        batch_size=32,
        mesh=mesh,
        max_examples=32,
        inception_fn=inception_fn,
    )
    return root, weights, stats, inception_fn


@pytest.fixture(scope="module")
def trained(setup):
    """interrupted_config trained (2 steps) once, and an uninterrupted eval of a copy of it:
    (workdir to copy, the reference results)."""
    root, weights, stats, _ = setup
    config = interrupted_config(weights, stats)
    workdir = str(root / "trained")
    modes.run("train", config, workdir, stream=io.StringIO())
    shutil.copytree(workdir, root / "reference")
    (reference,) = modes.run("eval", config, str(root / "reference"), stream=io.StringIO())
    return workdir, reference


@pytest.mark.slow
def test_fid_of_the_data_against_its_own_statistics_is_zero(setup):
    _, weights, stats, inception_fn = setup
    cfg = from_config(digits_config(weights, stats))
    exp = experiment.build(cfg)
    ds = datasets.get_dataset(cfg.data, "train", batch_size=32, seed=0)
    # the 32 digits the statistics were made of, in model space, as eval mode feeds samples (one
    # batch of 32, the shape the statistics compiled the Inception for)
    x = parallel.global_batch(next(iter(ds.epoch()))["x"], exp.mesh)
    to_images = lambda x: preprocess.to_images(x, cfg.data)
    features = sample_quality.inception_features(inception_fn, to_images)
    drawn, _ = sample_quality.draw(lambda i: (x, 0), 32, 32, features=features)
    metrics, kept = sample_quality.metrics(drawn, stats), drawn["images"]
    reference = fid.load_statistics(stats)
    assert metrics["fid"] < 1e-6 * np.trace(reference["sigma"]) + 1e-6, metrics
    assert np.isfinite(metrics["kid"])  # unbiased: not 0 on the very same rows
    assert metrics["num_samples"] == 32 and metrics["inception_score"] >= 1.0
    assert kept.shape == (32, 8, 8, 1) and kept.dtype == np.uint8


@pytest.mark.slow
def test_eval_mode_writes_fid_is_kid_and_bits_per_dim(setup, trained):
    root, weights, stats, _ = setup
    workdir = str(root / "run")
    shutil.copytree(trained[0], workdir)  # the same training (the eval fields differ)
    config = digits_config(weights, stats)
    out = io.StringIO()
    (results,) = modes.run("eval", config, workdir, stream=out)
    saved = json.load(open(os.path.join(workdir, "eval", "2", "results.json")))
    assert saved == json.loads(json.dumps(results))
    for k in ("fid_pc", "inception_score_pc", "kid_pc", "bpd"):
        assert np.isfinite(saved[k]) and saved[k] > 0, (k, saved)
    assert saved["num_samples_pc"] == 12
    # bits/dim: every test example (no partial batch dropped), once per dequantization draw
    assert saved["likelihood_examples"] == DIGITS_TEST and saved["likelihood_repeats"] == 2
    assert len(saved["bpd_per_repeat"]) == 2
    assert saved["bpd_per_repeat"][0] != saved["bpd_per_repeat"][1]
    assert np.mean(saved["bpd_per_repeat"]) == pytest.approx(saved["bpd"], rel=1e-6)
    samples = np.load(os.path.join(workdir, "eval", "2", "pc.npz"))["samples"]
    assert samples.shape == (12, 8, 8, 1) and samples.dtype == np.uint8
    assert "FID" in out.getvalue() and jax.device_count() == 4


@pytest.mark.parametrize("missing", ["weights", "stats"])
def test_missing_weights_or_statistics_say_how_to_make_them(setup, missing, tmp_path):
    _, weights, stats, _ = setup
    absent = str(tmp_path / "absent.npz")
    config = digits_config(absent if missing == "weights" else weights,
                           absent if missing == "stats" else stats)  # fmt: skip
    with pytest.raises(ValueError) as info:
        modes.run("eval", config, str(tmp_path / "run"))
    message = str(info.value)
    assert "\n" not in message and absent in message and "enable_fid=False" in message
    if missing == "weights":
        assert "python -m score_sde.evaluation.inception pt_inception-2015-12-05" in message
    else:
        assert "python -m score_sde.evaluation.reference_stats --config=" in message
        assert "--split=train" in message


def _wait_for_rounds(child, directory: str, n: int, timeout: float = 300.0) -> None:
    """Waits until `n` round files (.npz) exist under `directory`; the child must still run."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and child.poll() is None:
        if sum(f.endswith(".npz") for _, _, fs in os.walk(directory) for f in fs) >= n:
            break
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()[1][-2000:]


@pytest.mark.slow
def test_a_killed_eval_resumes_at_the_next_round_with_the_same_result(setup, trained, tmp_path):
    """Eval in rounds: SIGKILL once some round files exist, rerun: the finished rounds are read
    back, the rest computed, and results.json equals an uninterrupted eval's."""
    import signal
    import subprocess
    import sys
    import textwrap

    root, weights, stats, _ = setup
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)
    code = textwrap.dedent(f"""
        import io
        from tests.helpers import interrupted_config
        from score_sde.run import modes
        config = interrupted_config({str(weights)!r}, {str(stats)!r})
        modes.run("eval", config, {str(workdir)!r}, stream=io.StringIO())
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    pattern = os.path.join(workdir, "eval", "2")
    _wait_for_rounds(child, pattern, 3)  # the two bits/dim rounds and one sampling round
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert not os.path.exists(os.path.join(pattern, "results.json"))  # killed before the end
    out = io.StringIO()
    (resumed,) = modes.run("eval", interrupted_config(weights, stats), str(workdir), stream=out)
    assert "resumed" in out.getvalue()
    assert resumed == trained[1]
    saved = json.load(open(os.path.join(pattern, "results.json")))
    assert saved == json.loads(json.dumps(trained[1]))


@pytest.mark.slow
def test_ctrl_c_in_an_eval_round_resumes_to_the_uninterrupted_result(setup, trained, tmp_path):
    """Ctrl-C (SIGINT) to `launch.py --mode=eval` once some rounds (bits/dim and FID sampling)
    are on disk: exit status 130 with one line and no traceback, no results.json; the same command
    rerun reads the finished rounds back and writes the results of an uninterrupted eval."""
    import signal
    import subprocess
    import sys

    root, weights, stats, _ = setup
    repo = REPO
    cfg_file = tmp_path / "digits_eval.py"
    cfg_file.write_text(
        "from tests.helpers import interrupted_config\n\n\n"
        "def get_config():\n"
        f"    return interrupted_config({str(weights)!r}, {str(stats)!r})\n"
    )
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)

    argv = [sys.executable, "launch.py", f"--config={cfg_file}", f"--workdir={workdir}",
            "--mode=eval"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=repo, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    child = popen_as_a_script_starts_it(argv, cwd=repo, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
    eval_dir = os.path.join(workdir, "eval", "2")
    _wait_for_rounds(child, eval_dir, 3)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last == (
        "interrupted (SIGINT): eval stopped; nothing partial was written, and the same command "
        "resumes from what was finished"
    ), stderr[-2000:]
    assert not os.path.exists(os.path.join(eval_dir, "results.json"))

    rerun = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed" in rerun.stdout + rerun.stderr  # finished rounds read back, not recomputed
    saved = json.load(open(os.path.join(eval_dir, "results.json")))
    assert saved == json.loads(json.dumps(trained[1]))
