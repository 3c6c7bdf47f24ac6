"""Compatibility: `get_default_configs()` for ORIGINAL score_sde CelebA config files (see
configs/default_cifar10_configs.py): the CelebA dataset base plus the original defaults'
training and model fields, sigma_max 90."""

import ml_collections

from configs import datasets
from configs.default_cifar10_configs import with_original_defaults


def get_default_configs() -> ml_collections.ConfigDict:
    return with_original_defaults(datasets.celeba(), sigma_max=90.0)
