"""Bad data as a user hits it: one ValueError (through launch.py: one `error:` line, exit status
2) that names the file or the config.data field and the fix, raised when the dataset is opened,
before anything trains or is written, and nothing in the work directory lost.

Undecodable images in a folder (a truncated or damaged PNG, a text file named x.png) fail with
the first files and the count, or are skipped and counted with config.data.skip_bad_images;
data that do not fit the config (channels, the dimension of points, float images in [0, 255],
an empty split, labels of another length) fail naming the field.
"""

import logging
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from score_sde.config import DataConfig
from score_sde.data import datasets
from score_sde.run import modes
from score_sde.store import image_io
from tests.helpers import REPO, assert_kept, assert_one_clear_line, snapshot, tiny_config

RGB = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)


def _folder(root, images, extra=None):
    """root/000.png ... from `images` [N, H, W, C], plus {name: bytes} files."""
    root.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        image_io.save_png(root / f"{i:03d}.png", im)
    for name, data in (extra or {}).items():
        (root / name).write_bytes(data)
    return str(root)


def _damaged_png() -> bytes:
    """A PNG whose image data were overwritten (the IDAT CRC no longer matches)."""
    png = bytearray(image_io.encode_png(RGB[0]))
    start = png.index(b"IDAT") + 4
    png[start + 10 : start + 20] = b"\x00" * 10
    return bytes(png)


def _open(data: DataConfig, split="train"):
    return datasets.get_dataset(data, split, batch_size=4, seed=0)


def _error(data: DataConfig, *needles, split="train"):
    with pytest.raises(ValueError) as info:
        _open(data, split)
    assert_one_clear_line(str(info.value), *needles)
    return str(info.value)


def _images(**fields) -> DataConfig:
    return DataConfig(**{"dataset": "folder", "image_size": 8, "num_channels": 3, **fields})


# ---------------------------------------------------------------------------- image folders


@pytest.mark.parametrize(
    "name, data, why",
    [
        ("bad.png", image_io.encode_png(RGB[0])[:200], "Truncated File Read"),
        ("bad.png", _damaged_png(), "bad header checksum in b'IDAT'"),
        ("x.png", b"just some notes, not an image\n", "it starts with b'just som'"),
        ("empty.jpg", b"", "it starts with b''"),
    ],
)
def test_undecodable_image_fails_naming_the_file_and_the_count(tmp_path, name, data, why):
    path = _folder(tmp_path / "imgs", RGB, {name: data})
    _error(
        _images(path=path),
        f"1 of 7 images in the folder {path} cannot be decoded",
        os.path.join(path, name),
        why,
        "--config.data.skip_bad_images=True",
    )


def test_undecodable_images_are_skipped_and_counted_when_asked(tmp_path, caplog):
    bad = {"a.png": b"text", "b.png": image_io.encode_png(RGB[1])[:100], "c.png": _damaged_png()}
    path = _folder(tmp_path / "imgs", RGB, bad)
    caplog.set_level(logging.WARNING)
    ds = _open(_images(path=path, skip_bad_images=True))
    assert ds.num_examples == 6 and len(ds.source.skipped) == 3
    assert "skipping 3 of 9 images" in caplog.text and "a.png" in caplog.text
    b = next(ds.epoch(6))
    assert b["x"].shape == (6, 8, 8, 3) and b["mask"].all()
    # more than three bad files: the first three are named, the rest counted
    more = {f"z{i}.png": b"x" for i in range(5)}
    _error(_images(path=_folder(tmp_path / "more", RGB, more)), "5 of 11", "and 2 more")
    # nothing decodable: an error even when skipping
    _error(
        _images(path=_folder(tmp_path / "none", [], more), skip_bad_images=True),
        "5 of 5 images",
        "config.data.path",
    )


@pytest.mark.parametrize(
    "images, channels, needles",
    [
        (RGB, 1, ["config.data.num_channels (1)", "3-channel (RGB)", "num_channels=3"]),
        (RGB[..., :1], 3, ["config.data.num_channels (3)", "1-channel (grayscale)", "=1"]),
        (RGB[..., :2], 3, ["config.data.num_channels (3)", "grayscale + alpha", "=2"]),
    ],
)
def test_folder_channels_must_match_the_config(tmp_path, images, channels, needles):
    path = _folder(tmp_path / "imgs", images)
    _error(_images(path=path, num_channels=channels), *needles, path)


def test_a_few_images_with_other_channels_are_named(tmp_path):
    path = _folder(tmp_path / "imgs", RGB)
    image_io.save_png(tmp_path / "imgs" / "gray.png", RGB[0, ..., 0])
    _error(
        _images(path=path),
        "does not match 1 of 7 images",
        os.path.join(path, "gray.png"),
        "convert them to 3 channel(s) or remove them",
    )


def test_celeba_preprocessing_needs_images_larger_than_its_crop(tmp_path):
    path = _folder(tmp_path / "imgs", RGB)  # 12x12: smaller than CelebA's 140x140 center crop
    _error(
        _images(dataset="celeba", path=path),
        "config.data.image_size (8)",
        "smaller than the 140x140 center crop",
    )


# ---------------------------------------------------------------------------- arrays


def test_digits_with_three_channels():
    _error(
        DataConfig("digits", image_size=8, num_channels=3),
        "config.data.num_channels (3)",
        "dataset 'digits' holds 1-channel (grayscale) images",
        "--config.data.num_channels=1",
    )


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_points_of_another_dimension(tmp_path):
    path = _npz(tmp_path, x_train=np.zeros((10, 3), np.float32))
    _error(
        DataConfig("npz", dim=2, path=path),
        "config.data.dim (2)",
        f"{path} array 'x_train' holds points of dimension 3",
        "--config.data.dim=3",
    )
    _error(DataConfig("toy/gmm", dim=3), "config.data.dim (3)", "--config.data.dim=2")


def test_points_for_an_image_config_and_images_for_a_vector_config(tmp_path):
    path = _npz(tmp_path, x_train=np.zeros((10, 3), np.float32), x=np.zeros((4, 8, 8, 3)))
    _error(_images(dataset="npz", path=path), "not images [H, W, C]", "--config.data.dim=3")
    _error(
        DataConfig("npz", dim=2, path=path),
        "holds examples of shape (8, 8, 3)",
        "remove config.data.dim",
        split="test",
    )


@pytest.mark.parametrize(
    "x, needles",
    [
        (
            np.linspace(0, 255, 960, dtype=np.float32).reshape(5, 8, 8, 3),
            ["[0, 255]", "divide by 255"],
        ),
        (np.full((5, 8, 8, 3), -1.0), ["values in [-1, -1]", "(x + 1) / 2"]),
        (np.full((5, 8, 8, 3), np.nan, np.float32), ["NaN or infinite"]),
    ],
)
def test_float_images_must_lie_in_0_1(tmp_path, x, needles):
    path = _npz(tmp_path, x_train=x)
    _error(_images(dataset="npz", path=path), f"{path} array 'x_train'", *needles)


def test_float_images_in_0_1_and_raw_points_pass(tmp_path):
    path = _npz(tmp_path, x_train=np.linspace(0, 1, 5 * 192, dtype=np.float32).reshape(5, 8, 8, 3))
    assert _open(_images(dataset="npz", path=path)).batch(0)["x"].max() <= 1.0
    path = _npz(tmp_path, x_train=np.full((5, 2), 300.0, np.float32))  # points: any range
    assert _open(DataConfig("npz", dim=2, path=path)).batch(0)["x"].max() == 300.0


def test_channels_first_arrays(tmp_path):
    path = _npz(tmp_path, x_train=np.zeros((5, 3, 8, 8), np.uint8))
    _error(_images(dataset="npz", path=path), "channels first", "np.transpose(x, (0, 2, 3, 1))")


def test_empty_split(tmp_path):
    path = _npz(tmp_path, x_train=np.zeros((5, 8, 8, 3), np.uint8), x_test=np.zeros((0, 8, 8, 3)))
    assert _open(_images(dataset="npz", path=path)).num_examples == 5
    _error(
        _images(dataset="npz", path=path), f"{path} array 'x_test' has no examples", split="test"
    )


def test_labels_of_another_length(tmp_path):
    x = np.zeros((5, 8, 8, 3), np.uint8)
    path = _npz(tmp_path, x_train=x, y_train=np.arange(4))
    _error(
        _images(dataset="npz", path=path),
        "array 'y_train' of shape (4,)",
        f"{path} array 'x_train' (5 examples)",
    )
    path = _npz(tmp_path, x_train=x, y_train=np.zeros((5, 10)))  # one-hot: not one label each
    _error(_images(dataset="npz", path=path), "array 'y_train' of shape (5, 10)")


def test_a_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"not a zip file")
    _error(_images(dataset="npz", path=str(path)), str(path), "not a readable .npz file")


# ---------------------------------------------------------------------------- the entry points


def test_every_mode_checks_the_data(tmp_path):
    """train and train_classifier fail before writing; the eval of a trained run does too."""
    path = _npz(tmp_path, x_train=np.zeros((10, 3), np.float32), x_test=np.zeros((5, 3)))
    npz = {"data.dataset": "npz", "data.path": path}
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    before = snapshot(workdir)
    with pytest.raises(ValueError) as info:
        modes.run("train", tiny_config(**npz), str(workdir))
    assert_one_clear_line(str(info.value), "config.data.dim (2)", "--config.data.dim=3")
    assert_kept(before, workdir)
    assert sorted(os.listdir(workdir)) == ["notes.txt"]  # nothing written
    from configs.digits import conditional

    c = conditional.get_config()
    c.data.num_channels = 3
    with pytest.raises(ValueError) as info:
        modes.run("train_classifier", c, str(workdir))
    assert_one_clear_line(str(info.value), "config.data.num_channels (3)", "'digits'")
    assert_kept(before, workdir)
    # a trained run: eval with data of another dimension fails without losing anything
    modes.run("train", tiny_config(), str(workdir))
    before = snapshot(workdir)
    with pytest.raises(ValueError) as info:
        modes.run("eval", tiny_config(**npz), str(workdir))
    assert_one_clear_line(str(info.value), "config.data.dim (2)", path)
    assert_kept(before, workdir)


def _launch(workdir, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "launch.py", f"--workdir={workdir}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def _digits(*args):
    return ["--config=configs/digits/ddpmpp.py", "--config.model.nf=8", *args]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["corrupt png", "digits with 3 channels", "float images in [0, 255]", "points of dim 3"],
)
def test_launch_exits_2_with_one_line(case, tmp_path):
    if case == "corrupt png":
        path = _folder(tmp_path / "imgs", RGB[..., :1], {"bad.png": _damaged_png()})
        args = _digits("--config.data.dataset=folder", f"--config.data.path={path}")
        needles = [os.path.join(path, "bad.png"), "--config.data.skip_bad_images=True"]
    elif case == "digits with 3 channels":
        args = _digits("--config.data.num_channels=3")
        needles = ["config.data.num_channels (3)", "--config.data.num_channels=1"]
    elif case == "float images in [0, 255]":
        path = _npz(tmp_path, x_train=np.full((4, 8, 8, 1), 255.0, np.float32))
        args = _digits("--config.data.dataset=npz", f"--config.data.path={path}")
        needles = [f"{path} array 'x_train'", "divide by 255"]
    else:
        path = _npz(tmp_path, x_train=np.zeros((10, 3), np.float32))
        args = ["--config=configs/toy/gmm.py", "--config.data.dataset=npz"]
        args += [f"--config.data.path={path}"]
        needles = ["config.data.dim (2)", "--config.data.dim=3"]
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    before = snapshot(workdir)
    proc = _launch(workdir, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert_one_clear_line(lines[0], *needles)
    assert_kept(before, workdir)
    assert sorted(os.listdir(workdir)) == ["notes.txt"]


# ----------------------------------------------------------------------------- the image check


def test_damaged_pngs_raise_value_errors_saying_why(tmp_path):
    png = image_io.encode_png(RGB[0])
    raw = zlib.compress(b"\x00" * 10)  # valid chunks around image data of the wrong size
    idat = (
        len(raw).to_bytes(4, "big") + b"IDAT" + raw + zlib.crc32(b"IDAT" + raw).to_bytes(4, "big")
    )
    short = png[: png.index(b"IDAT") - 4] + idat + png[-12:]
    for data, why in [
        (png[:100], "damaged image: OSError: Truncated File Read"),
        (_damaged_png(), r"bad header checksum in b'IDAT'"),
        (b"GIF89a" + png[6:], "not an image file|damaged image"),
        (short, "image file is truncated"),
        (b"notes", "not an image file: it starts with b'notes'"),
    ]:
        (tmp_path / "a.png").write_bytes(data)
        with pytest.raises(ValueError, match=why):
            image_io.probe_image(tmp_path / "a.png")  # what the folder check reads
    (tmp_path / "a.png").write_bytes(png)
    assert image_io.probe_image(tmp_path / "a.png") == (12, 12, 3)
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "a.png"), RGB[0])
