"""Reproducing DDPM (Ho et al.) on CIFAR-10: discrete VP, ancestral sampling.

    python launch.py --config configs/vp/ddpm/cifar10.py --workdir runs/vp_ddpm_cifar10

Parameters: 35,218,947 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=False)
    presets.ddpm(config)
    config.sampling.predictor = "ancestral_sampling"  # DDPM's sampler
    return config
