"""Presets: the SDEs and the network architectures of the published configs, as small functions
that fill a dataset base (configs/datasets.py) in place.

Order: the dataset base, then the SDE, then the architecture, then the file's own values; a later
step may override an earlier one (NCSN undoes the VE default scale_by_sigma, for instance).
Only fields the chosen network family reads are written (score_sde/config/families.py lists
them), and values equal to its defaults are left out unless a preset takes them as an argument.
The SDE's parameters are written by the SDE preset they belong to (VP / sub-VP: beta_min 0.1,
beta_max 20, N = 1000, all defaults; VE: sigma_max and N, sigma_min 0.01 the default).

SDEs (Song et al. 2021, Table 1 / Appendix C):
    vp(config, continuous)      DDPM's SDE; data in [-1, 1], loss averaged, EMA 0.9999
    subvp(config)               the sub-VP SDE, continuous time
    ve(config, sigma_max, ...)  SMLD's SDE; data in [0, 1], loss summed, s = net / sigma, EMA 0.999
Architectures ('ncsnpp' family unless noted; parameter counts in tests/config/test_configs.py):
    ddpmpp(deep)                DDPM++ (cont.): 4 (deep: 8) BigGAN blocks per resolution
    ncsnpp(embedding, deep)     NCSN++ 32 px: DDPM++ with FIR resampling and a residual input pyramid
    ncsnpp_256, ncsnpp_1024     NCSN++ for 256 and 1024 px (output-skip / input-skip pyramids)
    ddpm, ddpm_256              the DDPM U-Net of Ho et al. ('ddpm')
    ncsn, ncsnv2(name)          the RefineNets of NCSN and NCSNv2 ('ncsn', 'ncsnv2_*')
Samplers beyond the SDE preset's PC default: annealed_langevin (NCSN's).
EDM training (preconditioned denoiser, EDM's loss and Heun sampler): edm(config, preconditioning).
"""

import ml_collections

# ------------------------------------------------------------------------------------ SDEs


def _vp_family(config: ml_collections.ConfigDict, sde: str, continuous: bool) -> None:
    training = config.training
    training.sde = sde
    training.continuous = continuous
    training.reduce_mean = True
    config.data.centered = True
    sampling = config.sampling
    sampling.method = "pc"
    sampling.predictor = "euler_maruyama" if continuous else "reverse_diffusion"
    sampling.corrector = "none"


def vp(config: ml_collections.ConfigDict, *, continuous: bool = True) -> None:
    """The VP SDE (beta 0.1 -> 20, N = 1000: the defaults); discrete time is DDPM's objective.
    Sampler: Euler-Maruyama (continuous) or reverse diffusion (discrete), no corrector."""
    _vp_family(config, "vpsde", continuous)


def subvp(config: ml_collections.ConfigDict) -> None:
    """The sub-VP SDE (beta as VP), continuous time; Euler-Maruyama, no corrector."""
    _vp_family(config, "subvpsde", continuous=True)


def ve(
    config: ml_collections.ConfigDict,
    *,
    sigma_max: float,
    num_scales: int = 1000,
    continuous: bool = True,
) -> None:
    """The VE SDE from sigma_min 0.01 (the default) to sigma_max with N = num_scales levels;
    discrete time is SMLD's objective. The network's output is divided by sigma, EMA 0.999.
    Sampler: PC with reverse diffusion and one Langevin step (config.sampling.snr)."""
    training = config.training
    training.sde = "vesde"
    training.continuous = continuous
    training.reduce_mean = False
    model = config.model
    model.sigma_max = sigma_max
    model.num_scales = num_scales
    model.scale_by_sigma = True
    model.ema_rate = 0.999
    sampling = config.sampling
    sampling.method = "pc"
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "langevin"


def edm(config: ml_collections.ConfigDict, *, preconditioning: str = "edm") -> None:
    """EDM (Karras et al. 2022): the network preconditioned as `preconditioning` ('edm', 'vp',
    've'), EDM's loss (ln sigma ~ N(-1.2, 1.2^2), weight 1 / c_out^2), data in [-1, 1], and EDM's
    Heun sampler on 18 noise levels (35 NFE). The SDE only maps sigma to time for the samplers:
    the VE SDE over EDM's range sigma 0.002 -> 80. Needs a positional noise embedding."""
    training = config.training
    training.sde = "vesde"
    training.continuous = True
    training.reduce_mean = True
    training.loss = "edm"
    config.data.centered = True
    model = config.model
    model.preconditioning = preconditioning
    model.sigma_min = 0.002
    model.sigma_max = 80.0
    model.embedding_type = "positional"
    sampling = config.sampling
    sampling.method = "edm_heun"
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "none"


def flow_matching(
    config: ml_collections.ConfigDict, *, path: str = "linear", time_sampling: str = "uniform"
) -> None:
    """Flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023): a velocity network on
    the path x_t = (1 - t) x_0 + t z ('linear'; sde 'flow') or cos / sin ('cosine'; sde
    'cosine_flow'), the conditional flow-matching loss with t uniform or 'logit_normal', and
    Euler's method on the velocity ('euler', DDIM: 50 uniform steps in t). Needs a positional
    time embedding; images belong in [-1, 1] (data.centered), the scale of the noise."""
    training = config.training
    training.sde = "flow" if path == "linear" else "cosine_flow"
    training.continuous = True
    training.reduce_mean = True
    training.loss = "flow_matching"
    training.time_sampling = time_sampling
    config.model.embedding_type = "positional"
    sampling = config.sampling
    sampling.method = "euler"
    sampling.predictor = "euler_maruyama"
    sampling.corrector = "none"


def consistency(config: ml_collections.ConfigDict, *, teacher: str = "") -> None:
    """A consistency model (Song et al. 2023) in EDM's sigma 0.002 -> 80 (the VE SDE maps sigma to
    time for the samplers): consistency training as iCT (Song & Dhariwal 2023: curriculum 10 ->
    1280 levels, log-normal levels with P_mean -1.1, P_std 2.0, pseudo-Huber loss, no EMA
    teacher), or with `teacher` (a work directory) distillation on 18 levels with Heun teacher
    steps. One-step sampling by default (config.sampling.num_steps=2: two steps). Needs a
    positional noise embedding."""
    training = config.training
    training.sde = "vesde"
    training.continuous = True
    training.reduce_mean = True
    training.loss = "consistency_distillation" if teacher else "consistency_training"
    if teacher:
        training.teacher = teacher
    training.P_mean = -1.1
    training.P_std = 2.0
    model = config.model
    model.preconditioning = "consistency"
    model.sigma_min = 0.002
    model.sigma_max = 80.0
    model.num_scales = 18  # distillation's levels
    model.embedding_type = "positional"
    sampling = config.sampling
    sampling.method = "consistency"
    sampling.predictor = "reverse_diffusion"
    sampling.corrector = "none"


def annealed_langevin(config: ml_collections.ConfigDict, *, n_steps_each: int, snr: float) -> None:
    """NCSN's sampler: annealed Langevin dynamics, n_steps_each steps per noise level with the
    step size of signal-to-noise ratio snr, no predictor."""
    sampling = config.sampling
    sampling.method = "pc"
    sampling.predictor = "none"
    sampling.corrector = "ald"
    sampling.n_steps_each = n_steps_each
    sampling.snr = snr


# --------------------------------------------------------------------------- architectures
# NCSN++ family defaults (score_sde.config.NCSNppConfig): nf 128, ch_mult (1, 2, 2, 2),
# 4 BigGAN residual blocks per resolution with skip rescaling, attention at 16x16, dropout 0.1,
# no FIR, no progressive growing, Fourier noise embedding (scale 16), swish.


def ddpmpp(config: ml_collections.ConfigDict, *, deep: bool = False) -> None:
    """DDPM++: the NCSN++ U-Net without FIR or progressive input, positional embedding of the time
    index / noise label. 61,804,419 parameters at 32 px (deep, 8 blocks: 106,632,579)."""
    model = config.model
    model.name = "ncsnpp"
    model.embedding_type = "positional"
    if deep:
        model.num_res_blocks = 8


def ncsnpp(
    config: ml_collections.ConfigDict, *, embedding: str = "fourier", deep: bool = False
) -> None:
    """NCSN++ at 32/64 px: DDPM++ with FIR up/down-sampling and a residual input pyramid;
    `embedding` 'fourier' (continuous VE) or 'positional' (VP, sub-VP, discrete VE)."""
    model = config.model
    model.name = "ncsnpp"
    model.fir = True
    model.progressive_input = "residual"
    model.embedding_type = embedding
    if deep:
        model.num_res_blocks = 8


def _ncsnpp_high_resolution(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    model = config.model
    model.name = "ncsnpp"
    model.fir = True
    model.progressive = "output_skip"
    model.progressive_input = "input_skip"
    model.dropout = 0.0
    return model


def ncsnpp_256(config: ml_collections.ConfigDict) -> None:
    """NCSN++ at 256 px: 7 resolutions, 2 blocks each, output- and input-skip pyramids, no
    dropout; Fourier embedding. 65,574,549 parameters."""
    model = _ncsnpp_high_resolution(config)
    model.ch_mult = (1, 1, 2, 2, 2, 2, 2)
    model.num_res_blocks = 2


def ncsnpp_1024(config: ml_collections.ConfigDict) -> None:
    """NCSN++ at 1024 px: nf 16 with ch_mult (1, 2, 4, 8, 16, 32, 32, 32) (16 to 512 channels over
    8 resolutions), one block each, no dropout. 105,785,896 parameters."""
    model = _ncsnpp_high_resolution(config)
    model.nf = 16
    model.ch_mult = (1, 2, 4, 8, 16, 32, 32, 32)
    model.num_res_blocks = 1


# DDPM defaults (score_sde.config.DDPMConfig): nf 128, ch_mult (1, 2, 2, 2), 2 residual blocks per
# resolution, attention at 16x16, dropout 0.1, sinusoidal embedding of the time index.


def ddpm(config: ml_collections.ConfigDict) -> None:
    """The DDPM U-Net at 32 px (Ho et al.'s CIFAR-10 model). 35,218,947 parameters."""
    config.model.name = "ddpm"


def ddpm_256(config: ml_collections.ConfigDict) -> None:
    """The DDPM U-Net at 256 px: ch_mult (1, 1, 2, 2, 4, 4), no dropout, learning rate 2e-5 (Ho et
    al.'s LSUN / CelebA-HQ settings). 111,569,923 parameters."""
    model = config.model
    model.name = "ddpm"
    model.ch_mult = (1, 1, 2, 2, 4, 4)
    model.dropout = 0.0
    config.optim.lr = 2e-5


# NCSN / NCSNv2 (score_sde.config.NCSNv2Config): RefineNets with nf 128, ELU, InstanceNorm++,
# bilinear upsampling; no dropout and no time embedding. Trained with Adam without warmup or
# gradient clipping.


def ncsn(config: ml_collections.ConfigDict) -> None:
    """NCSN (v1, Song & Ermon 2019): conditioned on the noise level through its conditional
    instance norms, so its output is not divided by sigma; learning rate 1e-3."""
    config.model.name = "ncsn"
    config.model.scale_by_sigma = False
    _refinenet_optim(config, lr=1e-3)


def ncsnv2(config: ml_collections.ConfigDict, name: str = "ncsnv2_64") -> None:
    """NCSNv2 (Song & Ermon 2020): unconditional RefineNet, output divided by sigma;
    `name` ncsnv2_64 (32/64 px), ncsnv2_128 or ncsnv2_256; learning rate 1e-4."""
    config.model.name = name
    _refinenet_optim(config, lr=1e-4)


def _refinenet_optim(config: ml_collections.ConfigDict, *, lr: float) -> None:
    optim = config.optim
    optim.lr = lr
    optim.warmup = 0
    optim.grad_clip = -1.0  # off
