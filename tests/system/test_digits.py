"""The digits demo config trains: the DSM loss drops well below its initial value, and the samples
look like digits to a classifier fit on the digits data (confidence clearly above what it gives the
untrained model's samples and uniform noise).

The run is the session's shared one (tests/conftest.py `trained_digits`): the digits DDPM++ with
class conditioning and label dropout 0.1, 600 steps through the launcher; raw params (the EMA of so
few steps still remembers the init), no label (the null label: the unconditional model), PC /
Euler-Maruyama at 100 steps. Measured on 2 CPU cores: DSM loss 0.999 -> 0.106; mean max-probability
of a logistic regression (test accuracy 0.91) on 256 samples 0.715, on the untrained model's samples
0.645, on uniform noise 0.521, on the test digits 0.875 (the unconditional config alone: 0.737).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import parallel
from score_sde.config import from_config
from score_sde.data import datasets
from score_sde.run import experiment
from score_sde.store.checkpoint import Checkpoints
from tests.helpers import digits_classifier, digits_confidence

STEPS = 600


@pytest.mark.slow
def test_digits_config_trains_and_samples_look_like_digits(trained_digits):
    c, workdir = trained_digits  # the digits DDPM++ with classes and label dropout, 600 steps
    cfg = from_config(c)
    exp = experiment.build(cfg)
    with Checkpoints(workdir, read_only=True) as ckpts:
        state = ckpts.restore(exp.state_like(), ckpts.latest_step())
    assert int(parallel.to_host(state.step)) == STEPS
    init_params = exp.new_state().params  # the run's own initialization (same seed)
    test_ds = datasets.get_process_dataset(cfg.data, "test", global_batch=256, seed=0)
    test_x = jnp.asarray(test_ds.batch(0)["x"])
    eval_loss = jax.jit(exp.loss_fn(train=False))  # no label: the null label, i.e. unconditional

    def dsm(params):  # same keys before and after training
        return float(
            np.mean([eval_loss(params, jax.random.key(i), {"x": test_x}) for i in range(4)])
        )

    loss0, loss1 = dsm(init_params), dsm(state.params)
    assert loss1 < 0.3 * loss0, (loss0, loss1)

    clf = digits_classifier()
    key = jax.random.key(5)
    trained = digits_confidence(clf, exp.sample(state.params, key, 256, "pc", 256)[0])
    untrained = digits_confidence(clf, exp.sample(init_params, key, 256, "pc", 256)[0])
    noise = digits_confidence(clf, np.random.default_rng(0).uniform(-1, 1, (256, 64)))
    data = digits_confidence(clf, test_x)
    print(
        f"DSM loss {loss0:.3f} -> {loss1:.3f}; classifier confidence: samples {trained:.3f}, "
        f"untrained-model samples {untrained:.3f}, noise {noise:.3f}, test data {data:.3f}"
    )
    assert trained > untrained + 0.05 and trained > noise + 0.15, (trained, untrained, noise)
