"""PNG encoding/decoding round trips and grid layout."""

import zlib

import numpy as np
import pytest

from score_sde import image_io


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_png_round_trip(tmp_path, c):
    img = np.random.default_rng(c).integers(0, 256, (7, 5, c), dtype=np.uint8)
    path = tmp_path / "a.png"
    image_io.save_png(path, img)
    np.testing.assert_array_equal(image_io.decode_png(path.read_bytes()), img)


def _filtered_png(img, filt):
    """Encode with one PNG filter type for every row (to test the decoder's unfiltering)."""
    h, w, c = img.shape
    x = img.reshape(h, w * c).astype(np.int64)
    rows = []
    for y in range(h):
        prev = x[y - 1] if y else np.zeros(w * c, np.int64)
        cur = x[y]
        left = np.concatenate([np.zeros(c, np.int64), cur[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int64), prev[:-c]])
        if filt == 1:
            f = cur - left
        elif filt == 2:
            f = cur - prev
        elif filt == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = cur - pred
        rows.append(np.concatenate([[filt], f & 0xFF]).astype(np.uint8))
    png = bytearray(image_io.encode_png(img))
    # Replace the IDAT chunk of the plain encoding.
    start = png.index(b"IDAT") - 4
    length = int.from_bytes(png[start : start + 4], "big")
    body = zlib.compress(np.stack(rows).tobytes())
    chunk = len(body).to_bytes(4, "big") + b"IDAT" + body
    chunk += zlib.crc32(b"IDAT" + body).to_bytes(4, "big")
    return bytes(png[:start]) + chunk + bytes(png[start + 12 + length :])


@pytest.mark.parametrize("filt", [1, 2, 3, 4])
def test_png_decoder_filters(filt):
    img = np.random.default_rng(filt).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_io.decode_png(_filtered_png(img, filt)), img)


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
    image_io.save_image_grid(path, imgs, nrow=2, padding=1)
    np.testing.assert_array_equal(image_io.read_image(path), grid)
