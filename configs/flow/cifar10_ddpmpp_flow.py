"""DDPM++ on CIFAR-10 trained by flow matching on the linear path (rectified flow; Lipman et al.
2023, Liu et al. 2023), t logit-normal (Esser et al. 2024); sampled with Euler's method on the
velocity ('euler': 50 uniform steps in t).

    python launch.py --config configs/flow/cifar10_ddpmpp_flow.py --workdir runs/flow_cifar10

Parameters: 61,804,419 (the DDPM++ cont. backbone and schedule of configs/vp, so that flow
matching and the SDEs compare like for like).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ddpmpp(config)
    presets.flow_matching(config, time_sampling="logit_normal")
    config.data.centered = True
    return config
