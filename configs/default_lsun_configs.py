"""Shared defaults of the LSUN (256x256) configs (same fields and values as the original score_sde).

Not a config on its own: the LSUN, CelebA-HQ 256 and FFHQ 256 files in vp/ddpm and ve/ import it and set the SDE and the model.
The CIFAR-10 defaults (configs/default_cifar10_configs.py) with the values the original LSUN file changes.
"""

from configs.default_cifar10_configs import get_default_configs as _cifar10_defaults


def get_default_configs():
    config = _cifar10_defaults()
    config.training.batch_size = 64
    config.training.n_iters = 2400001
    config.training.snapshot_freq_for_preemption = 5000
    config.sampling.snr = 0.075
    config.eval.begin_ckpt = 50
    config.eval.end_ckpt = 96
    config.eval.batch_size = 512
    config.eval.enable_sampling = True
    config.data.dataset = "LSUN"
    config.data.image_size = 256
    config.model.sigma_max = 378
    config.model.num_scales = 2000
    config.model.dropout = 0.0
    return config
