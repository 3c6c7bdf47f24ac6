"""examples/walkthrough.py as a user runs it: it trains a tiny digits model in an empty work
directory, then loads it, samples with PC and the ODE, computes bits/dim and inpaints; what it
prints and saves is checked against itself (the arrays behind the picture, the known pixels)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from score_sde.store import image_io
from tests.helpers import REPO

NUM = 8


@pytest.mark.slow
def test_walkthrough_runs_on_a_tiny_model(tmp_path):
    workdir = tmp_path / "walk"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "examples", "walkthrough.py"),
            f"--workdir={workdir}",
            "--steps=100",
            f"--num={NUM}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the script needs only the installed package
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "training a tiny digits model for 100 steps" in out
    assert "loaded digits ncsnpp at step 100; images (8, 8, 1)" in out
    assert f"samples ({NUM}, 8, 8, 1), NFE 50" in out  # PC: 50 Euler-Maruyama steps
    nfe_ode = int(re.search(r"ODE samples \(\d+, 8, 8, 1\), NFE (\d+)", out)[1])
    assert nfe_ode > 10  # adaptive steps, several evaluations each
    assert "known pixels kept exactly: True" in out

    saved = np.load(workdir / "walkthrough.npz")
    for name in ("pc", "ode"):  # model.sample: float images in [0, 1]
        a = saved[name]
        assert a.shape == (NUM, 8, 8, 1) and a.dtype == np.float32, name
        assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.05, name
    for name in ("test", "inpainted"):
        a = saved[name]
        assert a.shape == (NUM, 8, 8, 1) and a.dtype == np.uint8, name
        assert a.std() > 10, name  # images, not one constant value
    assert not np.array_equal(saved["pc"], saved["ode"])

    # bits/dim: finite, per image, in the range of 8-bit data (8 = uniform noise; the untrained
    # Gaussian model gives about 8 on these digits, a trained one less), as printed
    bpd = saved["bpd"]
    assert bpd.shape == (NUM,) and np.isfinite(bpd).all()
    assert 0 < bpd.min() and bpd.max() < 12, bpd
    printed = float(re.search(r"bits/dim of \d+ test images: ([\d.]+)", out)[1])
    assert printed == pytest.approx(bpd.mean(), abs=1e-3)

    # inpainting keeps the known (top) half exactly and fills the rest
    mask = saved["mask"][..., 0] == 1
    assert mask[:4].all() and not mask[4:].any()
    np.testing.assert_array_equal(saved["inpainted"][:, mask], saved["test"][:, mask])
    assert (saved["inpainted"][:, ~mask] != saved["test"][:, ~mask]).any()

    # the picture is the five rows of arrays, enlarged
    png = image_io.read_image(workdir / "walkthrough.png")
    shown = np.where(saved["mask"] == 1, saved["test"], 128).astype(np.uint8)
    samples = [image_io.to_uint8(saved[k]) for k in ("pc", "ode")]
    rows = [*samples, saved["test"], shown, saved["inpainted"]]
    grid = image_io.make_grid(np.concatenate(rows), nrow=NUM)
    zoom = png.shape[0] // grid.shape[0]
    assert zoom >= 1 and png.shape[:2] == (grid.shape[0] * zoom, grid.shape[1] * zoom)
    np.testing.assert_array_equal(png[::zoom, ::zoom], grid)
    assert f"-> {workdir / 'walkthrough.png'}" in out and f"-> {workdir / 'walkthrough.npz'}" in out
