"""Reading and writing 8-bit images.

`save_image_grid(path, images, nrow)` writes a tiled PNG of a batch `[N, H, W, C]`. Every codec
is Pillow's: PNG, JPEG folders, TFDS images, the plot labels.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from score_sde.store import fs


def to_uint8(images: ArrayLike) -> np.ndarray:
    """Float images in [0, 1] -> uint8 by rounding (not truncation); uint8 passes through.

    uint8 = clip(round(255 * x), 0, 255).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be float in [0, 1] or uint8, got dtype {images.dtype}")
    return np.clip(np.rint(images.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: ArrayLike, nrow: int, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile `images` [N, H, W, C] into one uint8 image with `nrow` images per row.

    Like torchvision's `make_grid`: `padding` pixels between and around tiles.
    """
    images = to_uint8(images)
    if images.ndim == 3:  # [N, H, W] grayscale
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    n, h, w, c = images.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = np.full(
        (nrows * (h + padding) + padding, ncol * (w + padding) + padding, c), pad_value, np.uint8
    )
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def encode_png(image: ArrayLike) -> bytes:
    """Encode one image [H, W] or [H, W, C] (C in 1..4; float in [0, 1] or uint8) as PNG bytes."""
    import io

    from PIL import Image

    image = to_uint8(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"PNG needs [H, W] or [H, W, C] with C in 1..4, got shape {image.shape}")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG")
    return out.getvalue()


# Pillow modes -> the 8-bit mode we read them as (palette and bilevel images become pixels).
_PILLOW_MODES = {
    "1": "L", "P": "RGB", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB",
    "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
}  # fmt: skip


def _open(data: bytes, verify: bool):
    """The decoded Pillow image of `data`; with `verify` every chunk's checksum (PNG) is checked
    first. One ValueError saying why it cannot be read."""
    import io

    from PIL import Image

    try:
        if verify:
            Image.open(io.BytesIO(data)).verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.UnidentifiedImageError:
        raise ValueError(f"not an image file: it starts with {bytes(data[:8])!r}") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ValueError(f"damaged image: {type(e).__name__}: {e}") from None
    return image


def decode_image(data: bytes, verify: bool = False) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ... with Pillow) -> uint8 [H, W, C].

    Undecodable data raise a ValueError saying why; `verify` also checks a PNG's checksums.
    """
    image = _open(data, verify)
    mode = image.mode
    if mode not in ("L", "LA", "RGB", "RGBA"):
        if mode not in _PILLOW_MODES:
            raise ValueError(
                f"Pillow mode {mode!r} (16-bit or float pixels) is not supported; save the "
                "images as 8-bit gray or RGB(A)"
            )
        target = _PILLOW_MODES[mode]
        if mode == "P" and "transparency" in image.info:
            target = "RGBA"
        image = image.convert(target)
    image = np.asarray(image)
    return image[..., None] if image.ndim == 2 else image


def probe_image(path: str | os.PathLike) -> tuple[int, int, int]:
    """(H, W, C) that `read_image(path)` returns, or a ValueError saying why it cannot read it:
    the file is decoded in full, a PNG's checksums verified."""
    return decode_image(fs.path(path).read_bytes(), verify=True).shape


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) -> uint8 [H, W, C]."""
    return decode_image(fs.path(path).read_bytes())


def save_png(path: str | os.PathLike, image: ArrayLike) -> None:
    """Write one image [H, W, C] (float in [0, 1] or uint8) as PNG."""
    fs.write_bytes(path, encode_png(image))


def save_image_grid(
    path: str | os.PathLike, images: ArrayLike, nrow: int = 8, padding: int = 2
) -> None:
    """Write `images` [N, H, W, C] (float in [0, 1] or uint8) as one PNG grid, `nrow` per row."""
    save_png(path, make_grid(np.asarray(images), nrow, padding))


def read_images(path: str) -> np.ndarray:
    """Images [N, H, W, C] in [0, 1] from a .png (one image) or .npz ('x' or the first array;
    uint8, or float in [0, 1])."""
    if not fs.path(path).is_file():
        raise ValueError(f"image file {path!r} does not exist")
    if path.endswith(".npz"):
        f = fs.load_npz(path)
        a = f["x"] if "x" in f else next(iter(f.values()))
    else:
        a = read_image(path)[None]
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., None] if a.shape[0] > 1 or path.endswith(".npz") else a[None]
    if a.ndim != 4:
        raise ValueError(f"{path}: expected images [N, H, W, C], got shape {a.shape}")
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


# ---------------------------------------------------------------------------- 2-D scatter plots


def scatter_image(
    points: list[np.ndarray],
    colors: list[tuple[int, int, int]],
    *,
    size: int = 256,
    extent: float | None = None,
) -> np.ndarray:
    """Rasterizes 2-D point sets [n_i, 2] into one RGB uint8 image [size, size, 3]."""
    allp = np.concatenate([p for p in points if len(p)])
    finite = allp[np.isfinite(allp).all(-1)]
    if extent is None:
        extent = float(np.quantile(np.abs(finite), 0.995)) * 1.1 if len(finite) else 1.0
    img = np.full((size, size, 3), 255, np.uint8)
    for pts, color in zip(points, colors, strict=True):
        pts = pts[np.isfinite(pts).all(-1)]
        ij = np.floor((pts / extent + 1) / 2 * (size - 1)).astype(int)
        ok = ((ij >= 0) & (ij < size)).all(-1)
        col, row = ij[ok, 0], size - 1 - ij[ok, 1]
        img[row, col] = color
    return img


def scatter_panels(panels: dict[str, np.ndarray], size: int = 256) -> np.ndarray:
    """Side-by-side scatter plots [n, 2] (one per panel, axes fitted to the first, each labelled
    with its key) as one uint8 image."""
    first = np.asarray(next(iter(panels.values())))
    finite = first[np.isfinite(first).all(-1)]
    extent = float(np.quantile(np.abs(finite), 0.999)) * 1.25 if len(finite) else 1.0
    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
    tiles = [
        label(scatter_image([p], [colors[i % 4]], size=size, extent=extent), name)
        for i, (name, p) in enumerate(panels.items())
    ]
    return make_grid(np.stack(tiles), len(tiles), padding=4)


def save_scatter(path: str, panels: dict[str, np.ndarray], size: int = 256) -> None:
    """scatter_panels(panels) as a PNG."""
    save_png(path, scatter_panels(panels, size))


def label(image: np.ndarray, text: str) -> np.ndarray:
    """`image` (uint8 [H, W, 3]) with `text` written in its top-left corner (Pillow's default
    font, dark gray)."""
    from PIL import Image, ImageDraw

    out = Image.fromarray(np.asarray(image, np.uint8))
    ImageDraw.Draw(out).text((6, 4), text, fill=(40, 40, 40))
    return np.asarray(out)


def samples_picture(samples: np.ndarray, data: np.ndarray | None = None) -> np.ndarray | None:
    """What save_samples draws (uint8 [H, W, 3]): a scatter plot of 2-D points (next to `data`
    if given) or a grid of the first 64 images; None for other shapes."""
    if samples.ndim == 2 and samples.shape[1] == 2:
        panels = {"data": data, "samples": samples} if data is not None else {"samples": samples}
        return scatter_panels(panels)
    if samples.ndim == 4:
        n = min(len(samples), 64)
        return make_grid(samples[:n], int(np.ceil(np.sqrt(n))), 2)
    return None


def save_samples(
    path_stem: str,
    samples: np.ndarray | dict[str, Any],
    data: np.ndarray | None = None,
    picture: np.ndarray | None = None,
) -> np.ndarray | None:
    """Writes `<stem>.npz` and `<stem>.png`; returns the picture written (None: no PNG).

    samples: an array (saved as "samples": 2-D points, or uint8 images [N, H, W, C]) or a dict of
    arrays (its "samples" drawn). picture: what the PNG shows (default samples_picture(samples,
    data): a scatter of 2-D points, a grid of images).
    """
    arrays = dict(samples) if isinstance(samples, dict) else {"samples": samples}
    fs.save_npz(path_stem + ".npz", **arrays)
    if picture is None:
        picture = samples_picture(np.asarray(arrays["samples"]), data)
    if picture is not None:
        save_png(path_stem + ".png", picture)
    return picture
