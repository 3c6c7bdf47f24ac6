"""What a network reads of the config, as protocols: the networks take any object with these
attributes (the typed config sections of score_sde.config, or a test's own), so the method
imports nothing from the config layer."""

from __future__ import annotations

from typing import Protocol


class DataSpec(Protocol):
    """config.data as a network sees it: one example [image_size, image_size, num_channels] or
    [dim], and whether model space is [-1, 1] (centered) or [0, 1]."""

    image_size: int | None
    num_channels: int | None
    dim: int | None
    centered: bool


class ModelSpec(Protocol):
    """config.model: `family` ('ncsnpp', 'ddpm', 'ncsnv2', 'mlp', 'uvit', 'dit') picks the network; each
    network reads the fields of its family (score_sde.config.families)."""

    name: str
    family: str
    dtype: str
    num_classes: int
