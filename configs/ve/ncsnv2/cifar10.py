"""NCSNv2 (Song & Ermon 2020) on CIFAR-10.

python launch.py --config configs/ve/ncsnv2/cifar10.py --workdir runs/ve_ncsnv2_cifar10

"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0, num_scales=232, continuous=False)
    presets.ncsnv2(config, "ncsnv2_64")
    presets.annealed_langevin(config, n_steps_each=5, snr=0.176)
    return config
