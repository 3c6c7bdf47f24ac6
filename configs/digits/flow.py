"""The digits DDPM++ (configs/digits/ddpmpp.py) trained by flow matching on the linear path
(rectified flow), t logit-normal; sampled with Euler's method on the velocity ('euler': 50
uniform steps in t).

    python launch.py --config configs/digits/flow.py --workdir runs/digits_flow
    python launch.py --config configs/digits/flow.py --workdir runs/digits_flow --mode sample \
        --config.sampling.method=euler --config.sampling.num_steps=20

'euler' (DDIM) on uniform t is Euler's method on the velocity; benchmarks/quality_nfe.py
--train --config configs/digits/flow.py gives its quality per NFE.
"""

from configs import presets
from configs.digits import ddpmpp


def get_config():
    config = ddpmpp.get_config()
    presets.flow_matching(config, time_sampling="logit_normal")
    return config
