"""The shipped configs: each loads through the config boundary, builds with the published parameter
count, resolves to the published settings, and writes no field its network never reads; original
score_sde config files load unchanged.

Counts come from the PyTorch port of the original code (shared/reference/FIGURES.md). Models are
built with jax.eval_shape, so nothing is allocated; configs sharing an architecture are built once.
Config files are run as the launcher runs them (score_sde.config.load_file).
"""

import ast
import dataclasses
import pathlib

import pytest

from score_sde import config as config_lib
from score_sde import models
from tests.helpers import ROOT

CONFIGS = ROOT / "configs"

DDPMPP, DDPMPP_DEEP = 61_804_419, 106_632_579
NCSNPP_VE, NCSNPP_POS = 62_758_915, 62_693_251
NCSNPP_VE_DEEP, NCSNPP_VP_DEEP = 107_587_075, 107_521_411
NCSNPP_256, NCSNPP_1024 = 65_574_549, 105_785_896
DDPM_32, DDPM_256 = 35_218_947, 111_569_923
NCSNV2_CIFAR10 = 29_694_083
UVIT_S2 = 44_255_328  # U-ViT-S/2 (the paper: 44M); tests/models/test_uvit.py derives it

PUBLISHED = {
    "vp/cifar10_ddpmpp_continuous.py": DDPMPP,
    "edm/cifar10_ddpmpp_edm.py": DDPMPP,
    "edm/cifar10_ddpmpp_vp.py": DDPMPP,
    "edm/cifar10_ddpmpp_ve.py": DDPMPP,
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
    "vp/cifar10_uvit_s2.py": UVIT_S2,
    # U-ViT-M/4, L/4 on ImageNet 64 (the original's 130,940,292 and 286,827,652, the paper's 131M
    # and 287M, and the null label's row); DiT-XL/2 = SiT-XL/2 (the published 675M less the
    # frozen position embedding): tests/convert/test_convert_transformers.py
    "vp/imagenet64_uvit_m4.py": 130_941_060,
    "vp/imagenet64_uvit_l4.py": 286_828_676,
    "vp/imagenet256_dit_xl2.py": 674_834_720,
    "flow/imagenet256_sit_xl2.py": 674_834_720,
}

# The published settings of every shipped config, as resolved by the boundary:
# (sde, continuous, model.name, ema_rate, predictor, corrector, snr, n_steps_each, num_scales,
#  sigma_max (VE only; VP / sub-VP: beta 0.1 -> 20, checked below))
# fmt: off
SETTINGS = {
    "default.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "digits/conditional.py": ("vpsde", True, "ncsnpp", 0.99, "euler_maruyama", "none", 0.16, 1, 200, None),
    "digits/ddpmpp.py": ("vpsde", True, "ncsnpp", 0.99, "euler_maruyama", "none", 0.16, 1, 200, None),
    "digits/dit.py": ("vpsde", True, "dit", 0.99, "euler_maruyama", "none", 0.16, 1, 200, None),
    "digits/uvit.py": ("vpsde", True, "uvit", 0.99, "euler_maruyama", "none", 0.16, 1, 200, None),
    "vp/cifar10_dit_s2.py": ("vpsde", True, "dit", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/cifar10_uvit_s2.py": ("vpsde", True, "uvit", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/imagenet64_uvit_m4.py": ("vpsde", True, "uvit", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/imagenet64_uvit_l4.py": ("vpsde", True, "uvit", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/imagenet256_dit_xl2.py": ("vpsde", False, "dit", 0.9999, "ancestral_sampling", "none", 0.16, 1, 1000, None),
    "flow/imagenet256_sit_xl2.py": ("flow", True, "dit", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "digits/consistency.py": ("vesde", True, "ncsnpp", 0.99, "reverse_diffusion", "none", 0.16, 1, 18, 80.0),
    "digits/edm.py": ("vesde", True, "ncsnpp", 0.99, "reverse_diffusion", "none", 0.16, 1, 200, 80.0),
    "digits/flow.py": ("flow", True, "ncsnpp", 0.99, "euler_maruyama", "none", 0.16, 1, 200, None),
    "edm/cifar10_ddpmpp_edm.py": ("vesde", True, "ncsnpp", 0.9999, "reverse_diffusion", "none", 0.16, 1, 1000, 80.0),
    "edm/cifar10_ddpmpp_ve.py": ("vesde", True, "ncsnpp", 0.9999, "reverse_diffusion", "none", 0.16, 1, 1000, 80.0),
    "edm/cifar10_ddpmpp_vp.py": ("vesde", True, "ncsnpp", 0.9999, "reverse_diffusion", "none", 0.16, 1, 1000, 80.0),
    "flow/cifar10_ddpmpp_flow.py": ("flow", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "subvp/cifar10_ddpm_continuous.py": ("subvpsde", True, "ddpm", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "subvp/cifar10_ddpmpp_continuous.py": ("subvpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "subvp/cifar10_ddpmpp_deep_continuous.py": ("subvpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "subvp/cifar10_ncsnpp_continuous.py": ("subvpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "subvp/cifar10_ncsnpp_deep_continuous.py": ("subvpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "toy/consistency.py": ("vesde", True, "mlp", 0.99, "reverse_diffusion", "none", 0.16, 1, 18, 80.0),
    "toy/checkerboard.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "toy/flow.py": ("flow", True, "mlp", 0.99, "euler_maruyama", "none", 0.16, 1, 500, None),
    "toy/eight_gaussians.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "toy/gmm.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "toy/swiss_roll.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "toy/two_moons.py": ("vpsde", True, "mlp", 0.99, "reverse_diffusion", "langevin", 0.16, 1, 500, None),
    "ve/bedroom_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.075, 1, 2000, 378.0),
    "ve/celeba_ncsnpp.py": ("vesde", False, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.17, 1, 1000, 90.0),
    "ve/celebahq_256_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.075, 1, 2000, 348.0),
    "ve/celebahq_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.9999, "reverse_diffusion", "langevin", 0.15, 1, 2000, 1348.0),
    "ve/church_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.075, 1, 2000, 378.0),
    "ve/cifar10_ddpm.py": ("vesde", False, "ddpm", 0.999, "reverse_diffusion", "langevin", 0.16, 1, 1000, 50.0),
    "ve/cifar10_ncsnpp.py": ("vesde", False, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.16, 1, 1000, 50.0),
    "ve/cifar10_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.16, 1, 1000, 50.0),
    "ve/cifar10_ncsnpp_deep_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.16, 1, 1000, 50.0),
    "ve/ffhq_256_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.999, "reverse_diffusion", "langevin", 0.075, 1, 2000, 348.0),
    "ve/ffhq_ncsnpp_continuous.py": ("vesde", True, "ncsnpp", 0.9999, "reverse_diffusion", "langevin", 0.15, 1, 2000, 1348.0),
    "ve/ncsn/celeba.py": ("vesde", False, "ncsn", 0.0, "none", "ald", 0.316, 100, 10, 1.0),
    "ve/ncsn/celeba_124.py": ("vesde", False, "ncsn", 0.0, "none", "ald", 0.128, 5, 500, 90.0),
    "ve/ncsn/celeba_1245.py": ("vesde", False, "ncsn", 0.999, "none", "ald", 0.128, 5, 500, 90.0),
    "ve/ncsn/celeba_5.py": ("vesde", False, "ncsn", 0.999, "none", "ald", 0.316, 100, 10, 1.0),
    "ve/ncsn/cifar10.py": ("vesde", False, "ncsn", 0.0, "none", "ald", 0.316, 100, 10, 1.0),
    "ve/ncsn/cifar10_124.py": ("vesde", False, "ncsn", 0.0, "none", "ald", 0.176, 5, 232, 50.0),
    "ve/ncsn/cifar10_1245.py": ("vesde", False, "ncsn", 0.999, "none", "ald", 0.176, 5, 232, 50.0),
    "ve/ncsn/cifar10_5.py": ("vesde", False, "ncsn", 0.999, "none", "ald", 0.316, 100, 10, 1.0),
    "ve/ncsnv2/bedroom.py": ("vesde", False, "ncsnv2_128", 0.9999, "none", "ald", 0.095, 3, 1086, 190.0),
    "ve/ncsnv2/celeba.py": ("vesde", False, "ncsnv2_64", 0.999, "none", "ald", 0.128, 5, 500, 90.0),
    "ve/ncsnv2/cifar10.py": ("vesde", False, "ncsnv2_64", 0.999, "none", "ald", 0.176, 5, 232, 50.0),
    "vp/cifar10_ddpmpp.py": ("vpsde", False, "ncsnpp", 0.9999, "reverse_diffusion", "none", 0.16, 1, 1000, None),
    "vp/cifar10_ddpmpp_continuous.py": ("vpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/cifar10_ddpmpp_deep_continuous.py": ("vpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/cifar10_ncsnpp.py": ("vpsde", False, "ncsnpp", 0.9999, "reverse_diffusion", "none", 0.16, 1, 1000, None),
    "vp/cifar10_ncsnpp_continuous.py": ("vpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/cifar10_ncsnpp_deep_continuous.py": ("vpsde", True, "ncsnpp", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
    "vp/ddpm/bedroom.py": ("vpsde", False, "ddpm", 0.9999, "ancestral_sampling", "none", 0.075, 1, 1000, None),
    "vp/ddpm/celebahq.py": ("vpsde", False, "ddpm", 0.9999, "ancestral_sampling", "none", 0.075, 1, 1000, None),
    "vp/ddpm/church.py": ("vpsde", False, "ddpm", 0.9999, "ancestral_sampling", "none", 0.075, 1, 1000, None),
    "vp/ddpm/cifar10.py": ("vpsde", False, "ddpm", 0.9999, "ancestral_sampling", "none", 0.16, 1, 1000, None),
    "vp/ddpm/cifar10_unconditional.py": ("vpsde", False, "ddpm", 0.9999, "ancestral_sampling", "none", 0.16, 1, 1000, None),
    "vp/ddpm/cifar10_continuous.py": ("vpsde", True, "ddpm", 0.9999, "euler_maruyama", "none", 0.16, 1, 1000, None),
}

# The released class-conditional transformers sample with a class by default (U-ViT's ImageNet-64
# models have no null label); every other config samples unconditionally.
SAMPLE_WITH_A_CLASS = {
    "vp/imagenet64_uvit_m4.py",
    "vp/imagenet64_uvit_l4.py",
    "vp/imagenet256_dit_xl2.py",
    "flow/imagenet256_sit_xl2.py",
}

# (data.dataset, data.category, example size, data.centered, reduce_mean, batch_size, n_iters, lr)
DATA_AND_SCHEDULE = {
    "default.py": ("toy/gmm", None, 2, False, True, 512, 3000, 2e-3),
    "digits/conditional.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "digits/ddpmpp.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "digits/dit.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "digits/uvit.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "vp/cifar10_dit_s2.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 1e-4),
    "vp/cifar10_uvit_s2.py": ("CIFAR10", None, 32, True, True, 128, 500000, 2e-4),
    "vp/imagenet64_uvit_m4.py": ("npz", None, 64, True, True, 1024, 300000, 3e-4),
    "vp/imagenet64_uvit_l4.py": ("npz", None, 64, True, True, 1024, 300000, 3e-4),
    "vp/imagenet256_dit_xl2.py": ("npz", None, 32, True, True, 256, 7000000, 1e-4),
    "flow/imagenet256_sit_xl2.py": ("npz", None, 32, True, True, 256, 7000000, 1e-4),
    "digits/consistency.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "digits/edm.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "digits/flow.py": ("digits", None, 8, True, True, 64, 2000, 2e-3),
    "edm/cifar10_ddpmpp_edm.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "edm/cifar10_ddpmpp_ve.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "edm/cifar10_ddpmpp_vp.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "flow/cifar10_ddpmpp_flow.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "subvp/cifar10_ddpm_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "subvp/cifar10_ddpmpp_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "subvp/cifar10_ddpmpp_deep_continuous.py": ("CIFAR10", None, 32, True, True, 128, 950001, 2e-4),
    "subvp/cifar10_ncsnpp_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "subvp/cifar10_ncsnpp_deep_continuous.py": ("CIFAR10", None, 32, True, True, 128, 950001, 2e-4),
    "toy/consistency.py": ("toy/gmm", None, 2, False, True, 512, 3000, 2e-3),
    "toy/checkerboard.py": ("toy/checkerboard", None, 2, False, True, 512, 3000, 2e-3),
    "toy/flow.py": ("toy/gmm", None, 2, False, True, 512, 3000, 2e-3),
    "toy/eight_gaussians.py": ("toy/eight_gaussians", None, 2, False, True, 512, 3000, 2e-3),
    "toy/gmm.py": ("toy/gmm", None, 2, False, True, 512, 3000, 2e-3),
    "toy/swiss_roll.py": ("toy/swiss_roll", None, 2, False, True, 512, 3000, 2e-3),
    "toy/two_moons.py": ("toy/two_moons", None, 2, False, True, 512, 3000, 2e-3),
    "ve/bedroom_ncsnpp_continuous.py": ("LSUN", "bedroom", 256, False, False, 64, 2400001, 2e-4),
    "ve/celeba_ncsnpp.py": ("CELEBA", None, 64, False, False, 128, 1300001, 2e-4),
    "ve/celebahq_256_ncsnpp_continuous.py": ("CelebAHQ", None, 256, False, False, 64, 2400001, 2e-4),
    "ve/celebahq_ncsnpp_continuous.py": ("CelebAHQ", None, 1024, False, False, 8, 2400001, 2e-4),
    "ve/church_ncsnpp_continuous.py": ("LSUN", "church_outdoor", 256, False, False, 64, 2400001, 2e-4),
    "ve/cifar10_ddpm.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 2e-4),
    "ve/cifar10_ncsnpp.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 2e-4),
    "ve/cifar10_ncsnpp_continuous.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 2e-4),
    "ve/cifar10_ncsnpp_deep_continuous.py": ("CIFAR10", None, 32, False, False, 128, 950001, 2e-4),
    "ve/ffhq_256_ncsnpp_continuous.py": ("FFHQ", None, 256, False, False, 64, 2400001, 2e-4),
    "ve/ffhq_ncsnpp_continuous.py": ("FFHQ", None, 1024, False, True, 8, 2400001, 2e-4),
    "ve/ncsn/celeba.py": ("CELEBA", None, 64, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/celeba_124.py": ("CELEBA", None, 64, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/celeba_1245.py": ("CELEBA", None, 64, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/celeba_5.py": ("CELEBA", None, 64, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/cifar10.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/cifar10_124.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/cifar10_1245.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 1e-3),
    "ve/ncsn/cifar10_5.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 1e-3),
    "ve/ncsnv2/bedroom.py": ("LSUN", "bedroom", 128, False, False, 128, 2400001, 1e-4),
    "ve/ncsnv2/celeba.py": ("CELEBA", None, 64, False, False, 128, 1300001, 1e-4),
    "ve/ncsnv2/cifar10.py": ("CIFAR10", None, 32, False, False, 128, 1300001, 1e-4),
    "vp/cifar10_ddpmpp.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/cifar10_ddpmpp_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/cifar10_ddpmpp_deep_continuous.py": ("CIFAR10", None, 32, True, True, 128, 950001, 2e-4),
    "vp/cifar10_ncsnpp.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/cifar10_ncsnpp_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/cifar10_ncsnpp_deep_continuous.py": ("CIFAR10", None, 32, True, True, 128, 950001, 2e-4),
    "vp/ddpm/bedroom.py": ("LSUN", "bedroom", 256, True, True, 64, 2400001, 2e-5),
    "vp/ddpm/celebahq.py": ("CelebAHQ", None, 256, True, True, 64, 2400001, 2e-5),
    "vp/ddpm/church.py": ("LSUN", "church_outdoor", 256, True, True, 64, 2400001, 2e-5),
    "vp/ddpm/cifar10.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/ddpm/cifar10_unconditional.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
    "vp/ddpm/cifar10_continuous.py": ("CIFAR10", None, 32, True, True, 128, 1300001, 2e-4),
}
# fmt: on


def _defines_get_config(path: pathlib.Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body)


# Every file that defines a config; toy/base.py is the toys' base (get_config(dataset)).
CONFIG_FILES = sorted(
    str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.py") if _defines_get_config(p)
)
SHIPPED = [rel for rel in CONFIG_FILES if rel != "toy/base.py"]
LAUNCHED = [rel for rel in SHIPPED if rel != "default.py"]  # default.py: `python launch.py`


def load(rel: str):
    """The ConfigDict of configs/<rel>, loaded as the launcher loads it."""
    return config_lib.load_file(str(CONFIGS / rel))


def typed(rel: str) -> config_lib.Config:
    return config_lib.from_config(load(rel))


_COUNTS: dict = {}


def _architecture(cfg: config_lib.Config):
    """What shapes the parameters: the model's fields but EMA, dropout, the SDE's continuous
    parameters and the accepted-only fields; and the example shape."""
    m = cfg.model
    skip = {"ema_rate", "dropout", "class_dropout", "beta_min", "beta_max", "sigma_min"}
    skip |= {"sigma_max", "sigma_begin", "scale_by_sigma", *type(m).ORIGINAL_ONLY}
    fields = tuple(
        (f.name, getattr(m, f.name)) for f in dataclasses.fields(m) if f.name not in skip
    )
    return type(m), fields, cfg.data.shape


def count(cfg: config_lib.Config) -> int:
    """models.count_params(models.abstract_params(cfg.model, cfg.data)), once per architecture."""
    key = _architecture(cfg)
    if key not in _COUNTS:
        _COUNTS[key] = models.count_params(models.abstract_params(cfg.model, cfg.data))
    return _COUNTS[key]


def test_every_published_config_exists():
    missing = sorted(set(PUBLISHED) - set(SHIPPED))
    assert not missing, missing
    assert sorted(SETTINGS) == sorted(DATA_AND_SCHEDULE) == SHIPPED


@pytest.mark.parametrize("rel", sorted(PUBLISHED))
def test_published_parameter_count(rel):
    assert count(typed(rel)) == PUBLISHED[rel]


@pytest.mark.parametrize("rel", CONFIG_FILES)
def test_config_passes_the_boundary_and_builds(rel):
    config = load(rel)
    for section in ("training", "sampling", "data", "model", "optim"):
        assert section in config, section
    cfg = config_lib.from_config(config)
    assert cfg.training.sde in ("vpsde", "subvpsde", "vesde", "flow", "cosine_flow")
    assert cfg.model.dtype in ("float32", "bfloat16")
    assert count(cfg) > 0


@pytest.mark.parametrize("rel", LAUNCHED)
def test_config_documents_its_command(rel):
    doc = ast.get_docstring(ast.parse((CONFIGS / rel).read_text()))
    assert doc and f"--config configs/{rel}" in doc, "the docstring gives the command"


@pytest.mark.parametrize("rel", SHIPPED)
def test_config_resolves_to_the_published_settings(rel):
    cfg = typed(rel)
    t, s, m = cfg.training, cfg.sampling, cfg.model
    sigma_max = m.sigma_max if t.sde == "vesde" else None
    got = (t.sde, t.continuous, m.name, m.ema_rate, s.predictor, s.corrector, s.snr)
    got += (s.n_steps_each, m.num_scales, sigma_max)
    assert got == SETTINGS[rel]
    d = cfg.data
    got = (d.dataset, d.category, d.shape[0], d.centered, t.reduce_mean, t.batch_size, t.n_iters)
    assert got + (cfg.optim.lr,) == DATA_AND_SCHEDULE[rel]
    edm = t.loss == "edm"  # EDM's loss and Heun sampler (configs/edm, digits/edm.py)
    flow = t.loss == "flow_matching"  # Euler (DDIM) on the velocity (configs/flow, */flow.py)
    cm = t.loss.startswith("consistency_")  # one-step consistency sampling (*/consistency.py)
    assert (s.method, s.noise_removal, s.probability_flow) == (
        "edm_heun" if edm else "ddim" if flow else "consistency" if cm else "pc",
        True,
        False,
    )
    assert flow == (t.sde in ("flow", "cosine_flow"))
    if flow:  # DiT has no embedding_type: it embeds the time itself
        assert (getattr(m, "embedding_type", "positional"), m.preconditioning) == (
            "positional",
            "none",
        )
    assert not t.likelihood_weighting
    assert cfg.condition.task == ("class" if rel in SAMPLE_WITH_A_CLASS else "none")
    assert (m.preconditioning != "none") == (edm or cm)
    if cm:
        assert (m.preconditioning, m.sigma_min, m.sigma_max, m.embedding_type) == (
            "consistency",
            0.002,
            80.0,
            "positional",
        )
        assert (t.P_mean, t.P_std, cfg.eval.enable_bpd) == (-1.1, 2.0, False)
    elif edm:
        assert (m.sigma_min, m.sigma_max, m.embedding_type, t.P_mean, t.P_std) == (
            0.002,
            80.0,
            "positional",
            -1.2,
            1.2,
        )
    elif t.sde == "vesde":
        assert m.sigma_min == 0.01
        assert m.scale_by_sigma == (m.name != "ncsn")  # NCSN v1: conditional instance norms
    else:
        assert (m.beta_min, m.beta_max, m.scale_by_sigma) == (0.1, 20.0, False)
    if d.is_toy or d.dataset == "digits":
        return
    latents = rel in ("vp/imagenet256_dit_xl2.py", "flow/imagenet256_sit_xl2.py")  # 32x32x4
    assert (d.num_channels, d.random_flip, d.uniform_dequantization) == (
        4 if latents else 3,
        not latents,
        False,
    )
    assert (cfg.eval.num_samples, cfg.eval.num_repeats, t.snapshot_freq) == (50000, 5, 50000)
    classes = 1000 if rel in SAMPLE_WITH_A_CLASS else 0  # ImageNet's
    assert (t.n_jitted_steps, cfg.model.num_classes, cfg.model.dtype) == (1, classes, "float32")


def test_class_conditional_digits():
    cfg = typed("digits/conditional.py")
    assert (cfg.model.num_classes, cfg.model.class_dropout, cfg.classifier.num_classes) == (
        10,
        0.1,
        10,
    )
    assert cfg.classifier == config_lib.ClassifierConfig(num_classes=10)
    assert cfg.condition == config_lib.ConditionConfig()


# Fields a family accepts for original score_sde files but never reads
# (score_sde/config/families.py).
DEAD_MODEL_FIELDS = {
    config_lib.NCSNppConfig: set(config_lib.NCSNppConfig.ORIGINAL_ONLY),
    config_lib.DDPMConfig: {*config_lib.DDPMConfig.ORIGINAL_ONLY, "embedding_type"},
    config_lib.NCSNv2Config: {"dropout", "embedding_type"},
    config_lib.MLPConfig: set(),
    config_lib.UViTConfig: set(),
    config_lib.DiTConfig: set(),
}


@pytest.mark.parametrize("rel", SHIPPED)
def test_config_writes_no_dead_field(rel):
    config = load(rel)
    model = set(config.model.keys())
    family = config_lib.model_class(config.model.name)
    assert not model & DEAD_MODEL_FIELDS[family], f"{family.__name__} never reads these"
    assert not model & {"sigma_begin"}, "NCSN's name of sigma_max"
    # training.loss names the objective; the originals' SDE names there mean nothing
    assert (
        config.training.get("loss") in (None, "edm", "flow_matching", "consistency_training")
        and "tfrecords_path" not in config.data
    )
    # the SDE's parameters belong to their SDE: VP / sub-VP read beta, VE reads sigma
    if config.training.sde == "vesde":
        assert not model & {"beta_min", "beta_max"}
    else:
        assert not model & {"sigma_min", "sigma_max"}


@pytest.mark.parametrize("rel", SHIPPED)
def test_a_model_typo_is_rejected_with_the_closest_name(rel):
    config = load(rel)
    fields = {f.name for f in dataclasses.fields(config_lib.model_class(config.model.name))}
    typo, right = ("nff", "nf") if "nf" in fields else ("depthh", "depth")  # the transformers
    config.model[typo] = 64
    with pytest.raises(
        ValueError,
        match=rf"config\.model\.{typo} is not a known field \(did you mean config\.model\.{right}\?\)",
    ):
        config_lib.from_config(config)


def test_a_field_in_the_wrong_section_names_the_right_one():
    config = load("toy/gmm.py")
    config.training.nf = 64  # a model field, in config.training
    with pytest.raises(
        ValueError,
        match=r"config\.training\.nf is not a known field \(did you mean config\.model\.nf\?\)",
    ):
        config_lib.from_config(config)


# ------------------------------------------------------------------- original score_sde files
# Self-contained equivalents of two original config files: every field (name, value and type) that
# the original CIFAR-10 defaults file and the config file set, in the same order.

ORIGINAL_CIFAR10_DEFAULTS = """
import ml_collections


def get_default_configs():
    config = ml_collections.ConfigDict()
    config.training = training = ml_collections.ConfigDict()
    for k, v in [("batch_size", 128), ("n_iters", 1300001), ("snapshot_freq", 50000),
                 ("log_freq", 50), ("eval_freq", 100), ("snapshot_freq_for_preemption", 10000),
                 ("snapshot_sampling", True), ("likelihood_weighting", False),
                 ("continuous", True), ("n_jitted_steps", 5), ("reduce_mean", False)]:
        training[k] = v
    config.sampling = sampling = ml_collections.ConfigDict()
    for k, v in [("n_steps_each", 1), ("noise_removal", True), ("probability_flow", False),
                 ("snr", 0.16)]:
        sampling[k] = v
    config.eval = evaluate = ml_collections.ConfigDict()
    for k, v in [("begin_ckpt", 9), ("end_ckpt", 26), ("batch_size", 1024),
                 ("enable_sampling", False), ("num_samples", 50000), ("enable_loss", True),
                 ("enable_bpd", False), ("bpd_dataset", "test")]:
        evaluate[k] = v
    config.data = data = ml_collections.ConfigDict()
    for k, v in [("dataset", "CIFAR10"), ("image_size", 32), ("random_flip", True),
                 ("centered", False), ("uniform_dequantization", False), ("num_channels", 3)]:
        data[k] = v
    config.model = model = ml_collections.ConfigDict()
    for k, v in [("sigma_min", 0.01), ("sigma_max", 50), ("num_scales", 1000), ("beta_min", 0.1),
                 ("beta_max", 20.), ("dropout", 0.1), ("embedding_type", "fourier")]:
        model[k] = v
    config.optim = optim = ml_collections.ConfigDict()
    for k, v in [("weight_decay", 0), ("optimizer", "Adam"), ("lr", 2e-4), ("beta1", 0.9),
                 ("eps", 1e-8), ("warmup", 5000), ("grad_clip", 1.)]:
        optim[k] = v
    config.seed = 42
    return config
"""

ORIGINAL_FILES = {
    # configs/ve/ncsnv2/cifar10.py of the original
    "ve/ncsnv2/cifar10.py": (
        NCSNV2_CIFAR10,
        """
def get_config():
    config = get_default_configs()
    training = config.training
    training.sde = "vesde"
    training.continuous = False
    sampling = config.sampling
    sampling.method, sampling.predictor, sampling.corrector = "pc", "none", "ald"
    sampling.n_steps_each = 5
    sampling.snr = 0.176
    model = config.model
    model.name = "ncsnv2_64"
    model.scale_by_sigma = True
    model.num_scales = 232
    model.ema_rate = 0.999
    model.normalization = "InstanceNorm++"
    model.nonlinearity = "elu"
    model.nf = 128
    model.interpolation = "bilinear"
    optim = config.optim
    optim.weight_decay = 0
    optim.optimizer = "Adam"
    optim.lr = 1e-4
    optim.beta1 = 0.9
    optim.amsgrad = False
    optim.eps = 1e-8
    optim.warmup = 0
    optim.grad_clip = -1.
    return config
""",
    ),
    # configs/vp/cifar10_ddpmpp_continuous.py of the original
    "vp/cifar10_ddpmpp_continuous.py": (
        DDPMPP,
        """
def get_config():
    config = get_default_configs()
    training = config.training
    training.sde = "vpsde"
    training.continuous = True
    training.reduce_mean = True
    sampling = config.sampling
    sampling.method, sampling.predictor, sampling.corrector = "pc", "euler_maruyama", "none"
    config.data.centered = True
    model = config.model
    for k, v in [("name", "ncsnpp"), ("scale_by_sigma", False), ("ema_rate", 0.9999),
                 ("normalization", "GroupNorm"), ("nonlinearity", "swish"), ("nf", 128),
                 ("ch_mult", (1, 2, 2, 2)), ("num_res_blocks", 4), ("attn_resolutions", (16,)),
                 ("resamp_with_conv", True), ("conditional", True), ("fir", False),
                 ("fir_kernel", [1, 3, 3, 1]), ("skip_rescale", True),
                 ("resblock_type", "biggan"), ("progressive", "none"),
                 ("progressive_input", "none"), ("progressive_combine", "sum"),
                 ("attention_type", "ddpm"), ("init_scale", 0.), ("embedding_type", "positional"),
                 ("fourier_scale", 16), ("conv_size", 3)]:
        model[k] = v
    return config
""",
    ),
}

# How the shipped config differs from the original file: the original's n_jitted_steps, our
# bits/dim repeats, and the fields the family accepts from the original but never reads.
ORIGINAL_VS_SHIPPED = {
    "ve/ncsnv2/cifar10.py": {"model.dropout", "model.embedding_type"},
    "vp/cifar10_ddpmpp_continuous.py": {"model.normalization", "model.attention_type"},
}


def _differences(a: config_lib.Config, b: config_lib.Config) -> set[str]:
    return {
        f"{section}.{f.name}"
        for section in config_lib.SECTIONS
        for f in dataclasses.fields(getattr(a, section))
        if getattr(getattr(a, section), f.name) != getattr(getattr(b, section), f.name)
    }


@pytest.mark.parametrize("rel", sorted(ORIGINAL_FILES))
def test_original_config_file_loads_unchanged(rel, tmp_path):
    expected_count, get_config = ORIGINAL_FILES[rel]
    path = tmp_path / "original.py"
    path.write_text(ORIGINAL_CIFAR10_DEFAULTS + get_config)
    cfg = config_lib.from_config(config_lib.load_file(str(path)))
    assert count(cfg) == expected_count
    assert _differences(cfg, typed(rel)) == ORIGINAL_VS_SHIPPED[rel] | {
        "training.n_jitted_steps",
        "eval.num_repeats",
    }
    # The same file as the original writes it, on this tree's compatibility defaults.
    path.write_text(
        "from configs.default_cifar10_configs import get_default_configs\n" + get_config
    )
    assert _differences(config_lib.from_config(config_lib.load_file(str(path))), cfg) == {
        "eval.num_repeats"  # 5 dequantization draws here, one in the original
    }


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        # (dataset, image_size, batch_size, n_iters, snr, sigma_max, num_scales, dropout)
        ("default_cifar10_configs", ("CIFAR10", 32, 128, 1300001, 0.16, 50, 1000, 0.1)),
        ("default_celeba_configs", ("CELEBA", 64, 128, 1300001, 0.17, 90.0, 1000, 0.1)),
        ("default_lsun_configs", ("LSUN", 256, 64, 2400001, 0.075, 378, 2000, 0.0)),
    ],
)
def test_compatibility_defaults_are_the_originals(module, expected):
    import importlib

    config = importlib.import_module(f"configs.{module}").get_default_configs()
    t, m, d = config.training, config.model, config.data
    got = (d.dataset, d.image_size, t.batch_size, t.n_iters, config.sampling.snr, m.sigma_max)
    assert got + (m.num_scales, m.dropout) == expected
    assert type(m.sigma_max) is type(expected[5])  # as the originals write it (ConfigDict types)
    assert (t.continuous, t.reduce_mean, t.n_jitted_steps) == (True, False, 5)
    assert (m.sigma_min, m.beta_min, m.beta_max, m.embedding_type) == (0.01, 0.1, 20.0, "fourier")
    assert "category" not in d  # the original files name it


@pytest.mark.parametrize(
    "name, method, discretization",
    [
        ("dpmpp_2m_karras", "dpmpp_2m", "edm"),
        ("sample_dpmpp_2m", "dpmpp_2m", None),
        ("sample_heun", "edm_heun", None),
        ("heun_karras", "edm_heun", "edm"),
        ("sample_dpmpp_2m_sde", "dpmpp_2m_sde", None),
    ],
)
def test_a_k_diffusion_sampler_name_is_answered_with_the_exact_setting(
    name, method, discretization
):
    """k-diffusion's names (and the webui's `_karras` suffix) get one line with the flags of the
    same sampler here; those flags load and select it."""
    toy = str(CONFIGS / "toy" / "gmm.py")
    with pytest.raises(ValueError) as e:
        config_lib.load(toy, {"sampling.method": name})
    line = str(e.value)
    assert "\n" not in line and f"k-diffusion's name for {method}" in line, line
    flags = dict(f.removeprefix("--config.").split("=") for f in line.split("pass ")[1].split())
    assert flags == {"sampling.method": method} | (
        {"sampling.discretization": discretization} if discretization else {}
    )
    cfg = config_lib.load(toy, flags)
    assert cfg.sampling.method == method
    assert cfg.sampling.discretization == (discretization or "default")


def test_a_name_k_diffusion_has_and_we_do_not_lists_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of 'pc', 'ode', 'edm_heun'"):
        config_lib.load(str(CONFIGS / "toy" / "gmm.py"), {"sampling.method": "lms_karras"})
