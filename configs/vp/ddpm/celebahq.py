"""Reproducing DDPM (Ho et al.) on CelebA-HQ 256: discrete VP, ancestral sampling.

    python launch.py --config configs/vp/ddpm/celebahq.py --workdir runs/vp_ddpm_celebahq

Parameters: 111,569,923 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.celebahq(256)
    presets.vp(config, continuous=False)
    presets.ddpm_256(config)
    config.sampling.predictor = "ancestral_sampling"  # DDPM's sampler
    return config
