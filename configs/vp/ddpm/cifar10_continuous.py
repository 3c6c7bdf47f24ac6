"""The DDPM network trained with the continuous VP SDE on CIFAR-10.

    python launch.py --config configs/vp/ddpm/cifar10_continuous.py \
        --workdir runs/vp_ddpm_cifar10_continuous

Parameters: 35,218,947 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ddpm(config)
    return config
