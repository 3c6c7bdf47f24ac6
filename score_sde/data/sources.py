"""Random-access sources of raw examples, one per kind of storage, and `get_source` that picks one
for config.data.

    source = get_source(config.data, "train")   # len(source); source.get(idx) -> (raw, labels)
    source.check_against(config.data, preprocess_fn(canonical_name(dataset), config.data))

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

Checked when opened, before anything trains or writes (`check_against` of the source; one
ValueError naming the config.data field or the file and the fix): every image of a folder must
decode (`image_io.probe_image`: Pillow's full decode, a PNG's checksums verified, in threads),
or is left out with a warning if
`config.data.skip_bad_images`; examples must have config.data's shape after the preprocessing
(points of `dim`, images of `num_channels`); float images must lie in [0, 1]; a split must not be
empty and labels must be one per example.

The 2-D toys ('toy/<name>') have no source: `toy_stream.ToyDataset` samples them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from score_sde.config import DataConfig
from score_sde.store import fs, image_io, quiet

TFDS_DATASETS = ("cifar10", "svhn", "celeba", "celebahq", "lsun")
OTHER_DATASETS = ("ffhq", "folder", "npz", "digits", "toy/<name>")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")


def _valid_names() -> str:
    return ", ".join(repr(n) for n in TFDS_DATASETS + OTHER_DATASETS)


def canonical_name(dataset: str) -> str:
    """config.data.dataset as the sources and the preprocessing name it: 'CelebA-HQ' -> 'celebahq'."""
    return dataset.lower().replace("-", "").replace("_", "")


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
    # Set when the split asked for is not in the data and another one is read in its place.
    fallback: str | None = None

    def example_shapes(self) -> dict[tuple[int, ...], tuple[int, str]]:
        raise NotImplementedError

    def check_values(self, data: DataConfig) -> None:
        """Checks of the values (array sources: labels, float range); nothing by default."""

    def has_labels(self) -> bool:
        """Whether `get` returns labels (one per example)."""
        return False

    def check_labels(self, num_classes: int, field: str) -> None:
        """A class-conditional model (`field`, e.g. config.model.num_classes, > 0) needs labels;
        sources that hold labels check them further (`_ArraySource`)."""
        if num_classes > 0 and not self.has_labels():
            raise ValueError(
                f"{field} ({num_classes}) asks for a class-conditional model, but {self.where} "
                "has no labels; use labelled data (an .npz with y_train / y_test: integers in "
                f"0..{num_classes - 1}) or train an unconditional model with "
                f"--{field}=0 (and --config.model.class_dropout=0)"
            )

    def check_against(
        self,
        data: DataConfig,
        preprocess: Callable,
        num_classes: int = 0,
        classes_field: str = "config.model.num_classes",
    ) -> None:
        """Raises one ValueError naming the config.data field (or the data) and the fix when
        these data do not fit `data`: no examples, labels of another length, float images
        outside [0, 1], points of another dimension than config.data.dim, images with another
        number of channels than config.data.num_channels, or sizes the preprocessing cannot
        bring to config.data.image_size; with `num_classes` > 0 (the model's `classes_field`),
        no labels, or labels that are not integers in [0, num_classes)."""
        n = len(self)
        if n == 0:
            raise ValueError(f"{self.where} has no examples; put at least one example there")
        shapes = self.example_shapes()
        if data.dim is not None:
            self._check_vectors(data, shapes)
        else:
            self._check_images(data, shapes, preprocess, n)
        self.check_values(data)
        self.check_labels(num_classes, classes_field)

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

    def has_labels(self) -> bool:
        return self.labels is not None

    def check_labels(self, num_classes: int, field: str) -> None:
        """Labels are integers (or integral floats): the batches carry them as int32; for a
        class-conditional model they lie in [0, num_classes) (index num_classes is the null
        label of classifier-free guidance)."""
        super().check_labels(num_classes, field)
        y = self.labels
        if y is None:
            return
        y = np.asarray(y)
        fix = f"save integer labels 0..{max(num_classes, 1) - 1} (one per example)"
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise ValueError(
                f"{self.labels_where} holds {y.dtype} labels (e.g. {y.flat[0]!r}), not integers; "
                f"{fix}, e.g. with np.unique(y, return_inverse=True)[1]"
            )
        if num_classes <= 0 or y.size == 0:
            return
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))]
            raise ValueError(
                f"{self.labels_where} holds {len(bad)} labels that are not whole numbers (e.g. "
                f"{float(bad[0]):g}); {fix}"
            )
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= num_classes:
            more = "" if lo < 0 else f", or set --{field}={hi + 1}"
            raise ValueError(
                f"{self.labels_where} holds labels in [{lo}, {hi}], but {field} ({num_classes}) "
                f"takes 0..{num_classes - 1}; relabel them to 0..{num_classes - 1}{more}"
            )

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

    def has_labels(self) -> bool:
        return self.get(np.zeros(1, np.int64))[1] is not None

    def example_shapes(self):
        """The shape of example 0 (TFDS image datasets share one shape or nearly)."""
        (image,), _ = self.get(np.zeros(1, np.int64))
        return {tuple(image.shape): (len(self), f"{self.where} (example 0)")}


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


def canonical_split(split: str) -> str:
    """'eval' / 'validation' / 'val' -> 'test'; other names unchanged."""
    return {"eval": "test", "validation": "test", "val": "test"}.get(split, split)


def _tfds_source(name: str, split: str, spec: DataConfig):
    tfds_name, splits = _TFDS[name]
    if name == "lsun" and not spec.category:
        raise ValueError("config.data.category must name the LSUN category, e.g. 'church_outdoor'")
    tfds_name = tfds_name.format(image_size=spec.image_size, category=spec.category)
    tfds_split = splits.get(canonical_split(split), split)
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
    out = _TfdsSource(source, where=f"TFDS {tfds_name!r} split {tfds_split!r}")
    if canonical_split(split) == "test" and tfds_split == splits.get("train"):
        out.fallback = f"{tfds_name!r} has no held-out split: the test split is its {tfds_split!r}"
    return out


def _not_npz(path: str, error: Exception) -> str:
    """Why `path` is not an .npz (a zip archive of .npy files), from its first bytes."""
    try:
        head = fs.path(path).read_bytes()[:8]
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if head.startswith(b"\x93NUMPY"):
        return "it is one .npy array (np.save), not an .npz archive (np.savez)"
    if not head.startswith(b"PK"):
        return f"it starts with {head!r}, not a zip archive as np.savez writes"
    return f"{type(error).__name__}: {error}"


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
    except (OSError, ValueError, TypeError, zipfile.BadZipFile, AttributeError) as e:
        raise ValueError(
            f"config.data.path ({path!r}) is not a readable .npz file ({_not_npz(path, e)}); "
            "write one with np.savez(path, x_train=uint8 [N, H, W, C], x_test=...)"
        ) from None
    split = canonical_split(split)
    for image_key in (f"x_{split}", split, "x", "images", "arr_0"):
        if image_key in files:
            images = arrays[image_key]
            break
    else:
        raise ValueError(
            f"{path!r} has arrays {files}; expected one of x_{split}, {split}, x, images, arr_0"
        )
    where = f"{path} array {image_key!r}"
    fallback = None
    if split == "test" and image_key not in ("x_test", "test"):
        fallback = (
            f"{path} has no x_test array: the test split is {image_key!r}, the training images "
            "(add x_test to evaluate on held-out images)"
        )
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
    source = _ArraySource(images, labels, where, f"array {label_key!r}")
    source.fallback = fallback
    return source


def images_under(root: str) -> list[str]:
    """The image files (IMAGE_EXTENSIONS, any case) under `root`, local or gs://, recursively."""
    return [f for f in fs.files_under(root) if f.lower().endswith(IMAGE_EXTENSIONS)]


def _folder_source(split: str, path: str | None, name: str, skip_bad: bool = False):
    if not path or not fs.path(path).is_dir():
        raise ValueError(
            f"dataset {name!r} reads a folder of images: set config.data.path (now "
            f"{path!r}) to a directory of PNG/JPEG files (optionally with train/ and test/ "
            "subfolders); FFHQ: download the images (github.com/NVlabs/ffhq-dataset) and resize "
            "them to config.data.image_size"
        )
    root = path
    for sub in {split, canonical_split(split)}:
        if fs.path(os.path.join(root, sub)).is_dir():
            root = os.path.join(root, sub)
            break
    files = images_under(root)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}")
    source = _FolderSource.open(root, files, skip_bad)
    if root == path and canonical_split(split) == "test":
        source.fallback = (
            f"{path} has no test/ folder: the test split is every image under it, the training "
            "images (add a test/ folder to evaluate on held-out images)"
        )
    return source


def _digits_source(split: str):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    sl = slice(0, 1500) if canonical_split(split) == "train" else slice(1500, None)
    labels = digits.target[sl].astype(np.int32)
    return _ArraySource(images[sl], labels, "dataset 'digits'", "dataset 'digits'")


def get_source(data: DataConfig, split: str) -> _Source:
    """The raw examples of `config.data.dataset` (not a toy) for `split`, not yet checked against
    `data` (`check_against`). With `config.data.path` (or `tfrecords_path`) a TFDS name reads that
    `.npz` file or folder instead. An unknown name: a ValueError listing the valid ones."""
    name = canonical_name(data.dataset)
    path = os.path.expanduser(data.path or data.tfrecords_path or "") or None
    skip_bad = data.skip_bad_images
    if name in _TFDS and path:  # a prepared copy instead of TFDS: .npz file or folder
        return (
            _npz_source(split, path)
            if path.endswith(".npz")
            else _folder_source(split, path, name, skip_bad)
        )
    if name in _TFDS:
        return _tfds_source(name, split, data)
    if name == "npz":
        return _npz_source(split, path)
    if name in ("folder", "ffhq", "images"):
        return _folder_source(split, path, name, skip_bad)
    if name == "digits":
        return _digits_source(split)
    raise ValueError(f"unknown config.data.dataset {data.dataset!r}; valid names: {_valid_names()}")


def choices(source: _Source, data: DataConfig, name: str) -> list[str]:
    """One line per choice the loading makes that config.data does not spell out: another split
    read in place of the one asked for, a crop or a resize to config.data.image_size. `name`:
    the dataset as `canonical_name` spells it."""
    out = [source.fallback] if source.fallback else []
    size = data.image_size
    if data.dim is not None or size is None:
        return out
    if name in ("celeba", "lsun"):
        crop = "a 140x140 centre crop" if name == "celeba" else "a centre crop"
        return out + [f"{name}: {crop}, resized to {size}x{size}, as the original code does"]
    for raw, (count, first) in source.example_shapes().items():
        if len(raw) < 2 or tuple(raw[:2]) == (size, size):
            continue
        h, w = raw[:2]
        what = f"{count} image(s) of {h}x{w} (the first: {first})"
        if h != w:
            m = min(h, w)
            out.append(
                f"{what} are centre-cropped to {m}x{m} and resized to {size}x{size} "
                "(config.data.image_size)"
            )
        else:
            out.append(f"{what} are resized to {size}x{size} (config.data.image_size)")
    return out
