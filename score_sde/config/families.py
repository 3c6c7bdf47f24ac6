"""config.model: one frozen dataclass per network family, chosen by config.model.name.

NCSN++ / DDPM++ (`ncsnpp`), DDPM, NCSN / NCSNv2, the toy MLP, the transformers U-ViT and DiT.
Each family knows exactly the fields
it reads, plus the few the original configs set without effect (`ORIGINAL_ONLY`: accepted with the
only value that has a meaning for the family, never set by the configs shipped here).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from score_sde.config.checks import _finite, _fraction, _one_of, _positive

PRECONDITIONINGS = ("none", "edm", "vp", "ve", "consistency")
NONLINEARITIES = ("elu", "relu", "lrelu", "swish", "silu")
DTYPES = ("float32", "bfloat16")


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
    # parameterization), 'edm', 'vp', 've', or 'consistency' (a consistency model, its boundary
    # at sigma_min); sigma_data for 'edm' and 'consistency'.
    preconditioning: str = "none"
    sigma_data: float = 0.5

    ORIGINAL_ONLY: ClassVar[dict[str, Any]] = {}  # field -> the one value with a meaning here

    def __post_init__(self):
        _fraction("config.model.ema_rate", self.ema_rate)
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
        _fraction("config.model.class_dropout", self.class_dropout)
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
                    "conditioned on a continuous noise level: ncsnpp, ddpm, mlp, uvit or dit, not "
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
    _fraction("config.model.dropout", m.dropout)


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


def _check_transformer(m, width_field: str) -> None:
    for name in ("patch_size", "depth", "num_heads", width_field):
        _positive(f"config.model.{name}", getattr(m, name))
    _finite("config.model.mlp_ratio", m.mlp_ratio)
    _positive("config.model.mlp_ratio", m.mlp_ratio)
    width = getattr(m, width_field)
    if width % m.num_heads:
        raise ValueError(
            f"config.model.num_heads ({m.num_heads}) must divide config.model.{width_field} "
            f"({width})"
        )


@dataclasses.dataclass(frozen=True)
class UViTConfig(ModelConfig):
    """U-ViT (config.model.name 'uvit'): patch, time and class tokens, long skips; the defaults
    are U-ViT-S/2 of the CIFAR-10 experiment (depth 12 as its config writes it: 6 in, 1 middle
    and 6 out blocks, the paper's 13 layers; 44M parameters)."""

    patch_size: int = 2
    embed_dim: int = 512
    depth: int = 12
    num_heads: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    mlp_time_embed: bool = False
    conv: bool = True
    scale_by_sigma: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_transformer(self, "embed_dim")


@dataclasses.dataclass(frozen=True)
class DiTConfig(ModelConfig):
    """DiT (config.model.name 'dit'): patches conditioned by adaLN-Zero; the defaults are
    DiT-S/2 (XL/2: hidden_size 1152, depth 28, num_heads 16)."""

    patch_size: int = 2
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    learn_sigma: bool = False
    scale_by_sigma: bool = False
    # the timestep DiT's t_embedder embeds: time_offset + time_scale * labels (SiT, whose t runs
    # from noise 0 to data 1, on a flow path's labels 999 t: 1 - labels / 999)
    time_offset: float = 0.0
    time_scale: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check_transformer(self, "hidden_size")
        _finite("config.model.time_offset", self.time_offset)
        _finite("config.model.time_scale", self.time_scale)


FAMILIES = {
    "ncsnpp": NCSNppConfig,
    "ddpm": DDPMConfig,
    **{name: NCSNv2Config for name in NCSNV2_NAMES},
    "mlp": MLPConfig,
    "uvit": UViTConfig,
    "dit": DiTConfig,
}
FAMILIES_BY_CLASS = {
    NCSNppConfig: "ncsnpp",
    DDPMConfig: "ddpm",
    NCSNv2Config: "ncsnv2",
    MLPConfig: "mlp",
    UViTConfig: "uvit",
    DiTConfig: "dit",
    ModelConfig: "model",
}


def model_class(name) -> type[ModelConfig]:
    if name not in FAMILIES:
        raise ValueError(
            f"config.model.name ({name!r}) is not a known model; valid names: {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]
