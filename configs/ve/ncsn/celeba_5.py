"""NCSN (v1, Song & Ermon 2019) on CelebA 64x64 with technique 5 (EMA) of NCSNv2 only.

python launch.py --config configs/ve/ncsn/celeba_5.py --workdir runs/ve_ncsn_celeba_5

"""

from configs import datasets, presets


def get_config():
    config = datasets.celeba()
    presets.ve(config, sigma_max=1.0, num_scales=10, continuous=False)
    presets.ncsn(config)
    presets.annealed_langevin(config, n_steps_each=100, snr=0.316)
    return config
