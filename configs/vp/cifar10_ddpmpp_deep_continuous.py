"""DDPM++ cont. (deep) on CIFAR-10 with the VP SDE.

    python launch.py --config configs/vp/cifar10_ddpmpp_deep_continuous.py \
        --workdir runs/vp_cifar10_ddpmpp_deep_continuous

Parameters: 106,632,579 (the published count).
Published: FID 2.41, NLL 3.13 bits/dim (Euler-Maruyama, 1000 steps).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ddpmpp(config, deep=True)
    config.training.n_iters = 950001
    return config
