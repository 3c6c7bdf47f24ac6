"""Datasets behind one random-access interface, with the paper's preprocessing.

    ds = get_dataset(config, "train", batch_size=128, seed=0,
                     process_index=jax.process_index(), process_count=jax.process_count())
    batch = ds.batch(step)            # {"x": [128, H, W, C] in model space, "label"?: [128]}
    for b in ds.epoch(500):           # one ordered pass; {"x", "mask" [500] bool, "label"?}
        ...

Batch order is a pure function of (seed, step): global position `i = step * G + p * b + j`
(G = b * process_count) reads example `perm_e[i mod N]` with `perm_e` a permutation drawn from
(seed, epoch e = i // N); process p takes its own slice of every global batch, so shards are
disjoint and a resumed run replays the same data. Augmentations (flip, uniform dequantization) are
drawn from (seed, global position), so they do not depend on the number of processes either.

Sources (`config.data.dataset`, case-insensitive):
- 'cifar10', 'svhn', 'celeba' (center crop 140, resize to image_size), 'celebahq' (TFDS
  `celeb_a_hq/<image_size>`), 'lsun' (`lsun/<config.data.category>`): prepared TFDS datasets read
  with `tfds.data_source` (array_record, random access, no TensorFlow at run time).
  Prepare once (needs TensorFlow on the machine that prepares, not at training time):
      pip install tensorflow tensorflow-datasets
      tfds build cifar10 --file_format=array_record [--data_dir=DIR]
  and point `config.data.data_dir` (or $TFDS_DATA_DIR) at DIR.
  With `config.data.path` set, these names read that `.npz` file or image folder instead.
- 'ffhq' or 'folder': a folder of images (`config.data.path`; `path/<split>/` if present).
- 'npz': `config.data.path`, arrays `x_<split>` / `<split>` / `x` / `images` (uint8 [N,H,W(,C)] or
  float in [0, 1]), labels `y_<split>` / `label` / `labels` optional.
- 'digits': scikit-learn's 8x8 digits (values 0..16 -> [0, 1]); train = first 1500, test = rest.
- 'toy/<name>': 2-D toys from `score_sde.data.toy_data.sample_toy` (fresh samples every step).

Checked when opened, before anything trains or writes (`check_against` of the source; one
ValueError naming the config.data field or the file and the fix): every image of a folder must
decode (`image_io.probe_image`: Pillow's full decode, a PNG's checksums verified, in threads),
or is left out with a warning if
`config.data.skip_bad_images`; examples must have config.data's shape after the preprocessing
(points of `dim`, images of `num_channels`); float images must lie in [0, 1]; a split must not be
empty and labels must be one per example.

Preprocessing (as the original): uint8 -> [0, 1]; per-dataset crop/resize (antialiased bilinear,
bicubic for LSUN at 256); random horizontal flip if `config.data.random_flip` and training;
uniform dequantization `(255 x + U) / 256` if `config.data.uniform_dequantization` (or
`uniform_dequantization=True` for bits/dim); then the data scaler ([0, 1] -> [-1, 1] if centered).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from score_sde.config import DataConfig
from score_sde.store import fs, image_io, quiet

TFDS_DATASETS = ("cifar10", "svhn", "celeba", "celebahq", "lsun")
OTHER_DATASETS = ("ffhq", "folder", "npz", "digits", "toy/<name>")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
_TOY_EVAL_EXAMPLES = 10_000


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


def _valid_names() -> str:
    return ", ".join(repr(n) for n in TFDS_DATASETS + OTHER_DATASETS)


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


def _preprocess_fn(name: str, spec: DataConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Per-example op: raw image (uint8 or float [0, 1]) -> float32 [0, 1] at image_size."""
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


# --------------------------------------------------------------------------------------------
# Random-access sources: len() and get(indices) -> (list of raw images, labels or None), and
# check_against(config.data): the one place where the data are checked against the config


_CHANNEL_KINDS = {1: "grayscale", 2: "grayscale + alpha", 3: "RGB", 4: "RGBA"}
_MAX_SHAPE_PROBES = 16  # distinct raw image sizes run through the preprocessing at open


def _channels(raw: tuple[int, ...]) -> int | None:
    """Channels of a raw example shape: [H, W] -> 1, [H, W, C] -> C, anything else None."""
    return 1 if len(raw) == 2 else (raw[2] if len(raw) == 3 else None)


def _representatives(shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """At most _MAX_SHAPE_PROBES of `shapes`: all if few, else the extremes of height and width
    (what a crop or resize can fail on) and the first ones."""
    shapes = list(shapes)
    if len(shapes) <= _MAX_SHAPE_PROBES:
        return shapes
    picks = [min(shapes, key=lambda s: s[0]), min(shapes, key=lambda s: s[1])]
    picks += [max(shapes, key=lambda s: s[0]), max(shapes, key=lambda s: s[1])]
    picks += shapes[: _MAX_SHAPE_PROBES - len(picks)]
    return list(dict.fromkeys(picks))


class _Source:
    """Random access to raw examples. Subclasses set `where` (the data, for messages) and
    give `example_shapes()`: {raw example shape: (how many, the first such example)}."""

    where: str = "the data"

    def example_shapes(self) -> dict[tuple[int, ...], tuple[int, str]]:
        raise NotImplementedError

    def check_values(self, data: DataConfig) -> None:
        """Checks of the values (array sources: labels, float range); nothing by default."""

    def check_against(self, data: DataConfig, preprocess: Callable) -> None:
        """Raises one ValueError naming the config.data field (or the data) and the fix when
        these data do not fit `data`: no examples, labels of another length, float images
        outside [0, 1], points of another dimension than config.data.dim, images with another
        number of channels than config.data.num_channels, or sizes the preprocessing cannot
        bring to config.data.image_size."""
        n = len(self)
        if n == 0:
            raise ValueError(f"{self.where} has no examples; put at least one example there")
        shapes = self.example_shapes()
        if data.dim is not None:
            self._check_vectors(data, shapes)
        else:
            self._check_images(data, shapes, preprocess, n)
        self.check_values(data)

    def _check_vectors(self, data: DataConfig, shapes: dict) -> None:
        for raw, (_, first) in shapes.items():
            if len(raw) == 1 and raw[0] != data.dim:
                raise ValueError(
                    f"config.data.dim ({data.dim}) does not match the data: {first} holds "
                    f"points of dimension {raw[0]} ([N, {raw[0]}]); set "
                    f"--config.data.dim={raw[0]}"
                )
            if len(raw) != 1:
                raise ValueError(
                    f"config.data.dim ({data.dim}) asks for points [N, {data.dim}], but {first} "
                    f"holds examples of shape {raw}; for images remove config.data.dim and set "
                    "config.data.image_size and config.data.num_channels"
                )

    def _check_images(self, data: DataConfig, shapes: dict, preprocess: Callable, n: int):
        size, want = data.image_size, data.num_channels
        by_channels: dict[int | None, list] = {}
        for raw, (count, first) in shapes.items():
            by_channels.setdefault(_channels(raw), []).append((raw, count, first))
        for c, group in by_channels.items():
            raw, _, first = group[0]
            if c is None:
                hint = (
                    f"set --config.data.dim={raw[0]} for points (and a vector model such as "
                    "configs/toy/base.py's mlp)"
                    if len(raw) == 1
                    else "save images as [N, H, W, C] (or [N, H, W] for grayscale)"
                )
                raise ValueError(
                    f"{first} holds examples of shape {raw}, not images [H, W, C] "
                    f"(config.data.image_size={size}, config.data.num_channels={want}); {hint}"
                )
            if c == want:
                continue
            if c > 4 and raw[0] <= 4:
                raise ValueError(
                    f"{first} holds examples of shape {raw}: channels first ([N, C, H, W]); "
                    "save them as [N, H, W, C], e.g. np.transpose(x, (0, 2, 3, 1))"
                )
        wrong = {c: g for c, g in by_channels.items() if c != want}
        if wrong:
            c, group = next(iter(wrong.items()))
            count, first = sum(k for _, k, _ in group), group[0][2]
            kind = _CHANNEL_KINDS.get(c, f"{c}-channel")
            if want in by_channels:  # most fit: these do not
                raise ValueError(
                    f"config.data.num_channels ({want}) does not match {count} of {n} images "
                    f"of {self.where}: they have {c} channel(s) ({kind}), e.g. {first}; convert "
                    f"them to {want} channel(s) or remove them"
                )
            if len(wrong) > 1:
                mixed = ", ".join(
                    f"{sum(k for _, k, _ in g)} with {c} (e.g. {g[0][2]})" for c, g in wrong.items()
                )
                raise ValueError(
                    f"config.data.num_channels ({want}) does not match the data: the images of "
                    f"{self.where} have different numbers of channels: {mixed}; convert them all "
                    f"to {want} channel(s)"
                )
            example = "" if first == self.where else f", e.g. {first}"
            raise ValueError(
                f"config.data.num_channels ({want}) does not match the data: {self.where} holds "
                f"{c}-channel ({kind}) images{example}; set --config.data.num_channels={c}"
            )
        for raw in _representatives(shapes):
            first = shapes[raw][1]
            try:
                out = preprocess(np.zeros(raw, np.uint8)).shape
            except ValueError as e:
                raise ValueError(
                    f"config.data.image_size ({size}): the preprocessing of dataset "
                    f"{data.dataset!r} cannot use {first} ({e}); use larger images, or "
                    "dataset 'folder' / 'npz' for images already cropped"
                ) from None
            if out[:2] != (size, size):
                raise ValueError(
                    f"config.data.image_size ({size}): the preprocessing of dataset "
                    f"{data.dataset!r} turns {first} of {raw[0]}x{raw[1]} into {out[0]}x"
                    f"{out[1]}; use images of {size}x{size}, or dataset 'folder' / 'npz'"
                )


@dataclasses.dataclass
class _ArraySource(_Source):
    images: Any  # [N, ...] uint8 or float in [0, 1]
    labels: np.ndarray | None = None
    where: str = "the arrays"
    labels_where: str = "the labels"

    def __len__(self) -> int:
        return len(self.images)

    def get(self, idx: np.ndarray):
        labels = None if self.labels is None else np.asarray(self.labels)[idx]
        return [self.images[i] for i in idx], labels

    def example_shapes(self):
        return {tuple(self.images.shape[1:]): (len(self), self.where)}

    def check_values(self, data: DataConfig) -> None:
        x = self.images
        if self.labels is not None and (np.ndim(self.labels) != 1 or len(self.labels) != len(x)):
            raise ValueError(
                f"{self.labels_where} of shape {np.shape(self.labels)} does not match "
                f"{self.where} ({len(x)} examples); save one integer label per example "
                f"(shape [{len(x)}]) or remove it"
            )
        if not np.issubdtype(x.dtype, np.floating):
            return
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(
                f"{self.where} contains NaN or infinite values; remove or fix those examples"
            )
        tol = 0.5 / 255  # values that round to 0..255 in uint8
        if data.dim is None and (lo < -tol or hi > 1 + tol):
            fix = (
                "map them to [0, 1] with (x + 1) / 2 (config.data.centered does the rest)"
                if lo < -tol and hi <= 1 + tol
                else "divide by 255 or save them as uint8"
            )
            raise ValueError(
                f"{self.where} is {x.dtype} with values in [{lo:g}, {hi:g}]; float images must "
                f"lie in [0, 1]: {fix}"
            )


@functools.lru_cache(maxsize=1 << 20)
def _probe(path: str, size: int, mtime_ns: int) -> tuple[int, ...] | str:
    """(H, W, C) of an image file, or why it cannot be read; cached per file version."""
    del size, mtime_ns  # the cache key: a changed file is probed again
    try:
        return tuple(image_io.probe_image(path))
    except ValueError as e:
        return str(e)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"


def _probe_file(path: str) -> tuple[int, ...] | str:
    try:
        st = fs.path(path).stat()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return _probe(path, st.length, st.mtime)


def _list_bad(bad: list[tuple[str, str]], show: int = 3) -> str:
    listed = ", ".join(f"{f} ({why})" for f, why in bad[:show])
    return listed + (f" and {len(bad) - show} more" if len(bad) > show else "")


@dataclasses.dataclass
class _FolderSource(_Source):
    """Image files, each checked to decode (image_io.probe_image) when the folder is opened."""

    files: Sequence[str]
    shapes: dict[tuple[int, ...], tuple[int, str]]
    where: str = "the folder"
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why) of undecodable files left out

    @classmethod
    def open(cls, root: str, files: Sequence[str], skip_bad: bool) -> _FolderSource:
        """Probes every file (in threads: zlib and Pillow release the GIL). Undecodable files
        raise one ValueError naming the first ones and the count, or with `skip_bad` are left
        out with a warning."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            probes = list(pool.map(_probe_file, files))
        good, bad, shapes = [], [], {}
        for f, p in zip(files, probes, strict=True):
            if isinstance(p, str):
                bad.append((f, p))
                continue
            good.append(f)
            count, first = shapes.get(p, (0, f))
            shapes[p] = (count + 1, first)
        where = f"the folder {root}"
        if bad and (not skip_bad or not good):
            fix = (
                "delete or replace them, or set --config.data.skip_bad_images=True to train on "
                f"the {len(good)} others"
                if good
                else "check that config.data.path points at the images"
            )
            raise ValueError(
                f"{len(bad)} of {len(files)} images in {where} cannot be decoded: "
                f"{_list_bad(bad)}; {fix}"
            )
        if bad:
            from absl import logging

            logging.warning(
                "skipping %d of %d images in %s that cannot be decoded "
                "(config.data.skip_bad_images=True): %s",
                len(bad),
                len(files),
                where,
                _list_bad(bad),
            )
        return cls(good, shapes, where, tuple(bad))

    def __len__(self) -> int:
        return len(self.files)

    def get(self, idx: np.ndarray):
        images = []
        for i in idx:
            try:
                images.append(image_io.read_image(self.files[i]))
            except (OSError, ValueError) as e:  # changed since it was checked at open
                raise ValueError(
                    f"image {self.files[i]} cannot be decoded ({e}); it changed after the "
                    "dataset was opened: replace or delete it and rerun"
                ) from None
        return images, None

    def example_shapes(self):
        return self.shapes


@dataclasses.dataclass
class _TfdsSource(_Source):
    source: Any  # tfds ArrayRecordDataSource
    where: str = "the TFDS dataset"

    def __len__(self) -> int:
        return len(self.source)

    def _read(self, idx: np.ndarray) -> list:
        keys = [int(i) for i in idx]
        try:  # one batched array_record read where supported
            return list(self.source.__getitems__(keys))
        except (AttributeError, TypeError):  # older sources, TFDS's mock
            return [self.source[i] for i in keys]

    def get(self, idx: np.ndarray):
        images, labels = [], []
        for ex in self._read(idx):
            image = ex["image"]
            if isinstance(image, bytes | np.bytes_):
                image = image_io.decode_image(bytes(image))
            images.append(np.asarray(image))
            if "label" in ex:
                labels.append(ex["label"])
        return images, (np.asarray(labels, np.int32) if labels else None)

    def example_shapes(self):
        """The shape of example 0 (TFDS image datasets share one shape or nearly)."""
        (image,), _ = self.get(np.zeros(1, np.int64))
        return {tuple(image.shape): (len(self), f"{self.where} (example 0)")}


# --------------------------------------------------------------------------------------------
# The dataset


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(s) for s in stream)])


class Dataset:
    """Random-access dataset: `batch(step)` for training, `epoch(batch_size)` for evaluation.

    `batch_size` is per process; the global batch is `batch_size * process_count`.
    """

    def __init__(
        self,
        source,
        preprocess: Callable[[np.ndarray], np.ndarray],
        scaler: Callable,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        random_flip: bool = False,
        uniform_dequantization: bool = False,
        name: str = "",
    ):
        if len(source) == 0:
            raise ValueError(f"dataset {name!r} is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index ({process_index}) must be in [0, process_count={process_count})"
            )
        self.source, self.preprocess, self.scaler = source, preprocess, scaler
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.random_flip, self.uniform_dequantization = random_flip, uniform_dequantization
        self.name = name
        self._perm_cache: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, num_examples={self.num_examples}, batch_size="
            f"{self.batch_size}, process {self.process_index}/{self.process_count})"
        )

    @property
    def num_examples(self) -> int:
        return len(self.source)

    @property
    def element_shape(self) -> tuple[int, ...]:
        return self.batch(0)["x"].shape[1:]

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 2:
                self._perm_cache.clear()
            self._perm_cache[epoch] = _rng(self.seed, 0, epoch).permutation(self.num_examples)
        return self._perm_cache[epoch]

    def positions(self, step: int) -> np.ndarray:
        """Global stream positions [batch_size] that this process reads at `step`."""
        start = step * self.batch_size * self.process_count + self.process_index * self.batch_size
        return np.arange(start, start + self.batch_size, dtype=np.int64)

    def indices(self, step: int) -> np.ndarray:
        """Example indices [batch_size] that this process reads at `step`."""
        pos = self.positions(step)
        epochs, offsets = np.divmod(pos, self.num_examples)
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._permutation(int(e))[offsets[sel]]
        return out

    def _load(self, idx: np.ndarray, keys: Sequence[tuple[int, ...]], augment: bool):
        raw, labels = self.source.get(idx)
        xs = []
        for image, key in zip(raw, keys, strict=True):
            x = self.preprocess(image)
            rng = _rng(self.seed, *key)
            if augment and self.random_flip and x.ndim == 3 and rng.random() < 0.5:
                x = x[:, ::-1]
            if self.uniform_dequantization:
                x = (rng.random(x.shape, dtype=np.float32) + x * 255.0) / 256.0
            xs.append(x)
        out = {"x": np.asarray(self.scaler(np.stack(xs).astype(np.float32)))}
        if labels is not None:
            out["label"] = np.asarray(labels, np.int32)
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch `step`: {"x": [batch_size, ...], "label"?}."""
        pos = self.positions(step)
        return self._load(self.indices(step), [(1, int(p)) for p in pos], augment=True)

    def num_batches(self, batch_size: int | None = None) -> int:
        """Number of batches `epoch(batch_size)` yields (the same on every process)."""
        g = (batch_size or self.batch_size) * self.process_count
        return -(-self.num_examples // g)

    def epoch(
        self, batch_size: int | None = None, *, repeat: int = 0
    ) -> Iterator[dict[str, np.ndarray]]:
        """One ordered pass (no shuffle, no flip): {"x", "mask" [b] bool, "label"?} per batch.

        Global batch k covers examples [k G, (k + 1) G), G = b * process_count; this process
        takes its slice. The last batch is padded (repeating example 0) with mask False, so every
        process yields `num_batches(b)` batches of the same shape. Dequantization noise (if on)
        is drawn from (seed, repeat, index): use `repeat` for several draws (bits/dim).
        """
        b = batch_size or self.batch_size
        g = b * self.process_count
        for k in range(self.num_batches(b)):
            idx = np.arange(k * g + self.process_index * b, k * g + (self.process_index + 1) * b)
            mask = idx < self.num_examples
            idx = np.where(mask, idx, 0)
            out = self._load(idx, [(2, repeat, int(i)) for i in idx], augment=False)
            out["mask"] = mask
            yield out


class ToyDataset:
    """2-D toy distribution: fresh samples per step from `sample_toy(name, key, n)`.

    `batch(step)` draws from key(seed) folded with (step, process_index); `epoch` iterates a fixed
    set of `num_examples` samples drawn from key(seed) folded with the split.
    """

    def __init__(
        self,
        name: str,
        split: str,
        scaler: Callable,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        num_examples: int = _TOY_EVAL_EXAMPLES,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index ({process_index}) must be in [0, process_count={process_count})"
            )
        self.name, self.split, self.scaler = name, split, scaler
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.num_examples = int(num_examples)

    def check_against(self, data: DataConfig) -> None:
        """The toys are 2-D points: config.data.dim must be 2 and the name a known toy."""
        from score_sde.data import toy_data

        if self.name not in toy_data.TOY_NAMES:
            raise ValueError(
                f"config.data.dataset ({data.dataset!r}) is not a toy; use one of "
                + ", ".join(f"'toy/{n}'" for n in toy_data.TOY_NAMES)
            )
        if data.shape != (2,):
            field = (
                f"config.data.dim ({data.dim})"
                if data.dim is not None
                else f"config.data.image_size / num_channels ({data.shape})"
            )
            raise ValueError(
                f"{field} does not match dataset {data.dataset!r}, whose examples are 2-D "
                "points; set --config.data.dim=2"
            )

    def _sample(self, key, n):
        from score_sde.data import toy_data

        return np.asarray(toy_data.sample_toy(self.name, key, n), np.float32)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        import jax

        key = jax.random.fold_in(jax.random.key(self.seed), 1)
        key = jax.random.fold_in(jax.random.fold_in(key, step), self.process_index)
        return {"x": self._sample(key, self.batch_size)}

    def num_batches(self, batch_size: int | None = None) -> int:
        g = (batch_size or self.batch_size) * self.process_count
        return -(-self.num_examples // g)

    def epoch(self, batch_size: int | None = None, *, repeat: int = 0):
        import jax

        b = batch_size or self.batch_size
        g = b * self.process_count
        split_id = {"train": 0, "test": 1, "eval": 1, "validation": 1}.get(self.split, 2)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), 2), split_id)
        data = self._sample(key, self.num_examples)
        for k in range(self.num_batches(b)):
            idx = np.arange(k * g + self.process_index * b, k * g + (self.process_index + 1) * b)
            mask = idx < self.num_examples
            yield {"x": data[np.where(mask, idx, 0)], "mask": mask}


def prefetch(
    dataset: Dataset | ToyDataset, steps: Iterable[int], buffer: int = 2
) -> Iterator[dict[str, np.ndarray]]:
    """`dataset.batch(step)` for each step, read `buffer` steps ahead on a background thread.

    The batches are the same as without prefetching (each is a pure function of its step).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: collections.deque = collections.deque()
        for step in steps:
            pending.append(pool.submit(dataset.batch, step))
            if len(pending) > buffer:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------------------------
# Source factories


_TFDS = {
    # name: (tfds name, {our split: tfds split})
    "cifar10": ("cifar10", {"train": "train", "test": "test"}),
    "svhn": ("svhn_cropped", {"train": "train", "test": "test"}),
    "celeba": ("celeb_a", {"train": "train", "test": "validation"}),
    "celebahq": ("celeb_a_hq/{image_size}", {"train": "train", "test": "train"}),
    "lsun": ("lsun/{category}", {"train": "train", "test": "validation"}),
}


def _canonical_split(split: str) -> str:
    return {"eval": "test", "validation": "test", "val": "test"}.get(split, split)


def _tfds_source(name: str, split: str, spec: DataConfig):
    tfds_name, splits = _TFDS[name]
    if name == "lsun" and not spec.category:
        raise ValueError("config.data.category must name the LSUN category, e.g. 'church_outdoor'")
    tfds_name = tfds_name.format(image_size=spec.image_size, category=spec.category)
    tfds_split = splits.get(_canonical_split(split), split)
    data_dir = spec.data_dir or os.environ.get("TFDS_DATA_DIR")
    how = (
        f"prepare it once with: pip install tensorflow tensorflow-datasets && tfds build "
        f"{tfds_name} --file_format=array_record"
        + (f" --data_dir={data_dir}" if data_dir else "")
        + " (then set config.data.data_dir or $TFDS_DATA_DIR to that directory"
        + (
            "; celeb_a_hq needs its manual download first, see the TFDS catalog"
            if name == "celebahq"
            else ""
        )
        + "), or set config.data.path to an .npz file or a folder of images"
    )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(f"dataset {name!r} needs tensorflow-datasets; {how}") from e
    try:
        with quiet.absl_quiet():  # TFDS's own warnings about the missing folder come first else
            source = tfds.data_source(
                tfds_name,
                split=tfds_split,
                data_dir=data_dir,
                download=False,
            )
    except Exception as e:  # tfds raises several types for a missing / non-array_record dataset
        raise ValueError(
            f"TFDS dataset {tfds_name!r} (split {tfds_split!r}) is not prepared as array_record "
            f"in {data_dir or '~/tensorflow_datasets'}: {type(e).__name__}: {e}; {how}"
        ) from e
    return _TfdsSource(source, where=f"TFDS {tfds_name!r} split {tfds_split!r}")


def _npz_source(split: str, path: str | None):
    if not path:
        raise ValueError("config.data.path must point to an .npz file for dataset 'npz'")
    if not fs.path(path).is_file():
        raise ValueError(
            f"config.data.path ({path!r}) is not a file; write one with "
            "np.savez(path, x_train=uint8 [N, H, W, C], x_test=..., y_train=optional labels)"
        )
    try:
        arrays = fs.load_npz(path)
        files = list(arrays)
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as e:
        raise ValueError(
            f"config.data.path ({path!r}) is not a readable .npz file ({type(e).__name__}: "
            f"{e}); write one with np.savez(path, x_train=uint8 [N, H, W, C], x_test=...)"
        ) from None
    split = _canonical_split(split)
    for image_key in (f"x_{split}", split, "x", "images", "arr_0"):
        if image_key in files:
            images = arrays[image_key]
            break
    else:
        raise ValueError(
            f"{path!r} has arrays {files}; expected one of x_{split}, {split}, x, images, arr_0"
        )
    where = f"{path} array {image_key!r}"
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{where} is {images.dtype}; save images as uint8 (0..255) or float in [0, 1], "
            "points as float"
        )
    # Labels: the first candidate of the images' length. One of another length that is meant for
    # these images (y_<split>, or a shared name next to shared images) is an error in
    # check_against, not silently dropped; a shared name next to x_<split> may be another split's.
    candidates = [k for k in (f"y_{split}", f"label_{split}", "label", "labels", "y") if k in files]
    fits = [k for k in candidates if np.shape(arrays[k])[:1] == (len(images),)]
    shared_images = image_key in ("x", "images", "arr_0")
    meant = [k for k in candidates if k.endswith(f"_{split}") or shared_images]
    label_key = (fits or meant or [None])[0]
    labels = None if label_key is None else arrays[label_key]
    return _ArraySource(images, labels, where, f"array {label_key!r}")


def _folder_source(split: str, path: str | None, name: str, skip_bad: bool = False):
    if not path or not fs.path(path).is_dir():
        raise ValueError(
            f"dataset {name!r} reads a folder of images: set config.data.path (now "
            f"{path!r}) to a directory of PNG/JPEG files (optionally with train/ and test/ "
            "subfolders); FFHQ: download the images (github.com/NVlabs/ffhq-dataset) and resize "
            "them to config.data.image_size"
        )
    root = path
    for sub in {split, _canonical_split(split)}:
        if fs.path(os.path.join(root, sub)).is_dir():
            root = os.path.join(root, sub)
            break
    files = [f for f in fs.files_under(root) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}")
    return _FolderSource.open(root, files, skip_bad)


def _digits_source(split: str):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    sl = slice(0, 1500) if _canonical_split(split) == "train" else slice(1500, None)
    return _ArraySource(images[sl], digits.target[sl].astype(np.int32), "dataset 'digits'")


def get_dataset(
    data: DataConfig,
    split: str,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    uniform_dequantization: bool | None = None,
    augment: bool | None = None,
):
    """The dataset `config.data.dataset` for `split` ('train' | 'test'; 'eval' = 'test').

    The data are checked against `data` first (`check_against`: one ValueError naming the field
    and the fix). `batch_size` is per process. `uniform_dequantization` overrides
    `config.data.uniform_dequantization` (bits/dim uses True); `augment` (default: split ==
    'train') enables the random flip of `config.data.random_flip`.
    """
    name = data.dataset.lower().replace("-", "").replace("_", "")
    scaler = get_data_scaler(data)
    path = os.path.expanduser(data.path or data.tfrecords_path or "") or None
    if data.is_toy:
        toy = ToyDataset(
            data.dataset.split("/", 1)[1],
            _canonical_split(split),
            scaler,
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        toy.check_against(data)
        return toy
    skip_bad = data.skip_bad_images
    if name in _TFDS and path:  # a prepared copy instead of TFDS: .npz file or folder
        source = (
            _npz_source(split, path)
            if path.endswith(".npz")
            else _folder_source(split, path, name, skip_bad)
        )
    elif name in _TFDS:
        source = _tfds_source(name, split, data)
    elif name == "npz":
        source = _npz_source(split, path)
    elif name in ("folder", "ffhq", "images"):
        source = _folder_source(split, path, name, skip_bad)
    elif name == "digits":
        source = _digits_source(split)
    else:
        raise ValueError(
            f"unknown config.data.dataset {data.dataset!r}; valid names: {_valid_names()}"
        )
    preprocess = _preprocess_fn(name, data)
    source.check_against(data, preprocess)  # before anything trains or writes
    if augment is None:
        augment = _canonical_split(split) == "train"
    dequantize = (
        data.uniform_dequantization if uniform_dequantization is None else uniform_dequantization
    )
    return Dataset(
        source,
        preprocess,
        scaler,
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        random_flip=bool(data.random_flip and augment),
        uniform_dequantization=bool(dequantize),
        name=data.dataset,
    )


def get_process_dataset(data: DataConfig, split: str, *, global_batch: int, seed: int, **kw):
    """This process's share of `split`: its rows of every global batch of `global_batch`."""
    import jax

    n = jax.process_count()
    if global_batch % n:
        raise ValueError(
            f"batch size {global_batch} must be divisible by the number of processes ({n})"
        )
    return get_dataset(
        data,
        split,
        batch_size=global_batch // n,
        seed=seed,
        process_index=jax.process_index(),
        process_count=n,
        **kw,
    )
