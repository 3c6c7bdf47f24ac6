"""The class-conditional digits DDPM++ (configs/digits/conditional.py: label dropout 0.1 for
classifier-free guidance) trained with EDM's loss and preconditioning, sampled with EDM's Heun
sampler (18 noise levels, 35 NFE): the few-step demo on a CPU.

    python launch.py --config configs/digits/edm.py --workdir runs/digits_edm
    python launch.py --config configs/digits/edm.py --workdir runs/digits_edm --mode sample \
        --config.sampling.method=dpmpp_2m --config.sampling.num_steps=10

tests/method/test_edm_digits.py trains it for 600 steps and judges its samples with a digits classifier;
benchmarks/edm_vs_dsm_digits.py compares it with the DSM-trained model over training seeds.
"""

from configs import presets
from configs.digits import conditional


def get_config():
    config = conditional.get_config()
    presets.edm(config, preconditioning="edm")
    config.model.sigma_data = 0.75  # the standard deviation of the digits in [-1, 1]
    return config
