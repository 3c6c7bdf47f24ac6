"""DDPM++ on CIFAR-10 trained with EDM's loss and the 'vp' preconditioning (Karras et al. 2022,
Table 1); sampled with EDM's Heun sampler (18 noise levels, 35 NFE).

    python launch.py --config configs/edm/cifar10_ddpmpp_vp.py --workdir runs/edm_cifar10_vp

Parameters: 61,804,419 (the DDPM++ cont. backbone). EDM's own CIFAR-10 setting trains a wider
DDPM++ (channel multipliers (2, 2, 2), dropout 0.13) for 200 Mimg; this file keeps score_sde's
backbone and schedule so that the three preconditionings compare like for like.
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ddpmpp(config)
    presets.edm(config, preconditioning="vp")
    return config
