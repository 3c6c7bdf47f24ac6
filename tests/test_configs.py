"""Every published configuration builds with exactly the published parameter count.

Counts come from the PyTorch port of the original code (shared/reference/FIGURES.md). Models are
built with jax.eval_shape, so nothing is allocated; configs sharing an architecture are built once.
"""

import functools
import importlib.util
import json
import pathlib
import sys

import pytest

from score_sde import models

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # configs import their base as `configs.default_*`

DDPMPP, DDPMPP_DEEP = 61_804_419, 106_632_579
NCSNPP_VE, NCSNPP_POS = 62_758_915, 62_693_251
NCSNPP_VE_DEEP, NCSNPP_VP_DEEP = 107_587_075, 107_521_411
NCSNPP_256, NCSNPP_1024 = 65_574_549, 105_785_896
DDPM_32, DDPM_256 = 35_218_947, 111_569_923

PUBLISHED = {
    "vp/cifar10_ddpmpp_continuous.py": DDPMPP,
    "vp/cifar10_ddpmpp.py": DDPMPP,
    "subvp/cifar10_ddpmpp_continuous.py": DDPMPP,
    "vp/cifar10_ddpmpp_deep_continuous.py": DDPMPP_DEEP,
    "subvp/cifar10_ddpmpp_deep_continuous.py": DDPMPP_DEEP,
    "ve/cifar10_ncsnpp_continuous.py": NCSNPP_VE,
    "ve/cifar10_ncsnpp.py": NCSNPP_POS,
    "ve/celeba_ncsnpp.py": NCSNPP_POS,
    "vp/cifar10_ncsnpp.py": NCSNPP_POS,
    "vp/cifar10_ncsnpp_continuous.py": NCSNPP_POS,
    "subvp/cifar10_ncsnpp_continuous.py": NCSNPP_POS,
    "ve/cifar10_ncsnpp_deep_continuous.py": NCSNPP_VE_DEEP,
    "vp/cifar10_ncsnpp_deep_continuous.py": NCSNPP_VP_DEEP,
    "subvp/cifar10_ncsnpp_deep_continuous.py": NCSNPP_VP_DEEP,
    "ve/celebahq_256_ncsnpp_continuous.py": NCSNPP_256,
    "ve/ffhq_256_ncsnpp_continuous.py": NCSNPP_256,
    "ve/church_ncsnpp_continuous.py": NCSNPP_256,
    "ve/bedroom_ncsnpp_continuous.py": NCSNPP_256,
    "ve/celebahq_ncsnpp_continuous.py": NCSNPP_1024,
    "ve/ffhq_ncsnpp_continuous.py": NCSNPP_1024,
    "vp/ddpm/cifar10.py": DDPM_32,
    "vp/ddpm/cifar10_continuous.py": DDPM_32,
    "subvp/cifar10_ddpm_continuous.py": DDPM_32,
    "ve/cifar10_ddpm.py": DDPM_32,
    "vp/ddpm/celebahq.py": DDPM_256,
    "vp/ddpm/church.py": DDPM_256,
    "vp/ddpm/bedroom.py": DDPM_256,
}

ALL_CONFIGS = sorted(
    str(p.relative_to(ROOT / "configs"))
    for d in ("vp", "subvp", "ve", "digits")
    for p in (ROOT / "configs" / d).rglob("*.py")
    if p.name != "base.py"  # shared defaults, not a config
)


def load(rel: str):
    spec = importlib.util.spec_from_file_location(f"cfg_{rel}", ROOT / "configs" / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _count(arch: str) -> int:
    import ml_collections

    return models.count_params(models.abstract_params(ml_collections.ConfigDict(json.loads(arch))))


def count(config) -> int:
    arch = {"model": config.model.to_dict(), "data": config.data.to_dict(), "seed": 0}
    for k in ("ema_rate", "normalization", "attention_type", "beta_min", "beta_max", "dropout"):
        arch["model"].pop(k, None)
    return _count(json.dumps(arch, sort_keys=True, default=list))


def test_every_published_config_exists():
    missing = sorted(set(PUBLISHED) - set(ALL_CONFIGS))
    assert not missing, missing


@pytest.mark.parametrize("rel", sorted(PUBLISHED))
def test_published_parameter_count(rel):
    assert count(load(rel).get_config()) == PUBLISHED[rel]


@pytest.mark.parametrize("rel", ALL_CONFIGS)
def test_config_builds_and_documents_its_command(rel):
    module = load(rel)
    config = module.get_config()
    assert f"--config configs/{rel}" in module.__doc__, "the docstring gives the command"
    for section in ("training", "sampling", "data", "model", "optim"):
        assert section in config, section
    assert config.training.sde in ("vpsde", "subvpsde", "vesde")
    assert config.model.dtype in ("float32", "bfloat16")
    assert count(config) > 0
