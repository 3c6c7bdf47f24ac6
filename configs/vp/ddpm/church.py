"""Reproducing DDPM (Ho et al.) on LSUN church_outdoor 256: discrete VP, ancestral sampling.

    python launch.py --config configs/vp/ddpm/church.py --workdir runs/vp_ddpm_church

Parameters: 111,569,923 (the published count).
"""

from configs.default_lsun_configs import get_default_configs


def get_config():
    config = get_default_configs()

    # training
    training = config.training
    training.sde = 'vpsde'
    training.continuous = False
    training.reduce_mean = True

    # sampling
    sampling = config.sampling
    sampling.method = 'pc'
    sampling.predictor = 'ancestral_sampling'
    sampling.corrector = 'none'

    # data
    data = config.data
    data.category = 'church_outdoor'
    data.centered = True

    # model
    model = config.model
    model.name = 'ddpm'
    model.scale_by_sigma = False
    model.ema_rate = 0.9999
    model.normalization = 'GroupNorm'
    model.nonlinearity = 'swish'
    model.nf = 128
    model.ch_mult = (1, 1, 2, 2, 4, 4)
    model.num_res_blocks = 2
    model.attn_resolutions = (16,)
    model.resamp_with_conv = True
    model.conditional = True
    model.num_scales = 1000

    # optim
    optim = config.optim
    optim.lr = 2e-05

    return config
