"""NCSN (v1, Song & Ermon 2019) on CIFAR-10 with NCSNv2 techniques 1, 2, 4 only.

python launch.py --config configs/ve/ncsn/cifar10_124.py --workdir runs/ve_ncsn_cifar10_124

"""

from configs import datasets, presets


def get_config():
    config = datasets.cifar10()
    presets.ve(config, sigma_max=50.0, num_scales=232, continuous=False)
    presets.ncsn(config)
    presets.annealed_langevin(config, n_steps_each=5, snr=0.176)
    config.model.ema_rate = 0.0  # no EMA
    return config
