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

STEPS = 600


def _classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    d = load_digits()
    x = d.data / 16.0  # the config's [0, 1] scaling at 8x8
    return LogisticRegression(max_iter=2000).fit(x[:1500], d.target[:1500])


def _confidence(clf, samples) -> float:
    """Mean max-probability of samples in model space [-1, 1] (centered data)."""
    x = np.clip((np.asarray(samples).reshape(len(samples), 64) + 1.0) / 2.0, 0.0, 1.0)
    return float(clf.predict_proba(x).max(axis=1).mean())


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

    clf = _classifier()
    key = jax.random.key(5)
    trained = _confidence(clf, exp.sample(state.params, key, 256, "pc", 256)[0])
    untrained = _confidence(clf, exp.sample(init_params, key, 256, "pc", 256)[0])
    noise = _confidence(clf, np.random.default_rng(0).uniform(-1, 1, (256, 64)))
    data = _confidence(clf, test_x)
    print(
        f"DSM loss {loss0:.3f} -> {loss1:.3f}; classifier confidence: samples {trained:.3f}, "
        f"untrained-model samples {untrained:.3f}, noise {noise:.3f}, test data {data:.3f}"
    )
    assert trained > untrained + 0.05 and trained > noise + 0.15, (trained, untrained, noise)
