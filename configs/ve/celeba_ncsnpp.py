"""NCSN++ (discrete time, SMLD) on CelebA 64x64 with the VE SDE.

    python launch.py --config configs/ve/celeba_ncsnpp.py --workdir runs/ve_celeba_ncsnpp

Parameters: 62,693,251 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.celeba()
    presets.ve(config, sigma_max=90.0, continuous=False)
    presets.ncsnpp(config, embedding="positional")
    return config
