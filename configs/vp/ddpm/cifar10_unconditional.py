"""DDPM on CIFAR-10 without any conditioning on the time step (NCSNv2's technique 3): discrete VP,
ancestral sampling; the network never sees t.

    python launch.py --config configs/vp/ddpm/cifar10_unconditional.py \
        --workdir runs/vp_ddpm_cifar10_unconditional
"""

from configs.vp.ddpm import cifar10


def get_config():
    config = cifar10.get_config()
    config.model.conditional = False
    return config
