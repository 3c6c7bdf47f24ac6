"""Every data choice said in one line at start: a crop, a resize, a test split that is the
training data."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from score_sde.config import DataConfig
from score_sde.data import datasets


def _folder(root, shape, n=3, test=False):
    rng = np.random.default_rng(0)
    for sub in ("train", "test") if test else ("",):
        os.makedirs(root / sub, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, shape, np.uint8)).save(root / sub / f"{i}.png")
    return str(root)


def _data(path, dataset="folder", size=8):
    return DataConfig(dataset=dataset, path=path, image_size=size, num_channels=3)


def _notes(data, split):
    return datasets.get_dataset(data, split, batch_size=2, seed=0).notes


def test_a_crop_and_a_resize_are_said(tmp_path):
    wide = _folder(tmp_path / "wide", (16, 24, 3))
    (line,) = _notes(_data(wide), "train")
    assert line.startswith("3 image(s) of 16x24 (the first: ")
    assert line.endswith("are centre-cropped to 16x16 and resized to 8x8 (config.data.image_size)")
    square = _folder(tmp_path / "square", (16, 16, 3))
    (line,) = _notes(_data(square), "train")
    assert line.endswith("are resized to 8x8 (config.data.image_size)") and "cropped" not in line
    assert _notes(_data(_folder(tmp_path / "exact", (8, 8, 3))), "train") == ()


def test_a_test_split_read_from_the_training_data_is_said(tmp_path):
    flat = _folder(tmp_path / "flat", (8, 8, 3))
    (line,) = _notes(_data(flat), "test")
    assert line == (
        f"{flat} has no test/ folder: the test split is every image under it, the training "
        "images (add a test/ folder to evaluate on held-out images)"
    )
    assert _notes(_data(_folder(tmp_path / "split", (8, 8, 3), test=True)), "test") == ()
    x = np.zeros((4, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "x.npz", x=x)
    (line,) = _notes(_data(str(tmp_path / "x.npz"), "npz"), "test")
    assert line.startswith(f"{tmp_path / 'x.npz'} has no x_test array: the test split is 'x'")
    np.savez(tmp_path / "xy.npz", x_train=x, x_test=x)
    assert _notes(_data(str(tmp_path / "xy.npz"), "npz"), "test") == ()


@pytest.mark.slow
def test_train_mode_says_the_choices_before_it_trains(tmp_path):
    from configs.vp.ddpm import cifar10
    from score_sde.run import modes

    c = cifar10.get_config()
    c.data.dataset, c.data.path, c.data.image_size = "folder", _folder(tmp_path, (16, 24, 3)), 8
    c.data.random_flip = False
    m = c.model
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.num_scales = 32, (1,), 1, (), 50
    t = c.training
    t.batch_size, t.n_iters, t.snapshot_sampling, t.eval_after_training = 4, 1, False, False
    out = io.StringIO()
    modes.run("train", c, str(tmp_path / "run"), stream=out)
    lines = out.getvalue().splitlines()
    said = [ln for ln in lines if ln.startswith("data: ")]
    assert len(said) == 2, lines
    assert "are centre-cropped to 16x16 and resized to 8x8" in said[0]
    assert "has no test/ folder: the test split is every image under it" in said[1]
    assert lines.index(said[1]) < min(i for i, ln in enumerate(lines) if "compiling" in ln)
