"""Shared defaults of the CelebA (64x64) configs (same fields and values as the original score_sde).

Not a config on its own: the files in ve/ (celeba_*) and ve/ncsn, ve/ncsnv2 import it and set the SDE and the model.
The CIFAR-10 defaults (configs/default_cifar10_configs.py) with the values the original CelebA file changes.
"""

from configs.default_cifar10_configs import get_default_configs as _cifar10_defaults


def get_default_configs():
    config = _cifar10_defaults()
    config.sampling.snr = 0.17
    config.eval.begin_ckpt = 1
    config.eval.enable_sampling = True
    config.data.dataset = "CELEBA"
    config.data.image_size = 64
    del config.model[
        "sigma_max"
    ]  # an int (50) in the CIFAR-10 file, a float here as in the original
    config.model.sigma_max = 90.0
    return config
