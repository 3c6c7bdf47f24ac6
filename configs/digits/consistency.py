"""The digits DDPM++ (configs/digits/ddpmpp.py) as a consistency model, trained from scratch
(consistency training as iCT, Song & Dhariwal 2023); sampled in one network evaluation.

    python launch.py --config configs/digits/consistency.py --workdir runs/digits_ct
    python launch.py --config configs/digits/consistency.py --workdir runs/digits_ct --mode sample \\
        --config.sampling.num_steps=2

Distillation from the digits score model instead (train configs/digits/ddpmpp.py first):
    python launch.py --config configs/digits/consistency.py --workdir runs/digits_cd \\
        --config.training.loss=consistency_distillation --config.training.teacher=runs/digits_ddpmpp
"""

from configs import presets
from configs.digits import ddpmpp


def get_config():
    config = ddpmpp.get_config()
    presets.consistency(config)
    config.model.sigma_data = 0.75  # the standard deviation of the digits in [-1, 1]
    config.eval.enable_bpd = False  # no probability-flow ODE of its own
    return config
