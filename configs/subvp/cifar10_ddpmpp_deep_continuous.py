"""DDPM++ cont. (deep) on CIFAR-10 with the sub-VP SDE.

    python launch.py --config configs/subvp/cifar10_ddpmpp_deep_continuous.py \
        --workdir runs/subvp_cifar10_ddpmpp_deep_continuous

Parameters: 106,632,579 (the published count).
Published: FID 2.41 (Euler-Maruyama), NLL 2.99 bits/dim; PF-ODE (RK45, 1e-5) FID 2.92.
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.subvp(config)
    presets.ddpmpp(config, deep=True)
    config.training.n_iters = 950001
    return config
