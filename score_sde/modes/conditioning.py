"""The config boundary of controllable generation: config.condition and config.model.class_dropout.

`ConditionConfig.from_config(config)` gives the typed, checked view of config.condition (absent:
task 'none'); `label_dropout(config)` the classifier-free-guidance dropout of training; and the
helpers read condition images and masks (files or named masks) into model space.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

TASKS = ("none", "class", "inpaint", "colorize")
GUIDANCE = ("cfg", "classifier")
NAMED_MASKS = ("keep_top", "keep_left", "keep_border", "keep_random")


@dataclasses.dataclass(frozen=True)
class ConditionConfig:
    task: str = "none"
    label: int = -1
    guidance: str = "cfg"
    scale: float = 1.0
    image: str = ""
    mask: str = "keep_top"
    repeats: int = 4
    classifier_workdir: str = ""

    @property
    def guided(self) -> bool:
        return self.task == "class" or self.label >= 0

    @classmethod
    def from_config(cls, config) -> ConditionConfig:
        if "condition" not in config:
            return cls()
        section = config.condition
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in section.keys():
            if key not in fields:
                raise ValueError(
                    f"config.condition.{key} is not a known field (known: "
                    f"{', '.join(sorted(fields))}); remove or rename it"
                )
        kw = {k: section[k] for k in fields if k in section}
        if "scale" in kw:
            kw["scale"] = float(kw["scale"])
        out = cls(**kw)
        if out.task not in TASKS:
            raise ValueError(
                f"config.condition.task ({out.task!r}) must be one of {', '.join(TASKS)}"
            )
        if out.guidance not in GUIDANCE:
            raise ValueError(
                f"config.condition.guidance ({out.guidance!r}) must be 'cfg' or 'classifier'"
            )
        if out.repeats < 1:
            raise ValueError(f"config.condition.repeats ({out.repeats}) must be >= 1")
        return out


def label_dropout(config) -> tuple[float, int]:
    """(rate, null label) of classifier-free-guidance training: config.model.class_dropout (0 if
    absent) and config.model.num_classes."""
    model = config.model
    rate = float(model.class_dropout) if "class_dropout" in model else 0.0
    num_classes = int(model.num_classes) if "num_classes" in model else 0
    if rate and num_classes <= 0:
        raise ValueError(
            f"config.model.class_dropout ({rate}) needs a class-conditional model: set "
            "config.model.num_classes to the number of labels"
        )
    return rate, num_classes


def named_mask(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A mask [H, W, 1] (1 = known) by name: keep_top / keep_left (that half known), keep_border
    (the central half of each side unknown), keep_random (each pixel known with probability 1/2)."""
    h, w = shape[0], shape[1]
    m = np.zeros((h, w, 1), np.float32)
    match name:
        case "keep_top":
            m[: h // 2] = 1
        case "keep_left":
            m[:, : w // 2] = 1
        case "keep_border":
            m[:] = 1
            m[h // 4 : h - h // 4, w // 4 : w - w // 4] = 0
        case "keep_random":
            m[:] = np.random.default_rng(seed).random((h, w, 1)) < 0.5
        case _:
            raise ValueError(
                f"config.condition.mask ({name!r}) is neither a file nor a named mask "
                f"({', '.join(NAMED_MASKS)})"
            )
    return m


def read_images(path: str) -> np.ndarray:
    """Images [N, H, W, C] in [0, 1] from a .png (one image) or .npz ('x' or the first array;
    uint8, or float in [0, 1])."""
    from score_sde import image_io

    if not os.path.isfile(path):
        raise ValueError(f"condition image/mask file {path!r} does not exist")
    if path.endswith(".npz"):
        with np.load(path) as f:
            a = f["x"] if "x" in f else f[f.files[0]]
    else:
        a = image_io.read_image(path)[None]
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., None] if a.shape[0] > 1 or path.endswith(".npz") else a[None]
    if a.ndim != 4:
        raise ValueError(f"{path}: expected images [N, H, W, C], got shape {a.shape}")
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def fit(images: np.ndarray, n: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    """`images` [N, H, W, C] -> [n, *shape]: cycled to n rows, channels broadcast (1 -> C)."""
    if images.shape[1:3] != tuple(shape[:2]):
        raise ValueError(
            f"{what} images are {images.shape[1]}x{images.shape[2]}, the model's are "
            f"{shape[0]}x{shape[1]}; resize them first"
        )
    if images.shape[-1] not in (1, shape[-1]):
        raise ValueError(f"{what} images have {images.shape[-1]} channels, the model {shape[-1]}")
    images = np.broadcast_to(images, images.shape[:3] + (shape[-1],))
    return images[np.arange(n) % len(images)]
