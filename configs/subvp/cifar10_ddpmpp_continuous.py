"""DDPM++ (cont.) on CIFAR-10 with the sub-VP SDE.

    python launch.py --config configs/subvp/cifar10_ddpmpp_continuous.py \
        --workdir runs/subvp_cifar10_ddpmpp_continuous

Parameters: 61,804,419 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.subvp(config)
    presets.ddpmpp(config)
    return config
