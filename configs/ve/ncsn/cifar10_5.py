"""NCSN (v1, Song & Ermon 2019) on CIFAR-10 with technique 5 (EMA) of NCSNv2 only.

    python launch.py --config configs/ve/ncsn/cifar10_5.py --workdir runs/ve_ncsn_cifar10_5

"""

from configs.default_cifar10_configs import get_default_configs


def get_config():
    config = get_default_configs()

    # training
    training = config.training
    training.sde = 'vesde'
    training.continuous = False

    # sampling
    sampling = config.sampling
    sampling.method = 'pc'
    sampling.predictor = 'none'
    sampling.corrector = 'ald'
    sampling.n_steps_each = 100
    sampling.snr = 0.316

    # model
    model = config.model
    model.name = 'ncsn'
    model.scale_by_sigma = False
    model.sigma_max = 1
    model.num_scales = 10
    model.ema_rate = 0.999
    model.normalization = 'InstanceNorm++'
    model.nonlinearity = 'elu'
    model.nf = 128
    model.interpolation = 'bilinear'

    # optim
    optim = config.optim
    optim.weight_decay = 0
    optim.optimizer = 'Adam'
    optim.lr = 0.001
    optim.beta1 = 0.9
    optim.amsgrad = False
    optim.eps = 1e-08
    optim.warmup = 0
    optim.grad_clip = -1.0

    return config
