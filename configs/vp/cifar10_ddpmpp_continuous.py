"""DDPM++ (cont.) on CIFAR-10 with the VP SDE.

    python launch.py --config configs/vp/cifar10_ddpmpp_continuous.py \
        --workdir runs/vp_cifar10_ddpmpp_continuous

Parameters: 61,804,419 (the published count).
Published: FID 2.55 / NLL 3.21 bits/dim (Euler-Maruyama, 1000 steps, Table 3 of the paper).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ddpmpp(config)
    return config
