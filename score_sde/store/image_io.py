"""Reading and writing 8-bit images.

`save_image_grid(path, images, nrow)` writes a tiled PNG of a batch `[N, H, W, C]`, enlarged
(`upscale`: nearest neighbour, an integer factor) until its shorter side has MIN_SIDE pixels, as
are the sample pictures (`save_samples`) and the TensorBoard image summaries made of them. 2-D
point sets are drawn by matplotlib (`scatter_figure`: axes, ticks, legends; Agg, no display).
Every codec is Pillow's: PNG (matplotlib's too), JPEG folders, TFDS images.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from score_sde.store import fs

MIN_SIDE = 256  # pixels of a picture's shorter side at least (small grids are enlarged)


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
    """Write `images` [N, H, W, C] (float in [0, 1] or uint8) as one PNG grid, `nrow` per row,
    enlarged to MIN_SIDE (upscale)."""
    save_png(path, upscale(make_grid(np.asarray(images), nrow, padding)))


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


# ---------------------------------------------------------------------------- pictures


def upscale(image: ArrayLike, min_side: int = MIN_SIDE) -> np.ndarray:
    """`image` [H, W, ...] enlarged by the smallest integer factor k with k * min(H, W) >=
    `min_side`, nearest neighbour (out[i, j] = image[i // k, j // k]); unchanged when already
    that large."""
    image = np.asarray(image)
    if image.ndim < 2 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, ...] with H, W >= 1, got shape {image.shape}")
    k = -(-min_side // min(image.shape[:2]))
    return image.repeat(k, 0).repeat(k, 1) if k > 1 else image


def label_columns(grid: ArrayLike, labels: list[str], height: int = 20) -> np.ndarray:
    """`grid` (uint8 [H, W, C], equal columns side by side: make_grid's, enlarged or not) below a
    black strip `height` px high with labels[i] in white centred over column i (Pillow's default
    font)."""
    from PIL import Image, ImageDraw

    grid = to_uint8(grid)
    if grid.ndim != 3 or not labels:
        raise ValueError(f"grid must be [H, W, C] with labels, got {grid.shape}, {labels!r}")
    strip = Image.new("L", (grid.shape[1], height), 0)
    draw = ImageDraw.Draw(strip)
    width = grid.shape[1] / len(labels)
    for i, text in enumerate(labels):
        x = (i + 0.5) * width - draw.textlength(text) / 2
        draw.text((x, height / 2), text, fill=255, anchor="lm")
    pixels = np.broadcast_to(np.asarray(strip)[..., None], (height, *grid.shape[1:]))
    return np.concatenate([pixels, grid])


def figure(width: float, height: float):
    """A matplotlib Figure (`width` x `height` inches, 100 dpi) on the Agg canvas: no pyplot,
    no display, no global backend state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (matplotlib writes its name in the 'Software' chunk)."""
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def scatter_figure(panels: Mapping[str, ArrayLike]):
    """A matplotlib Figure of 2-D point sets [n, 2], one panel each (in order, titled with the
    key), on shared axes fitted to the first set (its 99.9% quantile of |x|, plus 25%); each
    later panel shows the first set in gray behind it; legends count the points, and those
    outside the axes or not finite."""
    if not panels:
        raise ValueError("panels must name at least one [n, 2] point set, got none")
    sets = {name: np.asarray(p, np.float64) for name, p in panels.items()}
    for name, p in sets.items():
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"panel {name!r} must be points [n, 2], got shape {p.shape}")
    (first_name, first), *_ = sets.items()
    finite = first[np.isfinite(first).all(-1)]
    extent = float(np.quantile(np.abs(finite), 0.999)) * 1.25 if len(finite) else 1.0
    extent = extent if extent > 0 else 1.0
    fig = figure(3.2 * len(sets), 3.8)
    axes = fig.subplots(1, len(sets), sharex=True, sharey=True, squeeze=False)[0]
    for i, (ax, (name, p)) in enumerate(zip(axes, sets.items(), strict=True)):
        if i > 0:
            ax.scatter(*first.T, s=3, c="0.75", linewidths=0, label=first_name)
        shown = (np.abs(p) <= extent).all(-1)  # False for NaN and inf
        note = f", {len(p) - shown.sum()} outside" if not shown.all() else ""
        color = _COLORS[i % len(_COLORS)]
        ax.scatter(*p[shown].T, s=3, c=color, linewidths=0, label=f"{name} (n={len(p)}{note})")
        ax.set(title=name, xlim=(-extent, extent), ylim=(-extent, extent), xlabel="$x_1$")
        ax.set_box_aspect(1)  # square axes on square limits: equal scales
        ax.legend(loc="upper right", fontsize="x-small", markerscale=3)
    axes[0].set_ylabel("$x_2$")
    return fig


def scatter_png(panels: Mapping[str, ArrayLike]) -> bytes:
    """scatter_figure(panels) as PNG bytes."""
    return figure_png(scatter_figure(panels))


def save_scatter(path: str | os.PathLike, panels: Mapping[str, ArrayLike]) -> None:
    """Writes scatter_figure(panels) ({name: points [n, 2]}, one panel each) as a PNG."""
    fs.write_bytes(path, scatter_png(panels))


def samples_png(samples: np.ndarray, data: np.ndarray | None = None) -> bytes | None:
    """What save_samples draws, as PNG bytes: a scatter plot of 2-D points (beside `data` if
    given) or a grid of the first 64 images, enlarged (upscale); None for other shapes."""
    if samples.ndim == 2 and samples.shape[1] == 2:
        return scatter_png(
            {"data": data, "samples": samples} if data is not None else {"samples": samples}
        )
    if samples.ndim == 4:
        n = min(len(samples), 64)
        return encode_png(upscale(make_grid(samples[:n], int(np.ceil(np.sqrt(n))), 2)))
    return None


def save_samples(
    path_stem: str,
    samples: np.ndarray | dict[str, Any],
    data: np.ndarray | None = None,
    picture: np.ndarray | None = None,
) -> np.ndarray | None:
    """Writes `<stem>.png`, then `<stem>.npz` (each atomically); returns the PNG's pixels (None:
    no PNG). An npz is written last, so its presence means both are complete (the pair or
    neither on an error or a signal; a kill between the two leaves only the picture).

    samples: an array (saved as "samples": 2-D points, or uint8 images [N, H, W, C]) or a dict of
    arrays (its "samples" drawn). picture: what the PNG shows, enlarged (upscale) (default
    samples_png(samples, data): a scatter plot of 2-D points, a grid of images).
    """
    arrays = dict(samples) if isinstance(samples, dict) else {"samples": samples}
    if picture is not None:
        png: bytes | None = encode_png(upscale(picture))
    else:
        png = samples_png(np.asarray(arrays["samples"]), data)
    if png is not None:
        fs.write_bytes(path_stem + ".png", png)
    try:
        fs.save_npz(path_stem + ".npz", **arrays)
    except BaseException:  # a full disk, Ctrl-C or SIGTERM: the pair or neither
        if png is not None:
            fs.path(path_stem + ".png").unlink(missing_ok=True)
        raise
    return None if png is None else decode_image(png)
