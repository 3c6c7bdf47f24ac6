"""2-D toy 'gmm' trained by flow matching (the linear path, rectified flow) with the MLP; ~1
minute on 2 CPU cores.

    python launch.py --config configs/toy/flow.py --workdir runs/toy_flow

The network predicts the velocity z - x_0; every sampler and the likelihood use it through the
score it implies. Samples with the probability-flow ODE and Euler's method on the velocity
('euler': 50 uniform steps in t), reports the test
log-likelihood next to the true density and the best single-Gaussian fit, and writes
eval/<step>/scatter.png. tests/method/test_flow.py trains it through the launcher.
"""

from configs import presets
from configs.toy import base


def get_config():
    config = base.get_config("toy/gmm")
    presets.flow_matching(config)
    config.eval.samplers = ("ode", "euler")
    return config
