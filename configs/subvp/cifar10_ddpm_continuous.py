"""The DDPM network with the sub-VP SDE on CIFAR-10.

    python launch.py --config configs/subvp/cifar10_ddpm_continuous.py \
        --workdir runs/subvp_cifar10_ddpm_continuous

Parameters: 35,218,947 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.subvp(config)
    presets.ddpm(config)
    return config
