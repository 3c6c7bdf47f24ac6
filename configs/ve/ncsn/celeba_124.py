"""NCSN (v1, Song & Ermon 2019) on CelebA 64x64 with NCSNv2 techniques 1, 2, 4 only.

python launch.py --config configs/ve/ncsn/celeba_124.py --workdir runs/ve_ncsn_celeba_124

"""

from configs import datasets, presets


def get_config():
    config = datasets.celeba()
    presets.ve(config, sigma_max=90.0, num_scales=500, continuous=False)
    presets.ncsn(config)
    presets.annealed_langevin(config, n_steps_each=5, snr=0.128)
    config.model.ema_rate = 0.0  # no EMA
    return config
