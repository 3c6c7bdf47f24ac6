"""Pictures: image grids enlarged by an integer nearest-neighbour factor to image_io.MIN_SIDE
(files and TensorBoard), class grids labelled by column, and 2-D scatter plots drawn by
matplotlib (panels, shared axes, legends) -- unit by unit, then through train, eval and sample."""

import glob
import io
import os

import numpy as np
import pytest
from PIL import Image

from score_sde.store import image_io


def _software(path) -> str:
    """The PNG's 'Software' text chunk (matplotlib writes 'Matplotlib version..., https://...')."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return str(im.info.get("Software", ""))


def _zoomed(image: np.ndarray, k: int) -> np.ndarray:
    return image.repeat(k, 0).repeat(k, 1)


def _assert_cells(png: np.ndarray, images: np.ndarray, nrow: int, padding: int = 2) -> int:
    """png is make_grid(images, nrow, padding) enlarged k times (returned), cell by cell."""
    grid = image_io.make_grid(images, nrow, padding)
    k = png.shape[0] // grid.shape[0]
    assert k >= 1 and png.shape == (grid.shape[0] * k, grid.shape[1] * k, grid.shape[2])
    n, h, w = images.shape[:3]
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = (padding + r * (h + padding)) * k, (padding + q * (w + padding)) * k
        cell = png[y : y + h * k, x : x + w * k]
        np.testing.assert_array_equal(cell, _zoomed(image_io.to_uint8(images[i]), k))
    np.testing.assert_array_equal(png, _zoomed(grid, k))  # padding too
    return k


def _digits(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


def test_upscale_takes_the_smallest_integer_factor_reaching_min_side():
    assert image_io.MIN_SIDE == 256
    for shape, k in [((42, 42, 1), 7), ((82, 82, 3), 4), ((128, 1000), 2), ((255, 300, 3), 2)]:
        image = np.zeros(shape, np.uint8)
        assert image_io.upscale(image).shape[:2] == (shape[0] * k, shape[1] * k), shape
    big = np.arange(256 * 300 * 3, dtype=np.uint32).reshape(256, 300, 3).astype(np.uint8)
    assert image_io.upscale(big) is big  # already large enough: unchanged, not copied
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        image_io.upscale(np.zeros((0, 4)))


def test_grid_png_of_16_digits_is_at_least_256_px_each_cell_its_pixels_repeated(tmp_path):
    images = _digits(16)
    path = tmp_path / "grid.png"
    image_io.save_image_grid(path, images, nrow=4)
    png = image_io.read_image(path)
    assert min(png.shape[:2]) >= 256
    assert _assert_cells(png, images, nrow=4) == 7  # 42 px -> 294 px


def test_sample_pictures_of_64_digits_go_from_82_to_328_px(tmp_path):
    images = _digits(64)
    stem = str(tmp_path / "samples" / "s")
    picture = image_io.save_samples(stem, images)
    png = image_io.read_image(stem + ".png")
    np.testing.assert_array_equal(picture, png)  # what TensorBoard gets is what the file shows
    assert image_io.make_grid(images, 8).shape[:2] == (82, 82)  # before: the PNG was this
    assert png.shape[:2] == (328, 328) and _assert_cells(png, images, nrow=8) == 4
    np.testing.assert_array_equal(np.load(stem + ".npz")["samples"], images)


def test_grids_already_256_px_are_unchanged(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 130, 140, 3), dtype=np.uint8)
    path = tmp_path / "big.png"
    image_io.save_image_grid(path, images, nrow=2)
    grid = image_io.make_grid(images, 2)
    assert min(grid.shape[:2]) >= 256
    np.testing.assert_array_equal(image_io.read_image(path), grid)
    stem = str(tmp_path / "s")
    image_io.save_samples(stem, images, picture=grid)
    np.testing.assert_array_equal(image_io.read_image(stem + ".png"), grid)


def test_label_columns_writes_a_strip_above_and_keeps_the_grid():
    grid = image_io.upscale(image_io.make_grid(_digits(10), nrow=5))
    out = image_io.label_columns(grid, [f"y={i}" for i in range(5)])
    assert out.shape == (grid.shape[0] + 20, *grid.shape[1:])
    np.testing.assert_array_equal(out[20:], grid)
    strip = out[:20, :, 0]
    for cols in np.array_split(strip, 5, axis=1):  # some text in every column's part
        assert (cols > 128).any()
    with pytest.raises(ValueError, match="labels"):
        image_io.label_columns(grid, [])


def _points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2))


def test_scatter_figure_has_a_panel_per_set_on_shared_axes_with_legends():
    bad = _points(100, 2) * 3
    bad[:3] = [np.nan, np.inf], [50.0, 0.0], [0.0, -50.0]
    fig = image_io.scatter_figure({"data": _points(500, 0), "pc": _points(400, 1), "ode": bad})
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["data", "pc", "ode"]
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    for ax in axes:
        assert ax.get_xlabel() == "$x_1$" and len(ax.get_xticks()) > 1
        assert ax.get_legend() is not None
    assert axes[0].get_ylabel() == "$x_2$"
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert legends[0] == ["data (n=500)"]
    assert legends[1] == ["data", "pc (n=400)"]  # the data in gray behind the samples
    assert legends[2][1].startswith("ode (n=100, ") and legends[2][1].endswith(" outside)")
    assert int(legends[2][1].split(", ")[1].split()[0]) >= 3  # NaN, inf and the far points
    with pytest.raises(ValueError, match=r"panel 'x' must be points \[n, 2\]"):
        image_io.scatter_figure({"x": np.zeros((4, 3))})


def test_save_scatter_writes_a_matplotlib_png(tmp_path):
    path = tmp_path / "eval" / "scatter.png"
    image_io.save_scatter(str(path), {"data": _points(300, 0), "samples": _points(300, 1)})
    assert "matplotlib" in _software(path).lower()
    h, w, _ = image_io.read_image(path).shape
    assert 256 <= h <= 1000 and 2 * 256 <= w <= 2000  # two panels side by side
    assert 10_000 < path.stat().st_size < 1_000_000


def test_scatter_samples_are_drawn_by_matplotlib(tmp_path):
    stem = str(tmp_path / "s")
    picture = image_io.save_samples(stem, _points(64, 0), data=_points(64, 1))
    assert "matplotlib" in _software(stem + ".png").lower()
    np.testing.assert_array_equal(picture, image_io.read_image(stem + ".png"))
    assert image_io.save_samples(str(tmp_path / "t"), np.zeros((4, 3))) is None  # not drawable
    assert not os.path.exists(tmp_path / "t.png")


# ---------------------------------------------------------------- through the real entry points


def _toy_config():
    from configs.toy import base

    c = base.get_config("toy/gmm")
    c.model.nf, c.model.num_layers, c.model.num_scales = 16, 1, 20
    t = c.training
    t.batch_size, t.n_iters, t.n_jitted_steps = 16, 2, 1
    t.log_freq, t.eval_freq, t.snapshot_freq, t.snapshot_freq_for_preemption = 1, 2, 2, 2
    t.eval_after_training = False
    c.sampling.batch_size = c.sampling.num_samples = 64
    c.eval.num_samples, c.eval.batch_size, c.eval.num_bpd_examples = 64, 32, 32
    c.eval.rtol = c.eval.atol = 1e-2
    return c


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from score_sde.run import modes

    workdir = str(tmp_path_factory.mktemp("toy"))
    modes.run("train", _toy_config(), workdir, stream=io.StringIO())
    modes.run("eval", _toy_config(), workdir, stream=io.StringIO())
    return workdir


def test_toy_eval_scatter_and_snapshot_pictures_come_from_matplotlib(toy_run):
    from tests.tb_events import read_events

    out = os.path.join(toy_run, "eval", "2")
    for name in ("scatter.png", "pc.png", "ode.png"):
        path = os.path.join(out, name)
        assert "matplotlib" in _software(path).lower(), name
        assert min(image_io.read_image(path).shape[:2]) >= 256, name
    assert image_io.read_image(os.path.join(out, "scatter.png")).shape[1] > 3 * 256  # 3 panels
    snapshot = os.path.join(toy_run, "samples", "iter_2", "sample.png")
    assert "matplotlib" in _software(snapshot).lower()
    files = glob.glob(os.path.join(toy_run, "tensorboard", "events.out.tfevents.*"))  # train, eval
    (image,) = [v["samples"] for f in files for _, v in read_events(f) if "samples" in v]
    shown = image_io.decode_image(image.encoded_image_string)
    np.testing.assert_array_equal(shown, image_io.read_image(snapshot))


def _digits_config(tmp_path):
    from configs.digits import conditional

    c = conditional.get_config()
    m = c.model
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.num_scales = 16, (1,), 1, (), 30
    s = c.sampling
    s.num_samples, s.batch_size, s.predictor, s.corrector = 16, 16, "reverse_diffusion", "none"
    return c


def test_digit_sample_pictures_are_at_least_256_px_and_class_grids_labelled(tmp_path):
    from score_sde.config import from_config
    from score_sde.run import experiment, modes
    from score_sde.store.checkpoint import Checkpoints

    workdir = str(tmp_path / "run")
    c = _digits_config(tmp_path)
    exp = experiment.build(from_config(c))
    with Checkpoints(workdir) as ckpts:
        ckpts.save(0, exp.new_state(), snapshot=True)  # an untrained model: samples are noise

    modes.run("sample", c, workdir, stream=io.StringIO())
    (png,) = glob.glob(os.path.join(workdir, "samples", "ckpt_0_pc_*.png"))
    pixels = image_io.read_image(png)
    samples = np.load(png[: -len(".png")] + ".npz")["samples"]
    assert samples.shape == (16, 8, 8, 1) and min(pixels.shape[:2]) >= 256
    assert _assert_cells(pixels, samples, nrow=4) == 7

    c.condition.task, c.condition.guidance, c.condition.scale = "class", "cfg", 1.0
    out = modes.run("sample", c, workdir, stream=io.StringIO())
    np.testing.assert_array_equal(out["labels"], np.arange(16) % 10)
    (png,) = glob.glob(os.path.join(workdir, "samples", "ckpt_0_class_*.png"))
    pixels = image_io.read_image(png)
    assert min(pixels.shape[:2]) >= 256
    # one column per class (10 per row), under a strip of labels y=0 ... y=9
    _assert_cells(pixels[20:], out["samples"], nrow=10)
    assert (pixels[:20] > 128).any() and pixels.shape[0] - 20 < pixels.shape[1]
