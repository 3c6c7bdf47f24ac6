"""PNG round trips through Pillow, grid layout, sample pictures."""

import numpy as np
import pytest

from score_sde.store import image_io


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_png_round_trip(tmp_path, c):
    img = np.random.default_rng(c).integers(0, 256, (7, 5, c), dtype=np.uint8)
    path = tmp_path / "a.png"
    image_io.save_png(path, img)
    np.testing.assert_array_equal(image_io.read_image(path)[..., :c], img)


def test_to_uint8_rounds_not_truncates():
    x = np.array([0.0, 0.5 / 255 + 1e-4, 254.6 / 255, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(image_io.to_uint8(x), [0, 1, 255, 255, 0])


def test_grid_layout(tmp_path):
    imgs = np.zeros((5, 4, 3, 3), np.float32)
    for i in range(5):
        imgs[i] = i / 10
    grid = image_io.make_grid(imgs, nrow=2, padding=1)
    assert grid.shape == (3 * 5 + 1, 2 * 4 + 1, 3)
    # Image 3 sits at row 1, column 1.
    np.testing.assert_array_equal(grid[1 + 5 : 1 + 5 + 4, 1 + 4 : 1 + 4 + 3], round(0.3 * 255))
    path = tmp_path / "sub" / "grid.png"
    image_io.save_image_grid(path, imgs, nrow=2, padding=1)  # enlarged to MIN_SIDE, nearest
    np.testing.assert_array_equal(image_io.read_image(path), image_io.upscale(grid))
    assert image_io.read_image(path).shape[:2] == ((3 * 5 + 1) * 29, (2 * 4 + 1) * 29)


def test_read_images_png_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    image_io.save_png(tmp_path / "a.png", img)
    got = image_io.read_images(str(tmp_path / "a.png"))
    assert got.shape == (1, 5, 4, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], img / 255.0, atol=1e-7)
    gray = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)  # [N, H, W] -> one channel
    np.savez(tmp_path / "g.npz", x=gray, other=np.zeros(2))
    got = image_io.read_images(str(tmp_path / "g.npz"))
    assert got.shape == (3, 5, 4, 1)
    np.testing.assert_allclose(got[..., 0], gray / 255.0, atol=1e-7)
    floats = rng.random((2, 5, 4, 3))  # float in [0, 1]: kept as is; the first array if no 'x'
    np.savez(tmp_path / "f.npz", floats)
    np.testing.assert_allclose(image_io.read_images(str(tmp_path / "f.npz")), floats, atol=1e-7)
    with pytest.raises(ValueError, match="does not exist"):
        image_io.read_images(str(tmp_path / "absent.png"))
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected images \[N, H, W, C\]"):
        image_io.read_images(str(tmp_path / "bad.npz"))


def test_save_samples_writes_arrays_and_a_picture(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.standard_normal((50, 2)).astype(np.float32)
    stem = str(tmp_path / "out" / "points")
    image_io.save_samples(stem, points, data=points + 1)
    np.testing.assert_array_equal(np.load(stem + ".npz")["samples"], points)
    from PIL import Image

    with Image.open(stem + ".png") as png:  # drawn by matplotlib: data | samples
        assert "matplotlib" in png.info.get("Software", ""), png.info
        assert min(png.size) >= 256
    images = rng.integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
    stem = str(tmp_path / "images")
    image_io.save_samples(stem, images)
    np.testing.assert_array_equal(np.load(stem + ".npz")["samples"], images)
    grid = image_io.read_image(stem + ".png")
    # ceil(sqrt(5)) per row, enlarged to MIN_SIDE by nearest neighbour
    np.testing.assert_array_equal(grid, image_io.upscale(image_io.make_grid(images, nrow=3)))
