"""NCSN++ (cont.) on CIFAR-10 with the VP SDE.

    python launch.py --config configs/vp/cifar10_ncsnpp_continuous.py \
        --workdir runs/vp_cifar10_ncsnpp_continuous

Parameters: 62,693,251 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ncsnpp(config, embedding="positional")
    return config
