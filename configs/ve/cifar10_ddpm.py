"""The DDPM network trained with SMLD (discrete VE) on CIFAR-10.

    python launch.py --config configs/ve/cifar10_ddpm.py --workdir runs/ve_cifar10_ddpm

Parameters: 35,218,947 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0, continuous=False)
    presets.ddpm(config)
    return config
