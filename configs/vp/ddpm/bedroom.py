"""Reproducing DDPM (Ho et al.) on LSUN bedroom 256: discrete VP, ancestral sampling.

    python launch.py --config configs/vp/ddpm/bedroom.py --workdir runs/vp_ddpm_bedroom

Parameters: 111,569,923 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.lsun("bedroom")
    presets.vp(config, continuous=False)
    presets.ddpm_256(config)
    config.sampling.predictor = "ancestral_sampling"  # DDPM's sampler
    return config
