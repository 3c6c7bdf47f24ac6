"""NCSN++ (cont.) on LSUN church_outdoor 256x256 with the VE SDE.

    python launch.py --config configs/ve/church_ncsnpp_continuous.py \
        --workdir runs/ve_church_ncsnpp_continuous

Parameters: 65,574,549 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.lsun("church_outdoor")
    presets.ve(config, sigma_max=378.0, num_scales=2000)
    presets.ncsnpp_256(config)
    return config
