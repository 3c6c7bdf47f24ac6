"""The config boundary: a ConfigDict (configs/*.py) -> typed frozen dataclasses, checked once.

Library code below this point never calls `config.get(key, default)`. Every problem is reported as
one ValueError naming the field, its value and the fix. `config.model` and `config.data` are read
by the models and data modules themselves (they get the ConfigDict); here only the fields the
launcher uses from them are checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from score_sde.train import OptimConfig

_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    sde: str
    continuous: bool
    reduce_mean: bool
    likelihood_weighting: bool
    batch_size: int  # global, over all devices of all processes
    n_iters: int
    snapshot_freq: int
    log_freq: int
    eval_freq: int
    snapshot_freq_for_preemption: int
    snapshot_sampling: bool
    importance_weighting: bool = False
    n_jitted_steps: int = 1  # optimizer steps per dispatch (lax.scan)
    eval_after_training: bool = False  # run eval mode on the final checkpoint (toy report)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    method: str
    predictor: str
    corrector: str
    snr: float
    n_steps_each: int
    noise_removal: bool
    probability_flow: bool
    batch_size: int = 64  # samples per sampler call (global)
    num_samples: int = 64  # sample mode: how many in total


@dataclasses.dataclass(frozen=True)
class EvalConfig:
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


@dataclasses.dataclass(frozen=True)
class SDEConfig:
    """The SDE's fields, which the original configs keep under config.model."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    num_scales: int = 1000
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    ema_rate: float = 0.9999


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int
    training: TrainingConfig
    sampling: SamplingConfig
    eval: EvalConfig
    optim: OptimConfig
    model: SDEConfig
    dataset: str
    centered: bool
    raw: Any  # the ConfigDict, for models.init_model and datasets.get_dataset

    @property
    def is_toy(self) -> bool:
        return self.dataset.lower().startswith("toy/")


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    return True


def _section(config, name: str, cls, *, strict: bool = True, fix: str = ""):
    """Builds dataclass `cls` from config.<name>: required fields, no unknown ones, types."""
    if name not in config:
        raise ValueError(
            f"config.{name} is missing; every config needs a '{name}' section "
            f"(start from configs/default.py or configs/toy/base.py){fix}"
        )
    section = config[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if strict:
        for key in section.keys():
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean config.{name}.{close[0]}?" if close else ""
                raise ValueError(
                    f"config.{name}.{key} is not a known field{hint} "
                    f"(known: {', '.join(sorted(fields))}); remove or rename it"
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
        value = section[fname]
        hint = hints[fname]
        if not _type_ok(value, hint):
            tname = getattr(hint, "__name__", str(hint))
            raise ValueError(
                f"config.{name}.{fname} must be {tname}, got {type(value).__name__} {value!r}; "
                f"fix the config file or pass e.g. --config.{name}.{fname}="
                f"{_example(hint, f.default)}"
            )
        if typing.get_origin(hint) is tuple:
            value = tuple(value)
        elif hint is float:
            value = float(value)
        kw[fname] = value
    return cls(**kw)


def _example(hint, default):
    if default is not dataclasses.MISSING:
        return default
    return {int: 1, float: 1.0, bool: True, str: "NAME"}.get(hint, "VALUE")


def _positive(field: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{field} ({value}) must be a positive integer")


def from_config(config) -> RunConfig:
    """Checks `config` and returns its typed view. Raises ValueError naming the field and fix."""
    if "seed" not in config:
        raise ValueError("config.seed is missing; add `config.seed = 42` to the config file")
    if not _type_ok(config.seed, int):
        raise ValueError(f"config.seed must be int, got {config.seed!r}; e.g. --config.seed=42")
    training = _section(config, "training", TrainingConfig)
    sampling = _section(config, "sampling", SamplingConfig)
    evaluate = _section(config, "eval", EvalConfig)
    optim = _section(config, "optim", OptimConfig)
    model = _section(config, "model", SDEConfig, strict=False)
    if "data" not in config or "dataset" not in config.data:
        raise ValueError(
            "config.data.dataset is missing; set it, e.g. --config.data.dataset=toy/gmm"
        )
    for field in (
        "batch_size",
        "n_iters",
        "snapshot_freq",
        "log_freq",
        "eval_freq",
        "snapshot_freq_for_preemption",
        "n_jitted_steps",
    ):
        _positive(f"config.training.{field}", getattr(training, field))
    _positive("config.eval.batch_size", evaluate.batch_size)
    _positive("config.eval.num_repeats", evaluate.num_repeats)
    _positive("config.eval.num_samples", evaluate.num_samples)
    _positive("config.sampling.batch_size", sampling.batch_size)
    if not 0.0 <= model.ema_rate < 1.0:
        raise ValueError(f"config.model.ema_rate ({model.ema_rate}) must lie in [0, 1)")
    for s in evaluate.samplers:
        if s not in ("pc", "ode"):
            raise ValueError(
                f"config.eval.samplers contains {s!r}; each entry must be 'pc' or 'ode'"
            )
    return RunConfig(
        seed=int(config.seed),
        training=training,
        sampling=sampling,
        eval=evaluate,
        optim=optim,
        model=model,
        dataset=str(config.data.dataset),
        centered=bool(config.data.get("centered", False)),
        raw=config,
    )


# ---------------------------------------------------------------------------- command-line errors


def _load_config_file(path: str):
    import runpy

    return runpy.run_path(path)["get_config"]()


def explain_flag_error(argv: list[str], error: Exception, default_config: str) -> str:
    """One line naming the flag at fault and the fix, for an error raised while parsing `argv`.

    Cases: a missing config file, a config file that fails to load, an override of a field the
    config does not have (with the closest name), an override value of the wrong type.
    """
    import os

    config_path, overrides = default_config, {}
    args = iter(argv[1:])
    for arg in args:
        if arg == "--config":
            config_path = next(args, config_path)
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            name, _, value = arg[len("--config.") :].partition("=")
            overrides[name] = value
    if not os.path.isfile(config_path):
        return (
            f"--config={config_path}: no such config file; pass a Python file defining "
            "get_config(), e.g. --config=configs/toy/gmm.py"
        )
    try:
        config = _load_config_file(config_path)
    except Exception as e:  # noqa: BLE001 - reported as the cause
        return f"--config={config_path}: the config file failed to load: {type(e).__name__}: {e}"
    for path, value in overrides.items():
        node, walked = config, "config"
        for name in path.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if name not in keys:
                close = difflib.get_close_matches(name, keys, n=1)
                hint = f" (did you mean {walked}.{close[0]}?)" if close else ""
                return (
                    f"--config.{path}: {walked} has no field {name!r}{hint}; fix the spelling or "
                    f"add the field to {config_path} (known: {', '.join(sorted(keys))})"
                )
            node, walked = node[name], f"{walked}.{name}"
        if f"config.{path}" in str(error):
            kind = "str" if node is None else type(node).__name__
            return (
                f"--config.{path}={value}: config.{path} takes a value of type {kind} (now "
                f"{node!r} in {config_path}); pass e.g. --config.{path}={_override_example(node)}"
            )
    return f"{' '.join(str(error).split())}; see python launch.py --helpfull"


def _override_example(value) -> str:
    if isinstance(value, tuple | list):
        return '"(' + ",".join(repr(v) for v in value) + (',)"' if len(value) == 1 else ')"')
    return str(value) if value is not None else "VALUE"
