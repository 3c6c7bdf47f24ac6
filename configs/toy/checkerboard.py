"""2-D toy 'checkerboard' with the MLP score model (VP SDE); ~1 minute on 2 CPU cores.

    python launch.py --config configs/toy/checkerboard.py --workdir runs/toy_checkerboard

Trains, then samples with PC and the probability-flow ODE, reports the test log-likelihood next
to the best single-Gaussian fit, and writes eval/<step>/scatter.png (data vs samples).
"""

from configs.toy import base


def get_config():
    return base.get_config("toy/checkerboard")
