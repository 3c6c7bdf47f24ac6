"""Getting the Inception weights (`python -m score_sde.evaluation.inception`) and the time estimate
of reference statistics, without network: downloads are served from file:// URLs or fail through
a patched urlopen; bad input is one `error:` line and exit status 2."""

import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from score_sde.evaluation import evaluator, inception, reference_stats, weights
from score_sde.store import fs, torch_format
from tests.helpers import REPO, fake_inception, npz_config

PTH = weights.PTH_NAME  # pt_inception-2015-12-05-6726825d.pth


def _error_line(capsys, argv) -> str:
    """main(argv) in-process: the one `error:` line it leaves on stderr (exit status 2)."""
    with pytest.raises(SystemExit) as e:
        inception.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_file_is_one_line_on_the_terminal(tmp_path):
    # -W error: the package no longer imports the module before runpy runs it (no RuntimeWarning)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "score_sde.evaluation.inception", PTH],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {PTH} not found: download {weights.WEIGHTS_URL}")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "python -m score_sde.evaluation.inception --fetch --out" in proc.stderr


@pytest.mark.parametrize("kind", ["junk", "other_state_dict"])
def test_a_file_that_is_not_the_inception_is_one_error_line(tmp_path, capsys, kind):
    path = tmp_path / "weights.pth"
    if kind == "junk":
        path.write_bytes(b"not a pytorch file")
    else:  # a real PyTorch file, not pytorch-fid's network
        path.write_bytes(open(os.path.join(REPO, "tests/assets/torch_zip.pth"), "rb").read())
    err = _error_line(capsys, [str(path), "--out", str(tmp_path / "w.npz")])
    assert f"{path} is not pytorch-fid's Inception" in err and weights.WEIGHTS_URL in err
    assert not (tmp_path / "w.npz").exists()


def test_the_digest_in_the_name_is_checked(tmp_path, capsys):
    path = tmp_path / PTH
    path.write_bytes(b"a damaged download")
    actual = hashlib.sha256(b"a damaged download").hexdigest()[:8]
    err = _error_line(capsys, [str(path), "--out", str(tmp_path / "w.npz")])
    assert f"has SHA-256 {actual}..., expected 6726825d..." in err


@pytest.mark.parametrize("argv", [[], ["x.pth", "--fetch"]])
def test_fetch_or_a_file(capsys, argv):
    assert "give either --fetch" in _error_line(capsys, argv)


def _serve(monkeypatch, tmp_path, content: bytes, prefix: str | None = None) -> None:
    """WEIGHTS_URL -> a file:// URL of `content`; the expected prefix its digest's (or `prefix`)."""
    served = tmp_path / "server" / PTH
    served.parent.mkdir()
    served.write_bytes(content)
    monkeypatch.setattr(weights, "WEIGHTS_URL", served.as_uri())
    digest = hashlib.sha256(content).hexdigest()[:8]
    monkeypatch.setattr(weights, "SHA256_PREFIX", prefix or digest)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))  # where the .pth lands
    (tmp_path / "tmp").mkdir()


def _torch_state_dict() -> dict[str, np.ndarray]:
    """pytorch-fid's state dict names and shapes (zeros; fc.bias 1..1008)."""
    model = nnx.eval_shape(lambda: inception.InceptionV3(rngs=nnx.Rngs(0)))
    sd = {}
    for key, v in inception._pure_to_flat(nnx.to_pure_dict(nnx.state(model))).items():
        *path, leaf = key.split("/")
        shape = v.shape
        if leaf == "kernel":
            leaf, shape = "weight", shape[::-1] if path == ["fc"] else (*shape[3:1:-1], *shape[:2])
        else:
            leaf = {"scale": "weight", "mean": "running_mean", "var": "running_var"}.get(leaf, leaf)
        sd[".".join([*path, leaf])] = np.zeros(shape, np.float32)
    sd["fc.bias"] = np.arange(1, 1009, dtype=np.float32)
    return sd


def test_fetch_downloads_checks_and_converts(tmp_path, monkeypatch, capsys):
    _serve(monkeypatch, tmp_path, b"pytorch-fid's weights")
    sd = _torch_state_dict()
    read = []
    monkeypatch.setattr(torch_format, "load", lambda p: read.append(open(p, "rb").read()) or sd)
    out = tmp_path / "w" / "inception_fid.npz"
    inception.main(["--fetch", "--out", str(out)])
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert read == [b"pytorch-fid's weights"]  # the downloaded bytes were converted
    np.testing.assert_array_equal(fs.load_npz(out)["fc/bias"], sd["fc.bias"])
    assert os.listdir(tmp_path / "tmp") == []  # the .pth is not kept


def test_a_download_with_the_wrong_digest_is_not_kept(tmp_path, monkeypatch, capsys):
    _serve(monkeypatch, tmp_path, b"something else", prefix="6726825d")
    actual = hashlib.sha256(b"something else").hexdigest()[:8]
    out = tmp_path / "inception_fid.npz"
    err = _error_line(capsys, ["--fetch", "--out", str(out)])
    assert f"has SHA-256 {actual}..., expected 6726825d..." in err and "not kept" in err
    assert not out.exists() and os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize(
    "failure",
    [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"), TimeoutError()],
)
def test_offline_says_what_to_download_and_run(tmp_path, monkeypatch, capsys, failure):
    def urlopen(url, timeout):
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    out = tmp_path / "inception_fid.npz"
    err = _error_line(capsys, ["--fetch", "--out", str(out)])
    assert f"cannot download {weights.WEIGHTS_URL} (" in err
    assert f"run `python -m score_sde.evaluation.inception {PTH} --out {out}`" in err


def test_load_inception_points_at_fetch(tmp_path):
    with pytest.raises(ValueError, match="evaluation.inception --fetch --out"):
        inception.load_inception(tmp_path / "missing.npz")


def test_the_package_names_still_resolve():
    import score_sde.evaluation as ev

    assert ev.compute_metrics is evaluator.compute_metrics and ev.load_inception is not None
    assert set(ev.__all__) <= set(dir(ev))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ev.nope  # noqa: B018


# ---------------------------------------------------------------------------- reference statistics


def test_auto_batch_size_per_backend():
    assert reference_stats.global_batch_size(0, 4, "cpu") == 200
    assert reference_stats.global_batch_size(0, 8, "gpu") == 4000
    assert reference_stats.global_batch_size(7, 4, "cpu") == 8  # explicit wins, rounded up


@pytest.mark.parametrize("batch, printed", [(4, True), (8, False)])
def test_reference_statistics_print_an_estimate(tmp_path, capsys, batch, printed):
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    evaluator.compute_dataset_statistics(
        npz_config(tmp_path), "train", batch_size=batch, mesh=mesh, inception_fn=fake_inception
    )
    err = capsys.readouterr().err
    line = "reference statistics: 13 images on 4 cpu device(s), about "
    # 4 batches: timed after compilation, estimated; 2 batches: nothing left to estimate
    assert (line in err) == printed
    if printed:
        assert " img/s (a GPU takes minutes)" in err.split(line, 1)[1].splitlines()[0]


@pytest.mark.slow
def test_reference_stats_command_prints_the_estimate(tmp_path):
    """The command on a prepared .npz with random Inception weights: the estimate, the file."""
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x)
    np.savez(tmp_path / "w.npz", **inception.random_flat_weights(0))
    proc = subprocess.run(
        [
            sys.executable, "-m", "score_sde.evaluation.reference_stats",
            "--config=configs/vp/cifar10_ddpmpp_continuous.py", "--config.data.dataset=npz",
            f"--config.data.path={tmp_path / 'd.npz'}", "--config.data.image_size=8",
            f"--weights={tmp_path / 'w.npz'}", "--batch_size=4", "--max_examples=12",
            f"--out={tmp_path / 'stats.npz'}",
        ],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reference statistics: 12 images on 4 cpu device(s), about " in proc.stderr
    assert " img/s (a GPU takes minutes)" in proc.stderr
    assert fs.load_npz(tmp_path / "stats.npz")["mu"].shape == (2048,)
