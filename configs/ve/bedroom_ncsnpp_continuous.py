"""NCSN++ (cont.) on LSUN bedroom 256x256 with the VE SDE.

    python launch.py --config configs/ve/bedroom_ncsnpp_continuous.py \
        --workdir runs/ve_bedroom_ncsnpp_continuous

Parameters: 65,574,549 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.lsun("bedroom")
    presets.ve(config, sigma_max=378.0, num_scales=2000)
    presets.ncsnpp_256(config)
    return config
