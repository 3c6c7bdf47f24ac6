"""NCSN++ (cont.) on CelebA-HQ 256x256 with the VE SDE.

    python launch.py --config configs/ve/celebahq_256_ncsnpp_continuous.py \
        --workdir runs/ve_celebahq_256_ncsnpp_continuous

Parameters: 65,574,549 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.celebahq(256)
    presets.ve(config, sigma_max=348.0, num_scales=2000)
    presets.ncsnpp_256(config)
    return config
