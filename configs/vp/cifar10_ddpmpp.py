"""DDPM++ (discrete time) on CIFAR-10 with the VP SDE (DDPM objective).

    python launch.py --config configs/vp/cifar10_ddpmpp.py --workdir runs/vp_cifar10_ddpmpp

Parameters: 61,804,419 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=False)
    presets.ddpmpp(config)
    return config
