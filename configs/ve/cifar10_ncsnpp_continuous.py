"""NCSN++ (cont.) on CIFAR-10 with the VE SDE.

    python launch.py --config configs/ve/cifar10_ncsnpp_continuous.py \
        --workdir runs/ve_cifar10_ncsnpp_continuous

Parameters: 62,758,915 (the published count).
Published: FID 2.38 (PC reverse-diffusion + Langevin, snr 0.16, ~2000 NFE).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0)
    presets.ncsnpp(config, embedding="fourier")
    return config
