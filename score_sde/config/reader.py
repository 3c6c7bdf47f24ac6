"""The one strict reader: a ConfigDict (or nested dict) -> the typed, checked `Config`.

Every section is filled by `read_section`: an unknown field is rejected with the closest known
name, a wrong type names the field, the value and the fix, a missing required field says how to
set it; each dataclass then checks its values, and `from_config` the rules across sections.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping

from score_sde.config.checks import did_you_mean
from score_sde.config.families import FAMILIES, model_class
from score_sde.config.sections import _REQUIRED_SECTIONS, CONSISTENCY, SECTIONS, Config

# Every integer field (steps, sizes, counts, seeds) fits in 32 bits: a larger number is a typo, and
# would overflow an int32 array far from the config.
INT_LIMIT = 2**31 - 1


def too_large(field: str, value) -> str:
    return f"{field} ({value}) is too large: integer fields take at most {INT_LIMIT}"


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
            if abs(value) > INT_LIMIT:
                raise OverflowError
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


def field_hint(name: str, key: str, fields) -> str:
    """The hint for an unknown field config.<name>.<key>: the section that has a field of that
    exact name (' (did you mean config.model.nf?)'), else the closest field of its own section."""
    for other, cls in SECTIONS.items():
        classes = set(FAMILIES.values()) if other == "model" else {cls}
        if other != name and any(key in {f.name for f in dataclasses.fields(c)} for c in classes):
            return f" (did you mean config.{other}.{key}?)"
    return did_you_mean(key, fields, f"config.{name}.")


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
                f"config.{name}.{key} is not a known field{field_hint(name, key, fields)} "
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
        except OverflowError:
            raise ValueError(too_large(f"config.{name}.{fname}", value)) from None
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
            hint = did_you_mean(key, [*SECTIONS, "seed"])
            raise ValueError(
                f"config.{key} is not a known section{hint} (known: seed, "
                f"{', '.join(SECTIONS)}); remove or rename it"
            )
    if "seed" not in raw:
        raise ValueError("config.seed is missing; add `config.seed = 42` to the config file")
    seed = raw["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= INT_LIMIT:
        raise ValueError(
            f"config.seed must be an int in [0, {INT_LIMIT}], got {seed!r}; e.g. --config.seed=42"
        )
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
    training, model, sampling, ev = s["training"], s["model"], s["sampling"], s["eval"]
    uses_pc = sampling.method == "pc" or "pc" in ev.samplers
    if uses_pc and sampling.predictor.lower().startswith("ancestral"):
        if training.sde == "subvpsde":
            raise ValueError(
                "config.sampling.predictor='ancestral_sampling' is defined for the VP and VE "
                "SDEs, not config.training.sde='subvpsde'; use 'reverse_diffusion'"
            )
        if sampling.probability_flow:
            raise ValueError(
                "config.sampling.predictor='ancestral_sampling' has no probability-flow variant "
                "(config.sampling.probability_flow=True); use 'reverse_diffusion'"
            )
    consistency = training.loss in CONSISTENCY
    if consistency != (model.preconditioning == "consistency"):
        raise ValueError(
            f"config.training.loss ({training.loss!r}) and config.model.preconditioning "
            f"({model.preconditioning!r}) do not go together: a consistency model sets both "
            "(loss='consistency_training' or 'consistency_distillation', "
            "preconditioning='consistency') or neither"
        )
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
