"""NCSN++ cont. (deep) on CIFAR-10 with the VE SDE.

    python launch.py --config configs/ve/cifar10_ncsnpp_deep_continuous.py \
        --workdir runs/ve_cifar10_ncsnpp_deep_continuous

Parameters: 107,587,075 (the published count).
Published: FID 2.20, IS 9.89 (PC reverse-diffusion + Langevin, snr 0.16).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0)
    presets.ncsnpp(config, embedding="fourier", deep=True)
    config.training.n_iters = 950001
    return config
