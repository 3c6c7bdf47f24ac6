"""NCSN++ (cont.) on CelebA-HQ 1024x1024 with the VE SDE.

    python launch.py --config configs/ve/celebahq_ncsnpp_continuous.py \
        --workdir runs/ve_celebahq_ncsnpp_continuous

Parameters: 105,785,896 (the published count).
"""

from configs import datasets, presets


def get_config():
    config = datasets.celebahq(1024)
    presets.ve(config, sigma_max=1348.0, num_scales=2000)
    presets.ncsnpp_1024(config)
    config.training.batch_size = 8
    config.sampling.snr = 0.15
    config.model.ema_rate = 0.9999
    return config
