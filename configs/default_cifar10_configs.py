"""Compatibility: `get_default_configs()` for ORIGINAL score_sde config files dropped into this tree
(they start with `from configs.default_cifar10_configs import get_default_configs`).

The CIFAR-10 dataset base (configs/datasets.py) plus the fields the original defaults file adds
for every config, so that an original file loads unchanged: training.continuous / reduce_mean /
n_jitted_steps, and the dataset-level model fields (the SDE's parameters, dropout, the noise
embedding). The configs shipped here do not use it: they build on configs/datasets.py and
configs/presets.py, and write only the fields their network family reads.
"""

import ml_collections

from configs import datasets


def with_original_defaults(
    config: ml_collections.ConfigDict, *, sigma_max, num_scales: int = 1000, dropout: float = 0.1
) -> ml_collections.ConfigDict:
    """`config` with the original defaults' training and model fields (values as the originals
    write them: sigma_max is an int in the CIFAR-10 and LSUN files, a float in CelebA's)."""
    training = config.training
    training.continuous = True
    training.reduce_mean = False
    training.n_jitted_steps = 5
    model = config.model
    model.sigma_min = 0.01
    model.sigma_max = sigma_max
    model.num_scales = num_scales
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.dropout = dropout
    model.embedding_type = "fourier"
    return config


def get_default_configs() -> ml_collections.ConfigDict:
    return with_original_defaults(datasets.cifar10(), sigma_max=50)
