"""NCSN++ (cont.) on FFHQ 1024x1024 (a folder of images: set --config.data.path) with the VE SDE.

    python launch.py --config configs/ve/ffhq_ncsnpp_continuous.py \
        --workdir runs/ve_ffhq_ncsnpp_continuous

Parameters: 105,785,896 (the published count).
"""

from configs.default_lsun_configs import get_default_configs


def get_config():
    config = get_default_configs()

    # training
    training = config.training
    training.sde = 'vesde'
    training.continuous = True
    training.batch_size = 8
    training.reduce_mean = True

    # sampling
    sampling = config.sampling
    sampling.method = 'pc'
    sampling.predictor = 'reverse_diffusion'
    sampling.corrector = 'langevin'
    sampling.snr = 0.15

    # data
    data = config.data
    data.dataset = 'FFHQ'
    data.path = ''
    data.image_size = 1024
    data.centered = False

    # model
    model = config.model
    model.name = 'ncsnpp'
    model.scale_by_sigma = True
    model.sigma_max = 1348
    model.num_scales = 2000
    model.ema_rate = 0.9999
    model.sigma_min = 0.01
    model.normalization = 'GroupNorm'
    model.nonlinearity = 'swish'
    model.nf = 16
    model.ch_mult = (1, 2, 4, 8, 16, 32, 32, 32)
    model.num_res_blocks = 1
    model.attn_resolutions = (16,)
    model.resamp_with_conv = True
    model.conditional = True
    model.fir = True
    model.fir_kernel = (1, 3, 3, 1)
    model.skip_rescale = True
    model.resblock_type = 'biggan'
    model.progressive = 'output_skip'
    model.progressive_input = 'input_skip'
    model.progressive_combine = 'sum'
    model.attention_type = 'ddpm'
    model.init_scale = 0.0
    model.embedding_type = 'fourier'
    model.fourier_scale = 16
    model.conv_size = 3
    model.dropout = 0.0

    # optim
    optim = config.optim
    optim.amsgrad = False

    return config
