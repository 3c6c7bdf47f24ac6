"""NCSN++ cont. (deep) on CIFAR-10 with the VP SDE.

    python launch.py --config configs/vp/cifar10_ncsnpp_deep_continuous.py \
        --workdir runs/vp_cifar10_ncsnpp_deep_continuous

Parameters: 107,521,411 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.vp(config, continuous=True)
    presets.ncsnpp(config, embedding="positional", deep=True)
    config.training.n_iters = 950001
    return config
