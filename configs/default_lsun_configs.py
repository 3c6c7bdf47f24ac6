"""Compatibility: `get_default_configs()` for ORIGINAL score_sde LSUN (and CelebA-HQ, FFHQ) config
files (see configs/default_cifar10_configs.py): the LSUN 256 px base without a category (the
original files set data.category, or replace data.dataset) plus the original defaults' training
and model fields, sigma_max 378, N = 2000, no dropout."""

import ml_collections

from configs import datasets
from configs.default_cifar10_configs import with_original_defaults


def get_default_configs() -> ml_collections.ConfigDict:
    config = datasets.high_resolution("LSUN", 256)
    return with_original_defaults(config, sigma_max=378, num_scales=2000, dropout=0.0)
