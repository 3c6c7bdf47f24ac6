"""2-D toy 'eight_gaussians' with the MLP score model (VP SDE); ~1 minute on 2 CPU cores.

    python launch.py --config configs/toy/eight_gaussians.py --workdir runs/toy_eight_gaussians

Trains, then samples with PC and the probability-flow ODE, reports the test log-likelihood next
to the best single-Gaussian fit, and writes eval/<step>/scatter.png (data vs samples).
"""

from configs.toy import base


def get_config():
    return base.get_config("toy/eight_gaussians")
