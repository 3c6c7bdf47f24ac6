"""The config boundary: a config file's ConfigDict -> one typed, frozen, checked `Config`.

    cfg = config.from_config(config_dict)           # or config.load(path, overrides)
    cfg.training.batch_size, cfg.model.nf, cfg.data.shape, ...

Every section is a frozen dataclass filled by one strict reader (`read_section`): an unknown field
is rejected with the closest known name, a wrong type names the field, the value and the fix, a
missing required field says how to set it; each dataclass then checks its values. Fields with a
default need not be in the file: the defaults below are the original score_sde's, so an original
config file loads unchanged, and every field can be set from the command line
(`--config.sampling.num_samples=1000`) for every config. Below this boundary nothing reads a
ConfigDict.

`config.model` is read into the dataclass of its network family (`config.model.name`): NCSN++ /
DDPM++ (`ncsnpp`), DDPM, NCSN / NCSNv2, the toy MLP. Each family knows exactly the fields it reads,
plus the few the original configs set without effect (`ORIGINAL_ONLY`: accepted with the only
value that has a meaning for the family, never set by the configs shipped here).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

SDES = ("vpsde", "subvpsde", "vesde")
FEW_STEP_METHODS = ("edm_heun", "dpmpp_2m", "dpmpp_2s", "dpmpp_3m", "dpmpp_2m_sde", "ddim")
SAMPLING_METHODS = ("pc", "ode", *FEW_STEP_METHODS)
DISCRETIZATIONS = ("default", "edm", "uniform_t", "uniform_lambda")
PRECONDITIONINGS = ("none", "edm", "vp", "ve")
TASKS = ("none", "class", "inpaint", "colorize")
GUIDANCE = ("cfg", "classifier")
NAMED_MASKS = ("keep_top", "keep_left", "keep_border", "keep_random")
NONLINEARITIES = ("elu", "relu", "lrelu", "swish", "silu")
DTYPES = ("float32", "bfloat16")


def _one_of(field: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{field} ({value!r}) must be one of {', '.join(map(repr, valid))}")


def _positive(field: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{field} ({value}) must be positive")


def _finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{field} ({value}) must be a finite number")


# ------------------------------------------------------------------------------------ sections


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """config.training: the SDE, the loss, the step schedule (batch_size is global)."""

    sde: str
    continuous: bool
    reduce_mean: bool
    likelihood_weighting: bool
    batch_size: int
    n_iters: int
    snapshot_freq: int
    log_freq: int
    eval_freq: int
    snapshot_freq_for_preemption: int
    snapshot_sampling: bool
    importance_weighting: bool = False
    n_jitted_steps: int = 1  # optimizer steps per dispatch (lax.scan)
    eval_after_training: bool = False  # run eval mode on the final checkpoint (the toy report)
    # 'dsm' (denoising score matching; DDPM / SMLD in discrete time) or 'edm' (EDM's loss, with
    # config.model.preconditioning). The original NCSN configs name their SDE here: that is 'dsm'.
    loss: str = "dsm"
    P_mean: float = -1.2  # EDM loss: ln sigma ~ N(P_mean, P_std^2)
    P_std: float = 1.2

    def __post_init__(self):
        _one_of("config.training.sde", self.sde, SDES)
        if self.loss in SDES and self.loss != self.sde:
            raise ValueError(
                f"config.training.loss ({self.loss!r}) names an SDE other than "
                f"config.training.sde ({self.sde!r}); use 'dsm' (or remove the field)"
            )
        if self.loss not in SDES:
            _one_of("config.training.loss", self.loss, ("dsm", "edm"))
        _finite("config.training.P_mean", self.P_mean)
        _finite("config.training.P_std", self.P_std)
        _positive("config.training.P_std", self.P_std)
        for name in (
            "batch_size",
            "n_iters",
            "snapshot_freq",
            "log_freq",
            "eval_freq",
            "snapshot_freq_for_preemption",
            "n_jitted_steps",
        ):
            _positive(f"config.training.{name}", getattr(self, name))
        if self.importance_weighting and not self.likelihood_weighting:
            raise ValueError(
                "config.training.importance_weighting samples t for the likelihood-weighted "
                "loss; set config.training.likelihood_weighting=True as well"
            )


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """config.sampling: the sampler. 'pc' (predictor, corrector, snr, n_steps_each), 'ode' (the
    adaptive probability-flow ODE), or a few-step sampler of score_sde.fast_sampling:
    'edm_heun' (S_churn, S_tmin, S_tmax, S_noise), 'dpmpp_2m', 'dpmpp_2s', 'dpmpp_3m',
    'dpmpp_2m_sde', 'ddim' (eta), on num_steps noise levels (0: the method's default) of
    `discretization` ('default': the method's; 'edm' with rho, 'uniform_t', 'uniform_lambda').
    noise_removal: the final denoising step; eps: the smallest time."""

    method: str
    predictor: str
    corrector: str
    snr: float
    n_steps_each: int
    noise_removal: bool
    probability_flow: bool
    batch_size: int = 64  # samples per sampler call (global, over all devices)
    num_samples: int = 64  # sample mode: how many in total
    eps: float = 1e-3
    num_steps: int = 0
    discretization: str = "default"
    rho: float = 7.0
    S_churn: float = 0.0
    S_tmin: float = 0.0
    S_tmax: float = float("inf")
    S_noise: float = 1.0
    eta: float = 0.0

    def __post_init__(self):
        _one_of("config.sampling.method", self.method, SAMPLING_METHODS)
        _one_of("config.sampling.discretization", self.discretization, DISCRETIZATIONS)
        _finite("config.sampling.snr", self.snr)
        if self.snr < 0:
            raise ValueError(f"config.sampling.snr ({self.snr}) must be >= 0")
        if self.n_steps_each < 0:
            raise ValueError(f"config.sampling.n_steps_each ({self.n_steps_each}) must be >= 0")
        _positive("config.sampling.batch_size", self.batch_size)
        _positive("config.sampling.num_samples", self.num_samples)
        if not 0 < self.eps < 1:
            raise ValueError(f"config.sampling.eps ({self.eps}) must lie in (0, 1)")
        if self.num_steps < 0 or self.num_steps == 1:
            raise ValueError(
                f"config.sampling.num_steps ({self.num_steps}) must be 0 (the method's default) "
                "or >= 2"
            )
        for name in ("rho", "S_noise"):
            _finite(f"config.sampling.{name}", getattr(self, name))
            _positive(f"config.sampling.{name}", getattr(self, name))
        for name in ("S_churn", "S_tmin", "eta"):
            _finite(f"config.sampling.{name}", getattr(self, name))
            if getattr(self, name) < 0:
                raise ValueError(f"config.sampling.{name} ({getattr(self, name)}) must be >= 0")
        if not self.S_tmax >= self.S_tmin:
            raise ValueError(
                f"config.sampling.S_tmax ({self.S_tmax}) must be >= S_tmin ({self.S_tmin})"
            )


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """config.eval: which checkpoints, eval loss, likelihood (bits/dim), sample quality."""

    begin_ckpt: int  # snapshots k = step // snapshot_freq in [begin, end]; -1: the newest only
    end_ckpt: int
    batch_size: int
    enable_sampling: bool
    num_samples: int
    enable_loss: bool
    enable_bpd: bool
    bpd_dataset: str
    num_bpd_examples: int = -1  # -1: the whole split
    hutchinson_type: str = "rademacher"
    rtol: float = 1e-5
    atol: float = 1e-5
    samplers: tuple[str, ...] = ()  # () -> (config.sampling.method,)
    num_repeats: int = 1  # bits/dim: dequantization draws over the split
    # Image data, enable_sampling: FID/IS/KID of num_samples samples against reference statistics.
    enable_fid: bool = True
    inception_weights: str | None = None  # None: $SCORE_SDE_INCEPTION_WEIGHTS or ~/.cache/...
    fid_stats: str | None = None  # None: assets/stats/<dataset>[_<category>]_<size>_train_stats.npz
    # Wait for the snapshots of begin_ckpt..end_ckpt as training writes them (the original's eval
    # job): poll every poll_seconds; stop when end_ckpt is evaluated or nothing new came within
    # wait_timeout seconds.
    wait_for_checkpoints: bool = False
    poll_seconds: float = 60.0
    wait_timeout: float = 3600.0

    def __post_init__(self):
        for name in ("batch_size", "num_samples", "num_repeats"):
            _positive(f"config.eval.{name}", getattr(self, name))
        _one_of(
            "config.eval.hutchinson_type", self.hutchinson_type, ("rademacher", "gaussian", "exact")
        )
        for s in self.samplers:
            _one_of("each entry of config.eval.samplers", s, SAMPLING_METHODS)
        for name in ("rtol", "atol", "poll_seconds", "wait_timeout"):
            _positive(f"config.eval.{name}", getattr(self, name))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """config.optim: Adam(W) (optionally AMSGrad), linear warmup, gradient clipping (< 0: off)."""

    optimizer: str = "Adam"
    lr: float = 2e-4
    beta1: float = 0.9
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 5000
    grad_clip: float = 1.0
    amsgrad: bool = False

    def __post_init__(self):
        _one_of("config.optim.optimizer", self.optimizer, ("Adam", "AdamW"))
        for name in ("lr", "beta1", "eps", "weight_decay", "grad_clip"):
            _finite(f"config.optim.{name}", getattr(self, name))
        _positive("config.optim.lr", self.lr)
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"config.optim.beta1 ({self.beta1}) must lie in [0, 1)")
        if self.warmup < 0:
            raise ValueError(f"config.optim.warmup ({self.warmup}) must be >= 0")
        if self.amsgrad and self.optimizer == "AdamW":
            raise ValueError(
                "config.optim.amsgrad=True is supported with optimizer 'Adam' (AMSGrad with "
                "weight_decay added to the gradient); AdamW's decoupled decay has no AMSGrad here"
            )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """config.data: the dataset and its preprocessing. Images [image_size, image_size,
    num_channels], or vectors [dim] (the 2-D toys and `npz` points)."""

    dataset: str
    image_size: int | None = None
    num_channels: int | None = None
    dim: int | None = None
    centered: bool = False  # model space [-1, 1] instead of [0, 1]
    random_flip: bool = False
    uniform_dequantization: bool = False
    path: str | None = None  # .npz file or image folder ('npz', 'folder', or instead of TFDS)
    data_dir: str | None = None  # TFDS data directory (default $TFDS_DATA_DIR)
    category: str | None = None  # LSUN category, e.g. 'church_outdoor'
    tfrecords_path: str | None = None  # original CelebA-HQ / FFHQ configs: read as config.data.path
    # image folders: leave out (with a warning) files that cannot be decoded, instead of failing
    skip_bad_images: bool = False

    def __post_init__(self):
        if self.dim is None and (self.image_size is None or self.num_channels is None):
            raise ValueError(
                f"config.data ({self.dataset!r}) needs the example shape: set "
                "config.data.image_size and config.data.num_channels (images) or "
                "config.data.dim (vectors)"
            )
        for name in ("image_size", "num_channels", "dim"):
            if getattr(self, name) is not None:
                _positive(f"config.data.{name}", getattr(self, name))

    @property
    def is_toy(self) -> bool:
        return self.dataset.lower().startswith("toy/")

    @property
    def shape(self) -> tuple[int, ...]:
        """One example: (dim,) or (image_size, image_size, num_channels)."""
        if self.dim is not None:
            return (self.dim,)
        return (self.image_size, self.image_size, self.num_channels)


# ---------------------------------------------------------------------------- model families


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Fields of config.model every family has: the name, EMA, the SDE's parameters (the
    original configs keep them here), class conditioning and the compute dtype."""

    name: str
    ema_rate: float = 0.9999
    beta_min: float = 0.1
    beta_max: float = 20.0
    num_scales: int = 1000
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    sigma_begin: float | None = None  # NCSN's name of sigma_max (the original CelebA NCSN++)
    num_classes: int = 0  # > 0: class-conditional, index num_classes = the null label
    class_dropout: float = 0.0  # classifier-free guidance: labels -> null with this probability
    dtype: str = "float32"
    # EDM's preconditioning of the network (score_fn.Preconditioning): 'none' (score_sde's own
    # parameterization), 'edm', 'vp', 've'; sigma_data for 'edm'.
    preconditioning: str = "none"
    sigma_data: float = 0.5

    ORIGINAL_ONLY: ClassVar[dict[str, Any]] = {}  # field -> the one value with a meaning here

    def __post_init__(self):
        if not 0.0 <= self.ema_rate < 1.0:
            raise ValueError(f"config.model.ema_rate ({self.ema_rate}) must lie in [0, 1)")
        _one_of("config.model.dtype", self.dtype, DTYPES)
        _positive("config.model.num_scales", self.num_scales)
        for name in ("beta_min", "beta_max", "sigma_min", "sigma_max"):
            _finite(f"config.model.{name}", getattr(self, name))
            _positive(f"config.model.{name}", getattr(self, name))
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"config.model.sigma_min ({self.sigma_min}) must be < sigma_max ({self.sigma_max})"
            )
        if self.sigma_begin is not None and self.sigma_begin != self.sigma_max:
            raise ValueError(
                f"config.model.sigma_begin ({self.sigma_begin}) is NCSN's name of sigma_max and "
                f"must equal config.model.sigma_max ({self.sigma_max}); remove it"
            )
        if self.num_classes < 0:
            raise ValueError(f"config.model.num_classes ({self.num_classes}) must be >= 0")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(
                f"config.model.class_dropout ({self.class_dropout}) must lie in [0, 1)"
            )
        if self.class_dropout and not self.num_classes:
            raise ValueError(
                f"config.model.class_dropout ({self.class_dropout}) needs a class-conditional "
                "model: set config.model.num_classes to the number of labels"
            )
        _one_of("config.model.preconditioning", self.preconditioning, PRECONDITIONINGS)
        _positive("config.model.sigma_data", self.sigma_data)
        if self.preconditioning != "none":
            if isinstance(self, NCSNv2Config):
                raise ValueError(
                    f"config.model.preconditioning ({self.preconditioning!r}) needs a network "
                    "conditioned on a continuous noise level: ncsnpp, ddpm or mlp, not "
                    f"{self.name!r}"
                )
            if getattr(self, "embedding_type", None) == "fourier":
                raise ValueError(
                    f"config.model.preconditioning ({self.preconditioning!r}) conditions the "
                    "network on c_noise (which may be negative); set "
                    "config.model.embedding_type='positional'"
                )
        for name, meaningful in self.ORIGINAL_ONLY.items():
            value = getattr(self, name)
            if value is not None and value != meaningful:
                raise ValueError(
                    f"config.model.{name} ({value!r}): {self.family} supports only "
                    f"{meaningful!r}; remove the field or set it to {meaningful!r}"
                )

    @property
    def family(self) -> str:
        return FAMILIES_BY_CLASS[type(self)]


def _check_common_arch(m) -> None:
    _one_of("config.model.nonlinearity", m.nonlinearity, NONLINEARITIES)
    _positive("config.model.nf", m.nf)
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"config.model.dropout ({m.dropout}) must lie in [0, 1)")


@dataclasses.dataclass(frozen=True)
class NCSNppConfig(ModelConfig):
    """NCSN++ / DDPM++ (config.model.name 'ncsnpp'): one configurable U-Net."""

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    fir: bool = False
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "none"
    progressive_input: str = "none"
    progressive_combine: str = "sum"
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    conv_size: int = 3
    scale_by_sigma: bool = False
    nonlinearity: str = "swish"
    normalization: str | None = None  # original configs: 'GroupNorm', the only one NCSN++ has
    attention_type: str | None = None  # original configs: 'ddpm', the only one NCSN++ has

    ORIGINAL_ONLY: ClassVar[dict[str, Any]] = {
        "normalization": "GroupNorm",
        "attention_type": "ddpm",
    }

    def __post_init__(self):
        super().__post_init__()
        _check_common_arch(self)
        checks = {
            "resblock_type": ("ddpm", "biggan"),
            "progressive": ("none", "output_skip", "residual"),
            "progressive_input": ("none", "input_skip", "residual"),
            "progressive_combine": ("sum", "cat"),
            "embedding_type": ("fourier", "positional"),
        }
        for field, valid in checks.items():
            _one_of(f"config.model.{field}", getattr(self, field), valid)
        if not self.ch_mult or min(self.ch_mult) < 1 or self.num_res_blocks < 1:
            raise ValueError(
                f"config.model.ch_mult ({self.ch_mult}) needs positive entries and "
                f"config.model.num_res_blocks ({self.num_res_blocks}) must be >= 1"
            )


@dataclasses.dataclass(frozen=True)
class DDPMConfig(ModelConfig):
    """The DDPM U-Net (config.model.name 'ddpm'), sinusoidal embedding of the time index."""

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    conditional: bool = True
    scale_by_sigma: bool = False
    nonlinearity: str = "swish"
    normalization: str | None = None  # original configs: 'GroupNorm', the only one DDPM has
    conv_size: int | None = None  # original ve/cifar10_ddpm.py: 3, DDPM's only kernel size
    embedding_type: str | None = None  # inherited by the original DDPM configs; DDPM ignores it

    ORIGINAL_ONLY: ClassVar[dict[str, Any]] = {"normalization": "GroupNorm", "conv_size": 3}

    def __post_init__(self):
        super().__post_init__()
        _check_common_arch(self)
        if not self.ch_mult or min(self.ch_mult) < 1 or self.num_res_blocks < 1:
            raise ValueError(
                f"config.model.ch_mult ({self.ch_mult}) needs positive entries and "
                f"config.model.num_res_blocks ({self.num_res_blocks}) must be >= 1"
            )
        if self.embedding_type not in (None, "fourier", "positional"):
            _one_of("config.model.embedding_type", self.embedding_type, ("fourier", "positional"))


NCSNV2_NAMES = ("ncsn", "ncsnv2", "ncsnv2_64", "ncsnv2_128", "ncsnv2_256")


@dataclasses.dataclass(frozen=True)
class NCSNv2Config(ModelConfig):
    """NCSN (v1, 'ncsn') and NCSNv2 ('ncsnv2' picks by image size, or 'ncsnv2_64|128|256')."""

    nf: int = 128
    nonlinearity: str = "elu"
    normalization: str = "InstanceNorm++"
    interpolation: str = "bilinear"
    scale_by_sigma: bool = True
    # The original configs inherit these from their dataset defaults; the RefineNets have no
    # dropout and no time embedding, so both are accepted and ignored.
    dropout: float | None = None
    embedding_type: str | None = None

    def __post_init__(self):
        super().__post_init__()
        _one_of("config.model.name", self.name, NCSNV2_NAMES)
        _one_of("config.model.nonlinearity", self.nonlinearity, NONLINEARITIES)
        _positive("config.model.nf", self.nf)
        _one_of(
            "config.model.normalization",
            self.normalization,
            ("InstanceNorm++", "InstanceNorm", "VarianceNorm"),
        )
        if self.name == "ncsn" and self.normalization != "InstanceNorm++":
            raise ValueError(
                f"config.model.normalization ({self.normalization!r}): NCSN uses the conditional "
                "'InstanceNorm++' only"
            )
        _one_of("config.model.interpolation", self.interpolation, ("bilinear", "nearest_neighbor"))
        if self.num_classes:
            raise ValueError(
                f"config.model.num_classes ({self.num_classes}): class conditioning is not "
                "available for ncsn/ncsnv2; set it to 0 or use ncsnpp/ddpm"
            )


@dataclasses.dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """The residual MLP of the low-dimensional toys (config.model.name 'mlp')."""

    nf: int = 128
    num_layers: int = 3
    embedding_type: str = "fourier"
    fourier_scale: float = 16.0
    dropout: float = 0.0
    nonlinearity: str = "swish"
    scale_by_sigma: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_common_arch(self)
        _one_of("config.model.embedding_type", self.embedding_type, ("fourier", "positional"))
        _positive("config.model.num_layers", self.num_layers)


FAMILIES = {
    "ncsnpp": NCSNppConfig,
    "ddpm": DDPMConfig,
    **{name: NCSNv2Config for name in NCSNV2_NAMES},
    "mlp": MLPConfig,
}
FAMILIES_BY_CLASS = {
    NCSNppConfig: "ncsnpp",
    DDPMConfig: "ddpm",
    NCSNv2Config: "ncsnv2",
    MLPConfig: "mlp",
    ModelConfig: "model",
}


def model_class(name) -> type[ModelConfig]:
    if name not in FAMILIES:
        raise ValueError(
            f"config.model.name ({name!r}) is not a known model; valid names: {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]


# ------------------------------------------------------------------ controllable generation


@dataclasses.dataclass(frozen=True)
class ConditionConfig:
    """config.condition (sample mode): what to condition on.

    task: 'none' | 'class' | 'inpaint' | 'colorize'; label: the class (-1: 0..K-1 in turn);
    guidance: 'cfg' (a class-conditional model) or 'classifier' (--mode=train_classifier);
    scale: the guidance weight w; image: .npz / .png of the known (or gray) images ('' = the test
    split); mask: .npz / .png (1 = known) or a named mask; repeats: samples per input;
    classifier_workdir: where the classifier lives ('' = <workdir>/classifier).
    """

    task: str = "none"
    label: int = -1
    guidance: str = "cfg"
    scale: float = 1.0
    image: str = ""
    mask: str = "keep_top"
    repeats: int = 4
    classifier_workdir: str = ""

    def __post_init__(self):
        _one_of("config.condition.task", self.task, TASKS)
        _one_of("config.condition.guidance", self.guidance, GUIDANCE)
        _finite("config.condition.scale", self.scale)
        _positive("config.condition.repeats", self.repeats)

    @property
    def guided(self) -> bool:
        return self.task == "class" or self.label >= 0


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """config.classifier (--mode=train_classifier): the noise-conditional Wide-ResNet and its
    training. num_classes 0: config.model.num_classes."""

    num_classes: int = 10
    nf: int = 32
    ch_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    dropout: float = 0.1
    nonlinearity: str = "swish"
    n_iters: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    ema_rate: float = 0.999
    log_freq: int = 250
    snapshot_freq: int = 2000
    n_jitted_steps: int = 50
    eps: float = 1e-5

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(
                f"config.classifier.num_classes ({self.num_classes}) must be >= 2; set it to the "
                "number of labels of the dataset"
            )
        if self.nf % 8 or not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(
                f"config.classifier.nf ({self.nf}) must be a multiple of 8 (GroupNorm) and "
                f"ch_mult ({self.ch_mult}) positive"
            )
        for name in ("num_res_blocks", "n_iters", "batch_size", "log_freq", "snapshot_freq"):
            _positive(f"config.classifier.{name}", getattr(self, name))
        _positive("config.classifier.n_jitted_steps", self.n_jitted_steps)
        _one_of("config.classifier.nonlinearity", self.nonlinearity, NONLINEARITIES)
        if not 0.0 <= self.ema_rate < 1.0:
            raise ValueError(f"config.classifier.ema_rate ({self.ema_rate}) must lie in [0, 1)")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(lr=self.lr, warmup=self.warmup, grad_clip=self.grad_clip)


# ---------------------------------------------------------------------------------- the config


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole run, typed and checked (see the module docstring)."""

    seed: int
    training: TrainingConfig
    sampling: SamplingConfig
    eval: EvalConfig
    optim: OptimConfig
    model: ModelConfig
    data: DataConfig
    condition: ConditionConfig
    classifier: ClassifierConfig

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {
    "training": TrainingConfig,
    "sampling": SamplingConfig,
    "eval": EvalConfig,
    "optim": OptimConfig,
    "model": ModelConfig,  # the family's subclass, by config.model.name
    "data": DataConfig,
    "condition": ConditionConfig,
    "classifier": ClassifierConfig,
}
_REQUIRED_SECTIONS = ("training", "sampling", "eval", "model", "data")


def _type_name(hint) -> str:
    if typing.get_origin(hint) is tuple:
        (inner, _) = typing.get_args(hint)
        return f"a tuple of {inner.__name__}"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        names = [a.__name__ for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(names) + " (or None)"
    return hint.__name__


def _coerce(value, hint):
    """value as `hint` (int, float, bool, str, X | None, tuple[X, ...]), or raise TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, inner)
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise TypeError
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise TypeError


def _example(hint, default) -> str:
    if default is not dataclasses.MISSING and default is not None and default != ():
        return str(default)
    return {int: "1", float: "1.0", bool: "True", str: "NAME"}.get(hint, "VALUE")


def _did_you_mean(name: str, key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean config.{name}.{close[0]}?" if close else ""


def section_class(name: str, section: Mapping) -> type:
    """The dataclass of section `name` (for config.model: the family of section['name'])."""
    if name == "model":
        if "name" not in section:
            raise ValueError(
                "config.model.name is missing; set it to the network, e.g. 'ncsnpp' (valid: "
                f"{', '.join(FAMILIES)})"
            )
        return model_class(section["name"])
    return SECTIONS[name]


def read_section(name: str, section: Mapping | None, cls: type):
    """Builds dataclass `cls` from config.<name>: known fields only, required ones present,
    each of its type. Raises one ValueError naming the field, the value and the fix."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    section = {} if section is None else dict(section)
    for key in section:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(
                f"config.{name}.{key} is not a known field{_did_you_mean(name, key, fields)} "
                f"(known: {known}); remove or rename it"
            )
    kw = {}
    for fname, f in fields.items():
        if fname not in section:
            if f.default is dataclasses.MISSING:
                raise ValueError(
                    f"config.{name}.{fname} is missing; add it to the config file "
                    f"(see configs/toy/base.py) or pass --config.{name}.{fname}=VALUE"
                )
            continue
        value, hint = section[fname], hints[fname]
        try:
            kw[fname] = _coerce(value, hint)
        except TypeError:
            raise ValueError(
                f"config.{name}.{fname} must be {_type_name(hint)}, got "
                f"{type(value).__name__} {value!r}; fix the config file or pass e.g. "
                f"--config.{name}.{fname}={_example(hint, f.default)}"
            ) from None
    return cls(**kw)


def _as_dict(config) -> dict:
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict (placeholders resolved)
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise ValueError(
            f"a config must be an ml_collections.ConfigDict (or a dict), got "
            f"{type(config).__name__}; get_config() must return the ConfigDict"
        )
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()}


def from_config(config) -> Config:
    """The typed view of `config` (a ConfigDict or nested dict). Raises ValueError naming the
    field and the fix."""
    raw = _as_dict(config)
    for key in raw:
        if key not in SECTIONS and key != "seed":
            close = difflib.get_close_matches(key, [*SECTIONS, "seed"], n=1)
            hint = f"; did you mean config.{close[0]}?" if close else ""
            raise ValueError(
                f"config.{key} is not a known section{hint} (known: seed, "
                f"{', '.join(SECTIONS)}); remove or rename it"
            )
    if "seed" not in raw:
        raise ValueError("config.seed is missing; add `config.seed = 42` to the config file")
    if not isinstance(raw["seed"], int) or isinstance(raw["seed"], bool):
        raise ValueError(f"config.seed must be int, got {raw['seed']!r}; e.g. --config.seed=42")
    sections = {}
    for name in SECTIONS:
        section = raw.get(name)
        if section is None and name in _REQUIRED_SECTIONS:
            raise ValueError(
                f"config.{name} is missing; every config needs a '{name}' section "
                "(start from configs/default.py or configs/toy/base.py)"
            )
        if section is not None and not isinstance(section, Mapping):
            raise ValueError(f"config.{name} must be a section (ConfigDict), got {section!r}")
        section = section or {}
        if name == "classifier" and "num_classes" not in section:
            model_classes = raw["model"].get("num_classes") or 0
            if model_classes:
                section = {**section, "num_classes": model_classes}
        sections[name] = read_section(name, section, section_class(name, section))
    _check_across_sections(sections)
    return Config(seed=raw["seed"], **sections)


def _check_across_sections(s: dict) -> None:
    """Checks that involve two sections."""
    training, model = s["training"], s["model"]
    if training.loss == "edm" and model.preconditioning == "none":
        raise ValueError(
            "config.training.loss='edm' trains EDM's denoiser: set config.model.preconditioning "
            "to 'edm' (or 'vp', 've')"
        )
    if model.preconditioning != "none" and not training.continuous:
        raise ValueError(
            f"config.model.preconditioning ({model.preconditioning!r}) is a continuous-time "
            "parameterization; set config.training.continuous=True"
        )


# --------------------------------------------------------------------- files and command line


def configs_dir() -> str:
    """The shipped configs: `configs/` of a checkout, or `score_sde/configs/` of an installed wheel."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.join(os.path.dirname(here), "configs"), os.path.join(here, "configs")):
        if os.path.isfile(os.path.join(root, "default.py")):
            return root
    raise ValueError(f"the shipped configs are missing next to {here}; reinstall score_sde")


def shipped_configs() -> list[str]:
    """Names accepted by `--config=NAME`: every shipped file defining get_config(), e.g.
    'vp/cifar10_ddpmpp_continuous', sorted."""
    root, names = configs_dir(), []
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            if f.endswith(".py") and "def get_config(" in open(path).read():
                names.append(os.path.relpath(path, root)[: -len(".py")].replace(os.sep, "/"))
    return sorted(names)


def resolve_config_path(path: str) -> str:
    """A config file's path: `path` itself when it is a file, else the shipped config named `path`
    ('toy/gmm', 'configs/toy/gmm.py' from any directory). One ValueError naming the choices."""
    if os.path.isfile(path):
        return path
    name = path.removeprefix("configs/").removesuffix(".py")
    candidate = os.path.join(configs_dir(), *name.split("/")) + ".py"
    if os.path.isfile(candidate):
        return candidate
    close = difflib.get_close_matches(name, shipped_configs(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"--config={path}: no such config file and no shipped config of that name.{hint} Pass a "
        "Python file defining get_config() "
        "(--config=configs/toy/gmm.py) or a shipped name (--config=toy/gmm)"
        "; the list: python -c 'from score_sde import config; print(config.shipped_configs())'"
    )


def _make_configs_importable() -> None:
    """Config files import their bases as `configs.*`: that package is the shipped configs
    directory wherever the process runs (a checkout's root need not be on sys.path)."""
    import importlib.util
    import sys

    if "configs" in sys.modules:
        return
    if importlib.util.find_spec("configs") is None:
        package = types.ModuleType("configs")
        package.__path__ = [configs_dir()]
        sys.modules["configs"] = package


def load_file(path: str):
    """Runs a config file's `get_config()` (a path, or a shipped name: resolve_config_path);
    returns its ConfigDict. One ValueError on failure."""
    import runpy

    path = resolve_config_path(path)
    _make_configs_importable()
    try:
        namespace = runpy.run_path(path)
    except Exception as e:  # noqa: BLE001 - any error in the user's file: reported as the cause
        cause = " ".join(f"{type(e).__name__}: {e}".split())
        raise ValueError(f"--config={path}: the config file failed to load: {cause}") from None
    if "get_config" not in namespace:
        raise ValueError(f"--config={path}: the file defines no get_config() function")
    try:
        config = namespace["get_config"]()
    except Exception as e:  # noqa: BLE001
        cause = " ".join(f"{type(e).__name__}: {e}".split())
        raise ValueError(f"--config={path}: get_config() failed: {cause}") from None
    if not hasattr(config, "to_dict") and not isinstance(config, Mapping):
        raise ValueError(
            f"--config={path}: get_config() returned {type(config).__name__}, not an "
            "ml_collections.ConfigDict"
        )
    return config


def parse_value(text: str, hint):
    """A command-line value as `hint`: ints, floats, True/False, tuples like (1,2,2); None for
    optional fields; strings as given."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if text in ("None", "none", ""):
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
    if hint is str:
        return text
    if hint is float and text.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(text)  # read, so that the section's check names the field: "must be finite"
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise TypeError
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if origin is tuple:  # a bare comma list: 1,2,2
            value = tuple(ast.literal_eval(v) for v in text.split(",") if v.strip())
        else:
            raise TypeError from None
    if origin is tuple and not isinstance(value, tuple | list):
        value = (value,)
    return _coerce(value, hint)


def _override_example(hint, current) -> str:
    if typing.get_origin(hint) is tuple or isinstance(current, tuple | list):
        items = current if isinstance(current, tuple | list) and current else (1, 2)
        return '"(' + ",".join(repr(v) for v in items) + (',)"' if len(items) == 1 else ')"')
    if current is None or current is dataclasses.MISSING:
        return _example(hint, dataclasses.MISSING)
    return str(current)


def apply_overrides(config, overrides: Mapping[str, str]) -> dict:
    """The config (ConfigDict or dict) as a nested dict with `--config.<section>.<field>=TEXT`
    overrides applied. Each override must name a field of its section's dataclass (for
    config.model, of the family the final config.model.name selects)."""
    raw = _as_dict(config)
    model_name = overrides.get("model.name", (raw.get("model") or {}).get("name"))
    for path, text in overrides.items():
        flag = f"--config.{path}={text}"
        if path == "seed":
            try:
                raw["seed"] = int(text)
            except ValueError:
                raise ValueError(
                    f"{flag}: config.seed takes an int, e.g. --config.seed=42"
                ) from None
            continue
        name, _, field = path.partition(".")
        if name not in SECTIONS:
            close = difflib.get_close_matches(name, [*SECTIONS, "seed"], n=1)
            hint = f" (did you mean config.{close[0]}?)" if close else ""
            raise ValueError(
                f"{flag}: the config has no section {name!r}{hint}; sections: seed, "
                f"{', '.join(SECTIONS)}"
            )
        cls = model_class(model_name) if name == "model" else SECTIONS[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if field not in fields:
            close = difflib.get_close_matches(field, list(fields), n=1)
            hint = f" (did you mean config.{name}.{close[0]}?)" if close else ""
            which = f" (model {model_name!r})" if name == "model" else ""
            raise ValueError(
                f"{flag}: config.{name}{which} has no field {field!r}{hint}; fix the spelling "
                f"(known: {', '.join(sorted(fields))})"
            )
        hint_type = typing.get_type_hints(cls)[field]
        try:
            value = parse_value(text, hint_type)
        except TypeError:
            current = (raw.get(name) or {}).get(field, fields[field].default)
            raise ValueError(
                f"{flag}: config.{name}.{field} takes a value of type {_type_name(hint_type)}; "
                f"pass e.g. --config.{name}.{field}={_override_example(hint_type, current)}"
            ) from None
        section = raw.setdefault(name, {})
        if not isinstance(section, dict):
            raise ValueError(f"{flag}: config.{name} is not a section")
        section[field] = value
    return raw


def load(path: str, overrides: Mapping[str, str] | None = None) -> Config:
    """The typed config of file `path` with command-line overrides {"training.n_iters": "5"}."""
    return from_config(apply_overrides(load_file(path), overrides or {}))


def split_argv(argv: list[str], default_path: str) -> tuple[str, dict[str, str], list[str]]:
    """(config path, {field path: text}, the other arguments) of a command line: `--config=PATH`
    or `--config PATH`, and `--config.<section>.<field>=VALUE` (or `... VALUE`; a bare boolean
    `--config.<section>.<field>` means True)."""
    path, overrides, rest = default_path, {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if arg == "--config":
            if has_value:
                path, i = argv[i + 1], i + 1
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                value, i = (argv[i + 1], i + 1) if has_value else ("True", i)
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return path, overrides, rest
