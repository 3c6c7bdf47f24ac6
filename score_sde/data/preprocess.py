"""The paper's preprocessing in numpy: raw image -> float32 [0, 1] at config.data.image_size, and
the scalers between [0, 1] and model space.

    op = preprocess_fn("celeba", config.data)   # uint8 / float [H, W(, C)] -> float32 [h, w, C]
    x = get_data_scaler(config.data)(op(raw))   # [0, 1] -> [-1, 1] if config.data.centered

As the original: uint8 -> [0, 1]; per-dataset crop/resize (antialiased bilinear, matching
`jax.image.resize`; CelebA: center crop 140 then resize; LSUN: bicubic at 256); then the data
scaler. The random flip and the dequantization in between are `Dataset`'s (datasets.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from score_sde.config import DataConfig

# --------------------------------------------------------------------------------------------
# Scaling between [0, 1] and model space


def get_data_scaler(data: DataConfig) -> Callable:
    """[0, 1] -> model space: x -> 2x - 1 if config.data.centered else identity."""
    if data.centered:
        return lambda x: x * 2.0 - 1.0
    return lambda x: x


def get_data_inverse_scaler(data: DataConfig) -> Callable:
    """Model space -> [0, 1]: x -> (x + 1) / 2 if config.data.centered else identity."""
    if data.centered:
        return lambda x: (x + 1.0) / 2.0
    return lambda x: x


def to_images(x, data: DataConfig):
    """Model-space images [B, H, W, C] -> [0, 1], clipped (jnp or numpy, like `x`)."""
    return get_data_inverse_scaler(data)(x).clip(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Image ops in numpy (float32 [H, W, C] in [0, 1])


def _kernel(x: np.ndarray, method: str) -> np.ndarray:
    x = np.abs(x)
    if method == "bilinear":
        return np.maximum(0.0, 1.0 - x)
    if method == "bicubic":  # Keys cubic, a = -0.5 (as TF / jax.image.scale_and_translate)
        a = -0.5
        return np.where(
            x <= 1,
            ((a + 2) * x - (a + 3)) * x * x + 1,
            np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0),
        )
    raise ValueError(f"resize method must be 'bilinear' or 'bicubic', got {method!r}")


@functools.lru_cache(maxsize=64)
def _resize_matrix(n_in: int, n_out: int, method: str, antialias: bool) -> np.ndarray:
    """[n_out, n_in] weights of an antialiased resize (tf.image.resize / jax.image.resize)."""
    scale = n_out / n_in
    kscale = 1.0 / scale if (antialias and scale < 1.0) else 1.0
    centers = (np.arange(n_out) + 0.5) / scale - 0.5
    w = _kernel((np.arange(n_in)[None, :] - centers[:, None]) / kscale, method)
    total = w.sum(1, keepdims=True)
    return (w / np.where(total == 0, 1.0, total)).astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Antialiased resize of [H, W, C] to `size` = (h, w) (matches jax.image.resize antialias)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image.astype(np.float32)
    mh = _resize_matrix(h, size[0], method, True)
    mw = _resize_matrix(w, size[1], method, True)
    out = np.tensordot(mh, image.astype(np.float32), axes=(1, 0))  # [h', W, C]
    return np.einsum("bw,awc->abc", mw, out)


def central_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Center crop [H, W, C] to [size, size, C] (a ValueError if the image is smaller)."""
    if min(image.shape[:2]) < size:
        raise ValueError(
            f"an image of {image.shape[0]}x{image.shape[1]} is smaller than the {size}x{size} "
            "center crop"
        )
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def resize_small(image: np.ndarray, resolution: int, method: str = "bilinear") -> np.ndarray:
    """Resize so that the shorter side is `resolution` (aspect kept)."""
    h, w = image.shape[:2]
    ratio = resolution / min(h, w)
    return resize(image, (round(h * ratio), round(w * ratio)), method)


def crop_resize(image: np.ndarray, resolution: int, method: str = "bicubic") -> np.ndarray:
    """Center crop to the largest square, then resize to `resolution` (values clipped to [0, 1])."""
    crop = min(image.shape[:2])
    return np.clip(resize(central_crop(image, crop), (resolution, resolution), method), 0.0, 1.0)


def _to_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def preprocess_fn(name: str, spec: DataConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Per-example op: raw image (uint8 or float [0, 1]) -> float32 [0, 1] at image_size.

    `name`: the dataset as `sources.canonical_name` spells it ('celeba', 'lsun' crop their own way).
    """
    size = spec.image_size

    def op(image):
        image = _to_float(image)
        if size is None or image.ndim != 3:
            return image
        if name == "celeba":
            return resize_small(central_crop(image, 140), size)
        if name == "lsun":
            if size == 128:
                return central_crop(resize_small(image, size), size)
            # The original casts this resize to uint8 (truncating); we round.
            return np.round(crop_resize(image, size, "bicubic") * 255.0) / 255.0
        if image.shape[:2] == (size, size):
            return image
        if image.shape[0] != image.shape[1]:
            return crop_resize(image, size, "bilinear")
        return resize(image, (size, size))

    return op
