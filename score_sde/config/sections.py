"""The sections of a run's config: frozen dataclasses, each checking its own values.

The defaults are the original score_sde's, so an original config file loads unchanged; the model
section's dataclass is its network family's (score_sde.config.families).
"""

from __future__ import annotations

import dataclasses
import math

from score_sde import names
from score_sde.config.checks import _finite, _fraction, _one_of, _positive
from score_sde.config.families import NONLINEARITIES, ModelConfig

SDES = ("vpsde", "subvpsde", "vesde", "flow", "cosine_flow")
FLOWS = ("flow", "cosine_flow")  # flow-matching paths (sde.FlowPath): linear and cosine
LOSSES = ("dsm", "edm", "flow_matching", "consistency_training", "consistency_distillation")
CONSISTENCY = LOSSES[3:]  # a consistency model (config.model.preconditioning='consistency')
DISCRETIZATIONS = ("default", "edm", "uniform_t", "uniform_lambda")
TASKS = ("none", "class", "inpaint", "colorize")
GUIDANCE = ("cfg", "classifier")


def _check_pc_names(predictor: str, corrector: str) -> None:
    """config.sampling.predictor / corrector are names score_sde.sampling knows."""
    for field, name, check, valid in (
        ("predictor", predictor, names.predictor_name, names.PREDICTORS),
        ("corrector", corrector, names.corrector_name, names.CORRECTORS),
    ):
        try:
            check(name)
        except ValueError:
            raise ValueError(
                f"config.sampling.{field} ({name!r}) is not a {field}; valid names: "
                f"{', '.join(valid)}"
            ) from None


def sampling_methods() -> tuple[str, ...]:
    """'pc', 'ode' and the few-step methods of score_sde.fast_sampling."""
    return ("pc", "ode", *names.FAST_METHODS)


def _sampling_method(field: str, name: str) -> str:
    """`name` checked against the sampling methods and their aliases; the canonical name. A
    k-diffusion name is answered with the exact setting of the same sampler."""
    valid = (*sampling_methods(), *names.ALIASES)
    if name not in valid and (hint := names.kdiffusion_hint(name)) is not None:
        raise ValueError(f"{field} ({name!r}) is not a sampling method here: {hint}")
    _one_of(field, name, valid)
    return names.canonical_name(name)


PHEMA_MAX_STD = math.sqrt(1 / 12)  # score_sde.phema.MAX_STD (the flat profile), without JAX


def _check_phema(stds: tuple[float, ...], freq: int) -> None:
    """config.training.phema_stds: distinct widths in (0, sqrt(1/12)); phema_freq >= 0, set
    only with them."""
    field = "config.training.phema_stds"
    for std in stds:
        if not 0.0 < std < PHEMA_MAX_STD:
            raise ValueError(
                f"{field} ({tuple(stds)}) holds {std}: each relative EMA width must lie in "
                f"(0, {PHEMA_MAX_STD:.4f}) (sqrt(1/12), a flat average); EDM2 uses (0.05, 0.1)"
            )
    if len(set(stds)) != len(stds):
        raise ValueError(f"{field} ({tuple(stds)}) must not repeat a width")
    if freq < 0:
        raise ValueError(
            f"config.training.phema_freq ({freq}) must be >= 0 (0: every snapshot_freq)"
        )
    if freq and not stds:
        raise ValueError(
            f"config.training.phema_freq ({freq}) is read only with config.training.phema_stds; "
            "set the widths too (e.g. '(0.05,0.1)') or remove phema_freq"
        )


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
    # 'dsm' (denoising score matching; DDPM / SMLD in discrete time), 'edm' (EDM's loss, with
    # config.model.preconditioning) or 'flow_matching' (a velocity network on sde 'flow' or
    # 'cosine_flow'). The original NCSN configs name their SDE here: that is 'dsm'.
    loss: str = "dsm"
    P_mean: float = -1.2  # EDM loss: ln sigma ~ N(P_mean, P_std^2)
    P_std: float = 1.2
    # flow matching's t: 'uniform' on [eps, T], or 'logit_normal': sigmoid(N(logit_mean, logit_std^2))
    time_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # consistency models (score_sde.consistency): CT's curriculum s0 -> s1 levels, the
    # pseudo-Huber c (0: 0.00054 sqrt(dim)); CD's teacher run (a work directory) and its solver
    ct_s0: int = 10
    ct_s1: int = 1280
    huber_c: float = 0.0
    teacher: str = ""
    teacher_solver: str = "heun"
    # Resume from a checkpoint of another run or of other model/SDE/data fields on purpose
    # (fine-tuning from another run's weights); refused otherwise (score_sde.run.identity).
    allow_foreign_checkpoint: bool = False
    # Snapshots kept in checkpoints/: 0 keeps every one (the original's behaviour); N > 0 keeps
    # the newest N that this run wrote or restored and verified, deleting older ones after each
    # successful snapshot (damaged or misnamed ones are left alone).
    keep_checkpoints: int = 0
    # EDM2's post-hoc EMA (score_sde.phema): the relative widths of the power-function EMA
    # profiles tracked beside ema_params (EDM2: (0.05, 0.1)); () tracks none. Their snapshots go
    # to <workdir>/phema/ every phema_freq steps (0: every snapshot_freq; like every event, at
    # the end of the dispatch of n_jitted_steps that crosses the multiple) and at the last step;
    # `python -m score_sde.phema` reconstructs any width from them.
    phema_stds: tuple[float, ...] = ()
    phema_freq: int = 0
    # The device mesh (data, fsdp): fsdp > 1 splits the large weights and their optimizer state
    # and EMA over fsdp devices (score_sde.parallel.state_sharding); -1: the remaining devices.
    # The batch is split over every device either way. (-1, 1): data parallel.
    mesh: tuple[int, int] = (-1, 1)

    def __post_init__(self):
        _one_of("config.training.sde", self.sde, SDES)
        if self.keep_checkpoints < 0:
            raise ValueError(
                f"config.training.keep_checkpoints ({self.keep_checkpoints}) must be >= 0 "
                "(0 keeps every snapshot)"
            )
        if self.loss in SDES and self.loss != self.sde:
            raise ValueError(
                f"config.training.loss ({self.loss!r}) names an SDE other than "
                f"config.training.sde ({self.sde!r}); use 'dsm' (or remove the field)"
            )
        if self.loss not in SDES:
            _one_of("config.training.loss", self.loss, LOSSES)
        _one_of("config.training.time_sampling", self.time_sampling, names.TIME_SAMPLINGS)
        _finite("config.training.logit_mean", self.logit_mean)
        _positive("config.training.logit_std", self.logit_std)
        _positive("config.training.ct_s0", self.ct_s0)
        if len(self.mesh) != 2 or self.mesh[1] < 1 or not (self.mesh[0] == -1 or self.mesh[0] >= 1):
            raise ValueError(
                f"config.training.mesh {tuple(self.mesh)} must be (data, fsdp) sizes: fsdp >= 1 "
                "and data -1 (the remaining devices) or >= 1, e.g. --config.training.mesh='(-1, 2)'"
            )
        if self.ct_s1 < self.ct_s0:
            raise ValueError(
                f"config.training.ct_s1 ({self.ct_s1}) must be >= ct_s0 ({self.ct_s0})"
            )
        _finite("config.training.huber_c", self.huber_c)
        if self.huber_c < 0:
            raise ValueError(f"config.training.huber_c ({self.huber_c}) must be >= 0")
        _one_of("config.training.teacher_solver", self.teacher_solver, names.TEACHER_SOLVERS)
        if (self.loss == "consistency_distillation") != bool(self.teacher):
            raise ValueError(
                "config.training.loss='consistency_distillation' distills a trained score model: "
                "set config.training.teacher to its work directory (and only then)"
                if not self.teacher
                else f"config.training.teacher ({self.teacher!r}) is read by "
                "loss='consistency_distillation' only; remove it or set that loss"
            )
        if self.loss in CONSISTENCY and self.sde != "vesde":
            raise ValueError(
                f"config.training.loss ({self.loss!r}) trains in EDM's sigma: set "
                "config.training.sde='vesde' (sigma_min -> sigma_max of config.model)"
            )
        if (self.loss == "flow_matching") != (self.sde in FLOWS) and self.loss in (
            "dsm",
            "flow_matching",
        ):
            raise ValueError(
                f"config.training.loss ({self.loss!r}) and config.training.sde ({self.sde!r}) "
                "do not go together: flow matching trains on a flow path; set both "
                "(loss='flow_matching', sde='flow' or 'cosine_flow') or neither"
            )
        if self.time_sampling != "uniform" and self.loss != "flow_matching":
            raise ValueError(
                f"config.training.time_sampling ({self.time_sampling!r}) applies to "
                "loss='flow_matching' only; remove it"
            )
        if self.sde in FLOWS and (
            not self.continuous or self.likelihood_weighting or self.importance_weighting
        ):
            raise ValueError(
                f"config.training.sde ({self.sde!r}) is a continuous-time flow path without "
                "likelihood weighting: set continuous=True, likelihood_weighting=False, "
                "importance_weighting=False"
            )
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
        _check_phema(self.phema_stds, self.phema_freq)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """config.sampling: the sampler. 'pc' (predictor, corrector, snr, n_steps_each), 'ode' (the
    adaptive probability-flow ODE), or a few-step sampler of score_sde.fast_sampling:
    'edm_heun' (S_churn, S_tmin, S_tmax, S_noise), 'dpmpp_2m', 'dpmpp_2s', 'dpmpp_3m',
    'dpmpp_2m_sde', 'ddim' (eta) (aliases 'heun', 'dpm2m', 'dpm2s', 'dpm3m'), on num_steps noise levels (0: the method's default) of
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
    # method 'ode': the adaptive solver's tolerances (config.eval.rtol/atol are the likelihood's)
    rtol: float = 1e-5
    atol: float = 1e-5
    # the Langevin corrector's step-size rule (score_sde.sampling.langevin): 'mean_per_device' (the
    # original code's, with which the published FIDs were made: an original config file gets it),
    # 'batch' (ours: independent of the device count; the toys and digits), 'mean', 'example'
    langevin_norm: str = "mean_per_device"
    # autoguidance (score_sde.guidance.autoguided_score, Karras et al. 2024): the guide run's work
    # directory ('' off; this run's own with guide_step: an earlier snapshot), its step (-1: the
    # newest), the weight w of s_g + w (s - s_g), the times (t_lo, t_hi) it applies at (() all)
    guide: str = ""
    guide_step: int = -1
    guide_weight: float = 2.0
    guide_interval: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "method", _sampling_method("config.sampling.method", self.method))
        self._check_guide()
        _check_pc_names(self.predictor, self.corrector)
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
        if self.num_steps < 0 or (self.num_steps == 1 and self.method != "consistency"):
            raise ValueError(
                f"config.sampling.num_steps ({self.num_steps}) must be 0 (the method's default) "
                "or >= 2 (>= 1 for method 'consistency')"
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
        for name in ("rtol", "atol"):
            _finite(f"config.sampling.{name}", getattr(self, name))
            _positive(f"config.sampling.{name}", getattr(self, name))
        _one_of("config.sampling.langevin_norm", self.langevin_norm, names.LANGEVIN_NORMS)

    def _check_guide(self) -> None:
        if self.guide_step < -1:
            raise ValueError(
                f"config.sampling.guide_step ({self.guide_step}) must be a step >= 0 or -1 "
                "(the guide's newest checkpoint)"
            )
        _finite("config.sampling.guide_weight", self.guide_weight)
        iv = self.guide_interval
        if iv and not (len(iv) == 2 and all(map(math.isfinite, iv)) and 0 <= iv[0] <= iv[1]):
            raise ValueError(
                f"config.sampling.guide_interval ({iv!r}) must be () (guide at every time) or "
                '(t_lo, t_hi) with 0 <= t_lo <= t_hi, e.g. "(0.1,0.8)"'
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
        for name, minus_one in (("begin_ckpt", "the newest only"), ("end_ckpt", "no end")):
            if getattr(self, name) < -1:
                raise ValueError(
                    f"config.eval.{name} ({getattr(self, name)}) must be a snapshot number >= 0, "
                    f"or -1 for {minus_one}"
                )
        if 0 <= self.end_ckpt < self.begin_ckpt:
            raise ValueError(
                f"config.eval.end_ckpt ({self.end_ckpt}) is before config.eval.begin_ckpt "
                f"({self.begin_ckpt}): the range of snapshots to evaluate is empty; set "
                f"--config.eval.end_ckpt={self.begin_ckpt} or larger"
            )
        _one_of(
            "config.eval.hutchinson_type", self.hutchinson_type, ("rademacher", "gaussian", "exact")
        )
        names = tuple(
            _sampling_method("each entry of config.eval.samplers", s) for s in self.samplers
        )
        object.__setattr__(self, "samplers", names)
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
        _fraction("config.optim.beta1", self.beta1)
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
        assert self.image_size is not None and self.num_channels is not None  # __post_init__
        return (self.image_size, self.image_size, self.num_channels)


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
        _fraction("config.classifier.ema_rate", self.ema_rate)

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(lr=self.lr, warmup=self.warmup, grad_clip=self.grad_clip)


WANDB_MODES = ("online", "offline")


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    """config.logging: train mode's metrics and sample grids to Weights & Biases too, besides
    stdout, metrics.jsonl and TensorBoard (which every run writes). wandb: a Weights & Biases project ('' = off; needs `pip install -e ".[wandb]"`);
    wandb_name: the run's name ('' = the work directory's basename); wandb_mode: 'online' or
    'offline' (written under <workdir>/wandb/, uploaded later with `wandb sync`); wandb_entity: the
    team or user ('' = W&B's default). Not part of a run's identity: may change on resume."""

    wandb: str = ""
    wandb_name: str = ""
    wandb_mode: str = "online"
    wandb_entity: str = ""

    def __post_init__(self):
        _one_of("config.logging.wandb_mode", self.wandb_mode, WANDB_MODES)
        if not self.wandb:
            for name in ("wandb_name", "wandb_entity"):
                if getattr(self, name):
                    raise ValueError(
                        f"config.logging.{name} ({getattr(self, name)!r}) is read only with "
                        "a W&B project: set config.logging.wandb too, or remove it"
                    )


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
    logging: LoggingConfig = LoggingConfig()

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
    "logging": LoggingConfig,
}
_REQUIRED_SECTIONS = ("training", "sampling", "eval", "model", "data")
