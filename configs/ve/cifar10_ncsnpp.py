"""NCSN++ (discrete time, SMLD objective) on CIFAR-10 with the VE SDE.

    python launch.py --config configs/ve/cifar10_ncsnpp.py --workdir runs/ve_cifar10_ncsnpp

Parameters: 62,693,251 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0, continuous=False)
    presets.ncsnpp(config, embedding="positional")
    return config
