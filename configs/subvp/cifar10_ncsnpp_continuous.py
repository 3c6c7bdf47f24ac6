"""NCSN++ (cont.) on CIFAR-10 with the sub-VP SDE.

    python launch.py --config configs/subvp/cifar10_ncsnpp_continuous.py \
        --workdir runs/subvp_cifar10_ncsnpp_continuous

Parameters: 62,693,251 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.subvp(config)
    presets.ncsnpp(config, embedding="positional")
    return config
