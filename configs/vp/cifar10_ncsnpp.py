"""NCSN++ (discrete time) on CIFAR-10 with the VP SDE.

    python launch.py --config configs/vp/cifar10_ncsnpp.py --workdir runs/vp_cifar10_ncsnpp

Parameters: 62,693,251 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=False)
    presets.ncsnpp(config, embedding="positional")
    return config
