"""Reproducing DDPM (Ho et al.) on LSUN church_outdoor 256: discrete VP, ancestral sampling.

    python launch.py --config configs/vp/ddpm/church.py --workdir runs/vp_ddpm_church

Parameters: 111,569,923 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.lsun("church_outdoor")
    presets.vp(config, continuous=False)
    presets.ddpm_256(config)
    config.sampling.predictor = "ancestral_sampling"  # DDPM's sampler
    return config
