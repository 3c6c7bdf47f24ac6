"""NCSNv2 (Song & Ermon 2020) on CelebA 64x64.

python launch.py --config configs/ve/ncsnv2/celeba.py --workdir runs/ve_ncsnv2_celeba

"""

from configs import datasets, presets


def get_config():
    config = datasets.celeba()
    presets.ve(config, sigma_max=90.0, num_scales=500, continuous=False)
    presets.ncsnv2(config, "ncsnv2_64")
    presets.annealed_langevin(config, n_steps_each=5, snr=0.128)
    return config
