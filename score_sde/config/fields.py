"""`score-sde fields [SECTION]`: every config field with its type, default and meaning.

Types and defaults are read from the section dataclasses (sections, families); the one-line
meaning of each field lives here, in MEANINGS (tests/config/test_fields.py fails on a field without one,
or on a meaning of a field that no longer exists). config.model lists the fields every family has,
then each family's own, tagged with the family ('[ncsnpp] ...').
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing

from score_sde.config.command_line import EXIT_BAD_INPUT
from score_sde.config.families import FAMILIES_BY_CLASS, ModelConfig
from score_sde.config.sections import SECTIONS

# config.model's families in listing order, with the name that tags their fields
# ('ncsnv2' stands for every NCSN / NCSNv2 name).
MODEL_FAMILIES: dict[str, type[ModelConfig]] = {
    tag: cls for cls, tag in FAMILIES_BY_CLASS.items() if cls is not ModelConfig
}

MEANINGS: dict[str, dict[str, str]] = {
    "seed": {"seed": "the run's random seed: parameters, data order, sample and probe keys"},
    "training": {
        "sde": "the forward process: 'vpsde', 'subvpsde', 'vesde', 'flow', 'cosine_flow'",
        "continuous": "continuous time t in [eps, 1] (False: the DDPM / SMLD discrete levels)",
        "reduce_mean": "average the loss over pixels (False: sum)",
        "likelihood_weighting": "weight the loss by g(t)^2 (the likelihood bound)",
        "batch_size": "examples per optimizer step, global over all devices",
        "n_iters": "optimizer steps in total",
        "snapshot_freq": "steps between kept checkpoints",
        "log_freq": "steps between progress lines and training-loss records",
        "eval_freq": "steps between eval-loss records (EMA parameters)",
        "snapshot_freq_for_preemption": "steps between the preemption checkpoint's saves",
        "snapshot_sampling": "draw a sample picture at every snapshot",
        "importance_weighting": "draw t by the likelihood weighting (needs likelihood_weighting)",
        "n_jitted_steps": "optimizer steps per device dispatch (one lax.scan)",
        "eval_after_training": "run eval mode on the final checkpoint",
        "loss": "'dsm', 'edm', 'flow_matching', 'consistency_training' or "
        "'consistency_distillation'",
        "P_mean": "EDM loss: ln sigma ~ N(P_mean, P_std^2)",
        "P_std": "EDM loss: the spread of ln sigma",
        "time_sampling": "flow matching's t: 'uniform' on [eps, T] or 'logit_normal'",
        "logit_mean": "logit-normal t: the mean of logit(t)",
        "logit_std": "logit-normal t: the spread of logit(t)",
        "ct_s0": "consistency training: discretization levels at the start of the curriculum",
        "ct_s1": "consistency training: discretization levels at its end",
        "huber_c": "consistency models: pseudo-Huber c (0: 0.00054 sqrt(dim))",
        "teacher": "consistency distillation: the teacher run's work directory",
        "teacher_solver": "consistency distillation: the teacher's ODE step, 'heun' or 'euler'",
        "allow_foreign_checkpoint": "resume from another run's checkpoint on purpose (fine-tuning)",
        "keep_checkpoints": "newest snapshots kept (0: every one)",
        "phema_stds": "EDM2 post-hoc EMA: relative widths of the power-function EMAs tracked "
        "(each in (0, 0.2887); EDM2: (0.05, 0.1); (): none)",
        "phema_freq": "steps between snapshots of those EMAs in <workdir>/phema/ (0: snapshot_freq)",
        "mesh": "device mesh (data, fsdp) sizes: fsdp > 1 shards the large weights, optimizer "
        "state and EMA over fsdp devices; -1: the remaining devices",
    },
    "sampling": {
        "method": "the sampler: 'pc', 'ode', 'edm_heun', 'dpmpp_2m', 'dpmpp_2s', 'dpmpp_3m', "
        "'dpmpp_2m_sde', 'ddim', 'consistency' (or an alias: heun, dpm2m, ...)",
        "predictor": "PC: 'euler_maruyama', 'reverse_diffusion', 'ancestral_sampling', 'none'",
        "corrector": "PC: 'langevin', 'ald', 'none'",
        "snr": "PC: the corrector's signal-to-noise ratio (its step size)",
        "n_steps_each": "PC: corrector steps per noise level",
        "noise_removal": "a final denoising step (Tweedie) at the smallest time",
        "probability_flow": "PC: predict along the probability-flow ODE instead of the SDE",
        "batch_size": "samples per sampler call, global over all devices",
        "num_samples": "sample mode: how many samples in total",
        "eps": "the smallest time the samplers reach",
        "num_steps": "few-step samplers: noise levels (0: the method's default)",
        "discretization": "few-step samplers' noise levels: 'default', 'edm', 'uniform_t', "
        "'uniform_lambda'",
        "rho": "discretization 'edm': the exponent of the rho-schedule",
        "S_churn": "edm_heun: stochasticity added per step (0: deterministic)",
        "S_tmin": "edm_heun: churn only for sigma >= S_tmin",
        "S_tmax": "edm_heun: churn only for sigma <= S_tmax",
        "S_noise": "edm_heun, dpmpp_2m_sde: scale of the fresh noise",
        "eta": "ddim: stochasticity (0: deterministic DDIM, 1: DDPM-like)",
        "rtol": "method 'ode': the adaptive solver's relative tolerance",
        "atol": "method 'ode': the adaptive solver's absolute tolerance",
        "langevin_norm": "Langevin step-size rule: 'mean_per_device' (the original's), "
        "'batch', 'mean', 'example'",
        "guide": "autoguidance: the guide run's work directory, a smaller or earlier model "
        "('' off)",
        "guide_step": "autoguidance: the guide's checkpoint step (-1: its newest)",
        "guide_weight": "autoguidance: w in s_guide + w (s - s_guide) (1: the model alone)",
        "guide_interval": "autoguidance: (t_lo, t_hi), the times it applies at (() every time)",
    },
    "eval": {
        "begin_ckpt": "first snapshot k = step // snapshot_freq to evaluate (-1: the newest only)",
        "end_ckpt": "last snapshot to evaluate",
        "batch_size": "examples per evaluation batch, global",
        "enable_sampling": "draw samples (and FID/IS/KID on images)",
        "num_samples": "samples drawn per checkpoint",
        "enable_loss": "the loss on the test split",
        "enable_bpd": "bits/dim (log-likelihood) on bpd_dataset",
        "bpd_dataset": "the split of the likelihood: 'test' or 'train'",
        "num_bpd_examples": "examples of the likelihood (-1: the whole split)",
        "hutchinson_type": "likelihood's trace estimate: 'rademacher', 'gaussian', 'exact'",
        "rtol": "likelihood ODE: relative tolerance",
        "atol": "likelihood ODE: absolute tolerance",
        "samplers": "sampling methods to evaluate (empty: config.sampling.method)",
        "num_repeats": "bits/dim: dequantization draws over the split",
        "enable_fid": "images: FID/IS/KID of the samples against reference statistics",
        "inception_weights": "the Inception weights file (None: $SCORE_SDE_INCEPTION_WEIGHTS "
        "or the cache)",
        "fid_stats": "the reference statistics .npz (None: the dataset's under assets/stats)",
        "wait_for_checkpoints": "wait for snapshots as training writes them",
        "poll_seconds": "seconds between looks for new snapshots",
        "wait_timeout": "stop waiting after this many seconds without a new snapshot",
    },
    "optim": {
        "optimizer": "'Adam' or 'AdamW'",
        "lr": "the learning rate after warmup",
        "beta1": "Adam's first-moment decay",
        "eps": "Adam's epsilon",
        "weight_decay": "weight decay (added to the gradient for Adam, decoupled for AdamW)",
        "warmup": "steps of linear learning-rate warmup",
        "grad_clip": "global gradient-norm clip (< 0: off)",
        "amsgrad": "AMSGrad's running maximum of the second moment (Adam only)",
    },
    "model": {
        "name": "the network: 'ncsnpp', 'ddpm', 'ncsn', 'ncsnv2' (_64/_128/_256), 'mlp', "
        "'uvit' or 'dit'",
        "ema_rate": "decay of the parameters' exponential moving average",
        "beta_min": "VP / sub-VP: beta(0)",
        "beta_max": "VP / sub-VP: beta(1)",
        "num_scales": "the SDE's N: discrete noise levels, and PC sampling's steps",
        "sigma_min": "VE: the smallest noise level",
        "sigma_max": "VE: the largest noise level",
        "sigma_begin": "NCSN's name of sigma_max (must equal it)",
        "num_classes": "> 0: class-conditional on that many labels (plus a null label)",
        "class_dropout": "classifier-free guidance: probability of the null label in training",
        "dtype": "compute dtype: 'float32' or 'bfloat16'",
        "preconditioning": "'none', or EDM's 'edm', 'vp', 've', or 'consistency'",
        "sigma_data": "preconditioning 'edm' / 'consistency': the data's standard deviation",
        "nf": "base channel count (hidden width for the MLP)",
        "ch_mult": "channel multiplier per resolution",
        "num_res_blocks": "residual blocks per resolution",
        "attn_resolutions": "resolutions with self-attention",
        "dropout": "dropout probability (NCSN/NCSNv2: accepted, unused)",
        "resamp_with_conv": "up/downsample with a convolution",
        "conditional": "condition on the noise level",
        "fir": "FIR-filtered up/downsampling",
        "fir_kernel": "the FIR filter's taps",
        "skip_rescale": "scale skip connections by 1/sqrt(2)",
        "resblock_type": "'biggan' or 'ddpm' residual blocks",
        "progressive": "output path: 'none', 'output_skip', 'residual'",
        "progressive_input": "input path: 'none', 'input_skip', 'residual'",
        "progressive_combine": "how progressive paths join: 'sum' or 'cat'",
        "embedding_type": "noise-level embedding: 'fourier' or 'positional' (DDPM, NCSN: unused)",
        "fourier_scale": "scale of the Fourier features",
        "init_scale": "scale of the final layers' initialization",
        "conv_size": "convolution kernel size",
        "scale_by_sigma": "divide the output by sigma (VE score parameterization)",
        "nonlinearity": "activation: 'elu', 'relu', 'lrelu', 'swish', 'silu'",
        "normalization": "NCSN(v2): 'InstanceNorm++', 'InstanceNorm', 'VarianceNorm'; others: "
        "the original's 'GroupNorm' only",
        "attention_type": "the original's 'ddpm' only",
        "interpolation": "upsampling: 'bilinear' or 'nearest_neighbor'",
        "num_layers": "residual MLP blocks",
        "patch_size": "transformers: side of the square patches that become tokens",
        "embed_dim": "U-ViT: token width",
        "hidden_size": "DiT: token width",
        "depth": "transformer blocks (U-ViT: depth // 2 in, 1 middle, depth // 2 out)",
        "num_heads": "attention heads per block",
        "mlp_ratio": "the token MLP's hidden width over the token width",
        "qkv_bias": "U-ViT: biases in the query/key/value projection",
        "mlp_time_embed": "U-ViT: an MLP (D -> 4D -> D) on the time token's embedding",
        "conv": "U-ViT: a final 3x3 convolution on the unpatchified output",
        "learn_sigma": "DiT: 2C output channels as the original (the extra C are discarded)",
        "time_offset": "DiT: its t_embedder sees time_offset + time_scale * labels (SiT: 1)",
        "time_scale": "DiT: see time_offset (SiT on a flow path: -1 / 999)",
    },
    "data": {
        "dataset": "TFDS name, 'npz', 'folder', 'digits' or a 2-D toy ('toy/gmm', ...)",
        "image_size": "images: height and width",
        "num_channels": "images: channels",
        "dim": "vectors: dimension",
        "centered": "model space [-1, 1] instead of [0, 1]",
        "random_flip": "random horizontal flips in training",
        "uniform_dequantization": "add U[0, 1/256) noise to 8-bit pixels in training",
        "path": ".npz file or image folder",
        "data_dir": "TFDS data directory (None: $TFDS_DATA_DIR)",
        "category": "LSUN category, e.g. 'church_outdoor'",
        "tfrecords_path": "the original CelebA-HQ / FFHQ configs' path, read as path",
        "skip_bad_images": "image folders: leave out undecodable files (with a warning)",
    },
    "condition": {
        "task": "sample mode: 'none', 'class', 'inpaint', 'colorize'",
        "label": "the class (-1: 0..K-1 in turn)",
        "guidance": "'cfg' (class-conditional model) or 'classifier'",
        "scale": "the guidance weight w",
        "image": ".npz / .png of the known (or gray) images ('': the test split)",
        "mask": ".npz / .png (1 = known) or a named mask",
        "repeats": "samples per input",
        "classifier_workdir": "the classifier's work directory ('': <workdir>/classifier)",
    },
    "classifier": {
        "num_classes": "labels (default: config.model.num_classes)",
        "nf": "base channel count of the Wide-ResNet",
        "ch_mult": "channel multiplier per resolution",
        "num_res_blocks": "residual blocks per resolution",
        "dropout": "dropout probability",
        "nonlinearity": "activation: 'elu', 'relu', 'lrelu', 'swish', 'silu'",
        "n_iters": "training steps",
        "batch_size": "examples per step, global",
        "lr": "the learning rate after warmup",
        "warmup": "steps of linear warmup",
        "grad_clip": "global gradient-norm clip",
        "ema_rate": "decay of the parameters' moving average",
        "log_freq": "steps between progress lines",
        "snapshot_freq": "steps between checkpoints",
        "n_jitted_steps": "steps per device dispatch",
        "eps": "the smallest time of the noised inputs",
    },
    "logging": {
        "wandb": "a Weights & Biases project to log to ('': off; pip install -e \".[wandb]\")",
        "wandb_name": "the W&B run's name ('': the work directory's basename)",
        "wandb_mode": "'online', or 'offline' (under <workdir>/wandb/; upload with wandb sync)",
        "wandb_entity": "the W&B team or user ('': your default)",
    },
}


def sections() -> tuple[str, ...]:
    """What `score-sde fields SECTION` takes: 'seed' and the config's sections, in order."""
    return ("seed", *SECTIONS)


def _type_text(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(
            "None" if a is type(None) else _type_text(a) for a in typing.get_args(hint)
        )
    if typing.get_origin(hint) is tuple:
        return f"tuple[{typing.get_args(hint)[0].__name__}, ...]"
    return hint.__name__


def _default_text(field: dataclasses.Field) -> str:
    if field.default is dataclasses.MISSING:
        return "required"
    if isinstance(field.default, float) and math.isinf(field.default):
        return "inf" if field.default > 0 else "-inf"
    return repr(field.default)


def _fields_of(cls: type, skip: set[str]) -> list[tuple[dataclasses.Field, object]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skip]


def rows(section: str | None = None) -> list[tuple[str, str, str, str]]:
    """(section.field, type, default, meaning) of every field of `section` (None: all), in the
    dataclasses' order; config.model's family fields carry their family's tag. ValueError for
    a section that does not exist, naming the valid ones."""
    if section is not None and section not in sections():
        raise ValueError(
            f"score-sde fields: no config section {section!r}; valid sections: "
            f"{', '.join(sections())}"
        )
    out = []
    if section in (None, "seed"):
        out.append(("seed", "int", "required", MEANINGS["seed"]["seed"]))
    for name, cls in SECTIONS.items():
        if section not in (None, name):
            continue
        meanings = MEANINGS[name]
        for f, hint in _fields_of(cls, set()):
            out.append((f"{name}.{f.name}", _type_text(hint), _default_text(f), meanings[f.name]))
        if name == "model":
            common = {f.name for f in dataclasses.fields(ModelConfig)}
            for family, family_cls in MODEL_FAMILIES.items():
                for f, hint in _fields_of(family_cls, common):
                    meaning = f"[{family}] {meanings[f.name]}"
                    out.append((f"model.{f.name}", _type_text(hint), _default_text(f), meaning))
    return out


def table(section: str | None = None) -> str:
    """rows(section) as aligned text, one line per field."""
    found = rows(section)
    widths = [max(len(r[i]) for r in found) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in found
    )


USAGE = """usage: score-sde fields [SECTION]

Every config field, one line each: section.field, type, default, meaning; each one can be set
with --config.SECTION.FIELD=VALUE. SECTION lists only that section; config.model lists the
fields every network has, then each family's own, tagged [family].

sections: {sections}

example:
  score-sde fields sampling"""


def main(args: list[str]) -> int:
    """`score-sde fields [SECTION]`: prints the table and returns 0; --help prints the usage;
    a bad section prints one `error:` line and returns 2."""
    if set(args) & {"-h", "--help", "-help"}:
        print(USAGE.format(sections=", ".join(sections())))
        return 0
    if len(args) > 1:
        print(f"error: score-sde fields takes at most one SECTION, got {args}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        text = table(args[0] if args else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `score-sde fields | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
