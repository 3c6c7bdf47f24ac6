"""The embedded default: `python launch.py` with no arguments runs this.

A 2-D Gaussian mixture with a known density (configs/toy/gmm.py): an MLP score model trained on a
VP SDE for 3000 steps (about a minute on 2 CPU cores), then PC and probability-flow ODE samples,
the test log-likelihood (exact-trace ODE) next to the true density's and the best single
Gaussian's, and a scatter plot of data vs samples in runs/default/eval/<step>/scatter.png.
"""

from configs.toy import gmm


def get_config():
    return gmm.get_config()
