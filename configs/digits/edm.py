"""The class-conditional digits DDPM++ (configs/digits/conditional.py: label dropout 0.1 for
classifier-free guidance) trained with EDM's loss and preconditioning, sampled with EDM's Heun
sampler (18 noise levels, 35 NFE): the few-step demo on a CPU.

    python launch.py --config configs/digits/edm.py --workdir runs/digits_edm
    python launch.py --config configs/digits/edm.py --workdir runs/digits_edm --mode sample \
        --config.sampling.method=dpmpp_2m --config.sampling.num_steps=10

tests/test_edm_digits.py trains it for 600 steps next to the DSM-trained digits model of
tests/conftest.py and judges both models' samples with a digits classifier.
"""

from configs import presets
from configs.digits import conditional


def get_config():
    config = conditional.get_config()
    presets.edm(config, preconditioning="edm")
    config.model.sigma_data = 0.75  # the standard deviation of the digits in [-1, 1]
    return config
