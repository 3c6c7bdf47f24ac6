"""NCSNv2 (Song & Ermon 2020) on LSUN bedroom 128x128.

(The original file misspelled training.continuous, so it silently trained in continuous time.)

    python launch.py --config configs/ve/ncsnv2/bedroom.py --workdir runs/ve_ncsnv2_bedroom

"""

from configs import datasets, presets


def get_config():
    config = datasets.lsun("bedroom", image_size=128)
    presets.ve(config, sigma_max=190.0, num_scales=1086, continuous=False)
    presets.ncsnv2(config, "ncsnv2_128")
    presets.annealed_langevin(config, n_steps_each=3, snr=0.095)
    config.training.batch_size = 128
    config.model.ema_rate = 0.9999
    return config
